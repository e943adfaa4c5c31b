//! `GET /conversations` (CONTRACT §3).

use crate::AppState;
use crate::dto::{ConversationList, Envelope};
use crate::error::{ApiError, json_response};
use crate::extract::{BAD_TOKEN, bearer_key, check_version};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use convo_core::Access;
use convo_core::params::{ListParams, description};

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    check_version(&headers, state.config.strict_version)?;
    let key_id = bearer_key(&headers, &state)?;
    let parsed = ListParams::parse(uri.query());
    let scope = parsed
        .as_ref()
        .ok()
        .map(|p| (p.scope.subdomain.as_str(), p.scope.location_id));
    // One lookup answers 401 (revoked), 403 (subdomain) and 404 (location), in that order,
    // with parameter errors (400) between the first and the others.
    let access = state.store.access(key_id, scope).await?;
    let params = match (access, parsed) {
        (Access::Revoked, _) => return Err(ApiError::Unauthorized(BAD_TOKEN)),
        (_, Err(errors)) => return Err(ApiError::BadRequest(errors)),
        (Access::Forbidden, Ok(p)) => {
            return Err(ApiError::Forbidden(format!(
                "This API key may not access subdomain {}",
                p.scope.subdomain
            )));
        }
        (Access::NoLocation, Ok(p)) => {
            return Err(ApiError::NotFound(format!(
                "location_id {} is not a location of this institution",
                p.scope.location_id
            )));
        }
        (Access::Live, Ok(_)) => {
            return Err(ApiError::Internal("access answered without a scope".into()));
        }
        (Access::Granted(tenant), Ok(p)) => (tenant, p),
    };
    let (tenant, params) = params;
    tracing::Span::current().record("institution_id", tenant.institution_id());
    let page = state
        .store
        .list_conversations(&tenant, &params.query)
        .await?;
    let description = description(&params.notes);
    let data = ConversationList {
        list: &page.conversations,
        zone: tenant.zone(),
    };
    Ok(json_response(
        StatusCode::OK,
        &Envelope::new(&description, data, Some(page.count)),
    ))
}
