//! Request bodies: a size cap, a deadline for arrival, and JSON with serde's reason on failure.

use crate::error::ApiError;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use std::time::Duration;

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
