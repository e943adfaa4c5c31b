//! `GET /conversations` and `GET /conversations/{id}` (CONTRACT §3 and §4).

use crate::AppState;
use crate::dto::{self, encode_list, ok_one};
use crate::error::{ApiError, json_bytes};
use crate::extract::{ApiVersion, BAD_TOKEN, BearerKey, Scoped};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use convo_core::params::{ListParams, description, parse_int};

pub async fn list(
    version: ApiVersion,
    BearerKey(key_id): BearerKey,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let parsed = match version {
        ApiVersion::V2 => ListParams::parse(uri.query()),
        ApiVersion::Cursor => ListParams::parse_cursor(uri.query()),
    };
    // One lookup answers 401 (revoked), 403 (subdomain) and 404 (location), in that order,
    // with parameter errors (400) between the first and the others; when it grants, the page
    // is read in the same trip to the store.
    let params = match parsed {
        Ok(p) => p,
        Err(errors) => {
            return Err(if state.store.key_is_live(key_id).await? {
                ApiError::BadRequest(errors)
            } else {
                ApiError::Unauthorized(BAD_TOKEN)
            });
        }
    };
    let scope = (params.scope.subdomain.as_str(), params.scope.location_id);
    let (tenant, page) = state
        .store
        .list_for_key(key_id, scope, &params.query)
        .await??;
    tracing::Span::current().record("institution_id", tenant.institution_id());
    let description = description(&params.notes);
    let body = encode_list(&description, &page, tenant.zone());
    Ok(json_bytes(StatusCode::OK, body))
}

/// One conversation of the location, with the list's message parameters.
pub async fn one(
    _: ApiVersion,
    Scoped { tenant, params }: Scoped,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let missing = || {
        ApiError::NotFound(format!(
            "conversation {id} is not a conversation of this location"
        ))
    };
    let conversation_id = parse_int(&id).filter(|&n| n >= 1).ok_or_else(missing)?;
    let conversation = state
        .store
        .get_conversation(&tenant, conversation_id, params.messages.as_ref())
        .await?
        .ok_or_else(missing)?;
    Ok(ok_one(&params.notes, |j| {
        dto::conversation(j, &conversation, tenant.zone());
    }))
}
