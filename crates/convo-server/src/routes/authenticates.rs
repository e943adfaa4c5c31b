//! `POST /authenticates`: trade a raw API key for a bearer token (CONTRACT §2).

use crate::AppState;
use crate::dto::ok_object;
use crate::error::ApiError;
use crate::extract::ApiVersion;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::response::Response;

const BAD_KEY: &str = "API key is missing or invalid";

pub async fn create(
    _: ApiVersion,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let raw = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(ApiError::Unauthorized(BAD_KEY))?;
    // The contract sends the key bare; tolerate a `Bearer ` prefix rather than fail on it.
    let raw = match raw.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => raw,
    };
    let key_id = state
        .store
        .authenticate_key(raw)
        .await?
        .ok_or(ApiError::Unauthorized(BAD_KEY))?;
    let token = state.tokens.issue(key_id)?;
    tracing::info!(key_id, "token issued");
    Ok(ok_object(StatusCode::CREATED, "Authenticated", |j| {
        j.raw("{\"token\":");
        j.str(&token);
        j.raw("}");
    }))
}
