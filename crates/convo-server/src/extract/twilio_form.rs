//! Twilio's webhooks carry no bearer token: each must be a form signed with the account's auth
//! token for the URL Twilio called (CONTRACT §6).

use super::body::{has_media_type, read_body};
use crate::AppState;
use crate::error::ApiError;
use crate::twilio;
use crate::twiml::problem;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use convo_core::Secret;

/// The form parameters of a webhook whose `X-Twilio-Signature` is valid; otherwise the TwiML
/// answer to give instead (415, 413, 408, 400 for a broken body, 403 for a bad signature).
pub struct SignedForm(pub Vec<(String, String)>);

impl SignedForm {
    /// The first value of a parameter.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FromRequest<AppState> for SignedForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        signed_form(state, &parts.headers, &parts.uri, body)
            .await
            .map(SignedForm)
    }
}

async fn signed_form(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Body,
) -> Result<Vec<(String, String)>, Response> {
    if !has_media_type(headers, "application/x-www-form-urlencoded") {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = read_body(body, state.config.body_timeout)
        .await
        .map_err(|e| {
            let status = e.status();
            let text = match e {
                ApiError::RequestTimeout(m) => m,
                ApiError::BadRequest(mut m) => m.pop().unwrap_or_default(),
                _ => "the body is too large".into(),
            };
            problem(status, &text)
        })?;
    let params: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    let Some(token) = state.config.twilio_auth_token.as_ref().map(Secret::expose) else {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "no Twilio auth token is configured, so no signature can be verified",
        ));
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = match &state.config.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            format!("http://{host}{path}")
        }
    };
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given.is_empty() || !twilio::verify(token, &url, &params, given) {
        tracing::warn!("webhook refused: missing or invalid X-Twilio-Signature");
        return Err(problem(
            StatusCode::FORBIDDEN,
            "X-Twilio-Signature is missing or invalid",
        ));
    }
    Ok(params)
}
