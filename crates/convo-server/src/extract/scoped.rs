//! A request scoped to an institution and a location (`subdomain`, `location_id`), checked in
//! the contract's precedence: 401 (the key), then every 400 (parameters, then the body), then
//! 403 (the subdomain), then 404 (the location).

use super::bearer::{BAD_TOKEN, BearerKey};
use super::body::json_body;
use crate::AppState;
use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use convo_core::params::ScopedParams;
use convo_core::{Denied, TenantCtx};
use serde::de::DeserializeOwned;

/// The precedence for a scoped request whose key is already known: 401 (revoked), 400 (every
/// problem: parameters, then `extra` from the body), 403 (subdomain), 404 (location).
pub async fn tenant(
    state: &AppState,
    key_id: i64,
    params: Result<ScopedParams, Vec<String>>,
    extra: Vec<String>,
) -> Result<(TenantCtx, ScopedParams), ApiError> {
    let access = match &params {
        Ok(p) => Some(
            state
                .store
                .access(key_id, &p.scope.subdomain, p.scope.location_id)
                .await?,
        ),
        Err(_) => None,
    };
    let revoked = match &access {
        Some(access) => matches!(access, Err(Denied::Revoked)),
        None => !state.store.key_is_live(key_id).await?,
    };
    if revoked {
        return Err(ApiError::Unauthorized(BAD_TOKEN));
    }
    let params = match params {
        Ok(p) if extra.is_empty() => p,
        Ok(_) => return Err(ApiError::BadRequest(extra)),
        Err(mut errors) => {
            errors.extend(extra);
            return Err(ApiError::BadRequest(errors));
        }
    };
    let tenant = access.ok_or_else(|| {
        ApiError::Internal("parameters parsed but no access was checked".into())
    })??;
    tracing::Span::current().record("institution_id", tenant.institution_id());
    Ok((tenant, params))
}

/// A read of one location's data with the list's message parameters (`GET
/// /conversations/{id}`).
pub struct Scoped {
    pub tenant: TenantCtx,
    pub params: ScopedParams,
}

impl FromRequestParts<AppState> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let BearerKey(key_id) = BearerKey::from_request_parts(parts, state).await?;
        let params = ScopedParams::parse(parts.uri.query(), true);
        let (tenant, params) = tenant(state, key_id, params, Vec::new()).await?;
        Ok(Self { tenant, params })
    }
}

/// A JSON body's own rules, beyond its shape: what the request means, or every problem with it.
pub trait Checked: Sized + Send {
    /// The body as sent.
    type Raw: DeserializeOwned + Send;

    /// `raw` is `None` when the JSON was malformed (its reason is already in `errors`); add
    /// every further problem to `errors`, in the contract's order, and return the request
    /// when there is none.
    fn check(
        raw: Option<Self::Raw>,
        headers: &HeaderMap,
        key_id: i64,
        errors: &mut Vec<String>,
    ) -> Option<Self>;
}

/// A write scoped to a location, with its JSON body checked (`POST /messages`, seen). Consumes
/// the body, so it is a handler's last argument.
pub struct ScopedJson<B> {
    pub tenant: TenantCtx,
    pub params: ScopedParams,
    pub body: B,
}

impl<B: Checked> FromRequest<AppState> for ScopedJson<B> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let BearerKey(key_id) = BearerKey::from_request_parts(&mut parts, state).await?;
        // 415, 413 and 408 answer at once; a body that is not valid joins the other 400s.
        let mut errors = Vec::new();
        let raw = match json_body(&parts.headers, body, state.config.body_timeout).await {
            Ok(raw) => Some(raw),
            Err(ApiError::BadRequest(reasons)) => {
                errors = reasons;
                None
            }
            Err(other) => return Err(other),
        };
        let checked = B::check(raw, &parts.headers, key_id, &mut errors);
        let params = ScopedParams::parse(parts.uri.query(), false);
        let (tenant, params) = tenant(state, key_id, params, errors).await?;
        let body =
            checked.ok_or_else(|| ApiError::Internal("a body with problems passed".into()))?;
        Ok(Self {
            tenant,
            params,
            body,
        })
    }
}
