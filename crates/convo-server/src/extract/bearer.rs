//! `Authorization: Bearer <token>`: the API key behind a request, and its rate limit.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

const MISSING_TOKEN: &str = "Authorization header with a Bearer token is missing";
pub const BAD_TOKEN: &str = "Bearer token is invalid, expired or revoked";

/// The key id behind `Authorization: Bearer <token>`; 401 when absent or not valid, 429 when
/// the key is over its rate limit.
pub fn bearer_key(headers: &HeaderMap, state: &AppState) -> Result<i64, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(MISSING_TOKEN))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized(BAD_TOKEN))?
        .trim();
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(ApiError::Unauthorized(MISSING_TOKEN))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(MISSING_TOKEN));
    }
    let key_id = state
        .tokens
        .verify(token.trim())
        .ok_or(ApiError::Unauthorized(BAD_TOKEN))?;
    // Only a valid token spends a key's budget: nobody can exhaust another's by guessing.
    state
        .limiter
        .check(key_id)
        .map_err(ApiError::TooManyRequests)?;
    Ok(key_id)
}

/// The key id behind a valid bearer token (401 otherwise, 429 over its limit). `Scoped` and
/// `ScopedJson` extract it themselves, so a handler takes exactly one of the three: each
/// extraction spends one unit of the key's rate limit.
#[derive(Clone, Copy, Debug)]
pub struct BearerKey(pub i64);

impl FromRequestParts<AppState> for BearerKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        bearer_key(&parts.headers, state).map(BearerKey)
    }
}
