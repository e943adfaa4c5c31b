//! Request checks that run before any handler logic: the API version and the bearer token.

use crate::AppState;
use crate::error::ApiError;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use convo_core::params::ScopedParams;
use convo_core::{Denied, TenantCtx};
use serde::de::DeserializeOwned;
use std::time::Duration;

const VENDOR_TYPE: &str = "application/vnd.nexhealth+json";

/// Which variant of the API a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    /// Version 2: page numbers and `count` (CONTRACT §3).
    V2,
    /// `Nex-Api-Version: v20240412` (alias `v3.0.0`): cursors and `page_info` on the list
    /// (CONTRACT §4); every other endpoint answers as in version 2.
    Cursor,
}

/// The `Accept` rules of CONTRACT §1 and §7: a vendor media range selects a version (only 2 is
/// served); anything else is version 2 unless the server is strict. `Nex-Api-Version` selects
/// the cursor variant; other values of it are ignored.
pub fn check_version(headers: &HeaderMap, strict: bool) -> Result<ApiVersion, ApiError> {
    let variant = match headers.get("nex-api-version") {
        Some(v) => {
            let v = v.to_str().unwrap_or("").trim();
            if v.eq_ignore_ascii_case("v20240412") || v.eq_ignore_ascii_case("v3.0.0") {
                ApiVersion::Cursor
            } else {
                ApiVersion::V2
            }
        }
        None => ApiVersion::V2,
    };
    let mut vendor_version: Option<Option<String>> = None;
    'headers: for value in headers.get_all(ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for range in text.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case(VENDOR_TYPE) {
                continue;
            }
            let version = parts.find_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("version")
                    .then(|| value.trim().trim_matches('"').to_string())
            });
            vendor_version = Some(version);
            break 'headers;
        }
    }
    match vendor_version {
        Some(Some(v)) if v != "2" => Err(ApiError::NotFound(format!(
            "API version {v} is not served; ask for application/vnd.Nexhealth+json;version=2"
        ))),
        Some(_) => Ok(variant),
        None if strict => Err(ApiError::NotFound(
            "send Accept: application/vnd.Nexhealth+json;version=2".into(),
        )),
        None => Ok(variant),
    }
}

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

/// Bodies of the write endpoints are small JSON objects; anything larger is refused unread.
pub const MAX_BODY: usize = 64 * 1024;

/// Whether `Content-Type` names `media` (any case, parameters such as `charset` ignored).
pub fn has_media_type(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(media))
}

/// Reads a whole body, which must arrive within `deadline` (a body sent a byte at a time would
/// otherwise hold its connection and, on the write endpoints, a handler): 408 past it, 413 past
/// `MAX_BODY`, 400 for one the client broke off.
pub async fn read_body(body: Body, deadline: Duration) -> Result<axum::body::Bytes, ApiError> {
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} s",
            deadline.as_secs()
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(ApiError::PayloadTooLarge(format!(
            "the body exceeds {MAX_BODY} bytes"
        ))),
        Ok(Err(_)) => Err(ApiError::BadRequest(vec![
            "the request body was cut short".into(),
        ])),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Reads a JSON body: 415 for another content type, 413 past `MAX_BODY`, 400 for JSON that is
/// malformed or not the expected shape (serde's reason, which names the field).
pub async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    deadline: Duration,
) -> Result<T, ApiError> {
    if !has_media_type(headers, "application/json") {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Type must be application/json".into(),
        ));
    }
    let bytes = read_body(body, deadline).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let text = e.to_string();
        let reason = text.split(" at line ").next().unwrap_or(&text);
        ApiError::BadRequest(vec![format!("the body is not valid: {reason}")])
    })
}

/// The contract's precedence for a scoped request whose key is already known: 401 (revoked),
/// 400 (every problem: parameters, then `extra` from the body), 403 (subdomain), 404 (location).
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_accept(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn accept_rules() {
        let ok = |v: &[&str], strict| check_version(&with_accept(v), strict).is_ok();
        assert!(ok(&[], false));
        assert!(!ok(&[], true));
        assert!(ok(&["*/*"], false));
        assert!(!ok(&["application/json"], true));
        assert!(ok(&["application/vnd.Nexhealth+json;version=2"], true));
        assert!(ok(&["APPLICATION/VND.NEXHEALTH+JSON; version=\"2\""], true));
        assert!(ok(&["application/vnd.Nexhealth+json"], true));
        assert!(!ok(&["application/vnd.Nexhealth+json;version=3"], false));
        assert!(!ok(&["application/vnd.Nexhealth+json;version=20"], false));
        assert!(!ok(
            &["text/html, application/vnd.nexhealth+json;q=0.9;version=1"],
            false
        ));
        assert!(ok(
            &["text/html", "application/vnd.nexhealth+json;version=2"],
            true
        ));
    }
}
