//! The one place where errors become an HTTP status and the contract's envelope.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convo_core::{Denied, StoreError};
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
    /// A write lost a race the store could not settle; the same request again settles it. The
    /// detail (which key conflicted) is for the log.
    #[error("conflict")]
    Conflict(String),
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
            ApiError::Conflict(_) => StatusCode::CONFLICT,
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
            ApiError::Conflict(_) => {
                vec!["A concurrent write conflicted with this request; send it again".into()]
            }
            ApiError::Unauthorized(m) => vec![m.into()],
            ApiError::BadRequest(list) => list,
            ApiError::TooManyRequests(secs) => {
                vec![format!("Rate limit exceeded; retry after {secs} s")]
            }
            ApiError::Internal(_) => vec!["Internal server error".into()],
        }
    }
}

/// Each store outcome has one status: refusals are the client's to fix (400), missing things
/// 404, a lost race 409 (the same request again settles it), and faults 500 with the detail,
/// source chain included, kept for the log.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(r) => ApiError::BadRequest(vec![r.to_string()]),
            StoreError::NotFound(m) => ApiError::NotFound(m.to_string()),
            e @ StoreError::Conflict(_) => ApiError::Conflict(e.to_string()),
            StoreError::Fault(source) => ApiError::Internal(chain(source.as_ref())),
        }
    }
}

/// The contract's precedence: 401 for a dead key, 403 for a subdomain, 404 for a location.
impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Revoked => ApiError::Unauthorized(crate::extract::BAD_TOKEN),
            Denied::Forbidden { .. } => ApiError::Forbidden(d.to_string()),
            Denied::NoLocation { .. } => ApiError::NotFound(d.to_string()),
        }
    }
}

/// An error and its sources, for a log line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl ApiError {
    /// Details are for the operator; the client gets a generic message. Every answer built from
    /// an `ApiError` (JSON or TwiML) logs through here.
    pub fn log_detail(&self) {
        match self {
            ApiError::Internal(detail) => tracing::error!(detail = %detail, "request failed"),
            ApiError::Conflict(detail) => tracing::warn!(detail = %detail, "write conflicted"),
            _ => {}
        }
    }

    /// The sentence a client reads (TwiML answers carry it as a comment).
    pub fn client_message(self) -> String {
        self.messages().join("; ")
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
        self.log_detail();
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
