//! The one place where errors become an HTTP status and the contract's envelope.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convo_core::StoreError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("unauthorized")]
    Unauthorized(&'static str),
    #[error("bad request")]
    BadRequest(Vec<String>),
    #[error("forbidden")]
    Forbidden(String),
    #[error("payload too large")]
    PayloadTooLarge(String),
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    /// Over a rate limit; the seconds to wait.
    #[error("too many requests")]
    TooManyRequests(u64),
    /// The request's body did not arrive in time.
    #[error("request timeout")]
    RequestTimeout(String),
    /// The server cannot serve now (`/readyz`, the database).
    #[error("service unavailable")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn messages(self) -> Vec<String> {
        match self {
            ApiError::NotFound(m)
            | ApiError::Forbidden(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::RequestTimeout(m)
            | ApiError::Unavailable(m) => vec![m],
            ApiError::MethodNotAllowed => vec!["Method not allowed".into()],
            ApiError::Unauthorized(m) => vec![m.into()],
            ApiError::BadRequest(list) => list,
            ApiError::TooManyRequests(secs) => {
                vec![format!("Rate limit exceeded; retry after {secs} s")]
            }
            ApiError::Internal(_) => vec!["Internal server error".into()],
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Internal(m) => ApiError::Internal(m),
            StoreError::Invalid(m) => ApiError::BadRequest(vec![m]),
            StoreError::NotFound(m) => ApiError::NotFound(m),
        }
    }
}

#[derive(Serialize)]
struct ErrorEnvelope {
    code: bool,
    description: Option<()>,
    error: Vec<String>,
    data: Option<()>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::TooManyRequests(secs) => Some(*secs),
            _ => None,
        };
        if let ApiError::Internal(detail) = &self {
            // Details are for the operator; the client gets a generic message.
            tracing::error!(detail = %detail, "request failed");
        }
        let body = ErrorEnvelope {
            code: false,
            description: None,
            error: self.messages(),
            data: None,
        };
        let mut response = json_response(status, &body);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a body that did not arrive in time is not worth waiting for.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A JSON body with the right content type; serialization of our own types cannot fail, but
/// if it ever did the client still gets the envelope.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| {
        br#"{"code":false,"description":null,"error":["Internal server error"],"data":null}"#
            .to_vec()
    });
    json_bytes(status, bytes)
}

/// A response from an already encoded JSON body.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
