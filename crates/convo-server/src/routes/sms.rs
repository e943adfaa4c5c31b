//! Twilio's webhooks: `POST /sms/inbound` (a patient's SMS) and `POST /sms/status` (delivery
//! status callbacks). No bearer token: each request must carry a valid `X-Twilio-Signature`.
//! Answers are TwiML (`text/xml`), errors included, so Twilio's debugger shows the reason.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{has_media_type, read_body};
use crate::twilio;
use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use convo_core::outbox::delivery_status;
use convo_core::write::{InboundSms, Keyword, NewAttachment};
use convo_core::{Secret, StoreError};

const OPTED_OUT: &str = "You have been unsubscribed and will receive no more messages from us. \
                         Reply START to resubscribe.";
const OPTED_IN: &str = "You have been resubscribed and will receive messages from us again. \
                        Reply STOP to unsubscribe.";

/// A TwiML answer: a confirmation `<Message>` to the sender, or a comment naming a problem
/// (our own text only, never echoed input).
fn twiml(status: StatusCode, message: Option<&str>, problem: Option<&str>) -> Response {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    match (message, problem) {
        (Some(m), _) => {
            xml.push_str("<Response><Message>");
            xml.push_str(m);
            xml.push_str("</Message></Response>");
        }
        (None, Some(p)) => {
            xml.push_str("<Response><!-- ");
            xml.push_str(&p.replace("--", "- -"));
            xml.push_str(" --></Response>");
        }
        (None, None) => xml.push_str("<Response/>"),
    }
    let mut response = (status, xml).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    response
}

fn problem(status: StatusCode, text: &str) -> Response {
    twiml(status, None, Some(text))
}

/// The form parameters of a signed webhook, or the answer to give instead.
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

fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A store outcome as TwiML, with the status and sentence the JSON API would give.
fn store_problem(e: StoreError) -> Response {
    let e = ApiError::from(e);
    if let ApiError::Internal(detail) = &e {
        tracing::error!(detail = %detail, "webhook failed");
    }
    problem(e.status(), &e.client_message())
}

pub async fn inbound(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let params = match signed_form(&state, &headers, &uri, body).await {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let missing: Vec<&str> = ["From", "To", "MessageSid"]
        .into_iter()
        .filter(|k| field(&params, k).is_none_or(|v| v.trim().is_empty()))
        .collect();
    if !missing.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("missing parameters: {}", missing.join(", ")),
        );
    }
    let media_count = field(&params, "NumMedia")
        .and_then(convo_core::params::parse_int)
        .unwrap_or(0);
    let media = (media_count > 0)
        .then(|| field(&params, "MediaUrl0"))
        .flatten()
        .map(|url| NewAttachment {
            file_name: url
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .map(Into::into),
            content_type: field(&params, "MediaContentType0").map(Into::into),
            file_size: None,
            url: Some(url.into()),
        });
    let body = field(&params, "Body").unwrap_or("");
    if body.trim().is_empty() && media.is_none() {
        return problem(
            StatusCode::BAD_REQUEST,
            "the message has no Body and no media",
        );
    }
    let sms = InboundSms {
        to: field(&params, "To").unwrap_or("").into(),
        from: field(&params, "From").unwrap_or("").into(),
        body: body.into(),
        sid: field(&params, "MessageSid").unwrap_or("").into(),
        media,
    };
    match state.store.receive_sms(sms).await {
        Ok(outcome) => {
            tracing::info!(
                message_id = outcome.message_id,
                conversation_id = outcome.conversation_id,
                duplicate = outcome.duplicate,
                "inbound sms"
            );
            let confirmation = match outcome.keyword {
                Some(Keyword::OptOut) => Some(OPTED_OUT),
                Some(Keyword::OptIn) => Some(OPTED_IN),
                None => None,
            };
            twiml(StatusCode::OK, confirmation, None)
        }
        Err(e) => store_problem(e),
    }
}

pub async fn status(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let params = match signed_form(&state, &headers, &uri, body).await {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let (Some(sid), Some(reported)) = (
        field(&params, "MessageSid"),
        field(&params, "MessageStatus"),
    ) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "missing parameters: MessageSid and MessageStatus are required",
        );
    };
    let Some(status) = delivery_status(reported) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "MessageStatus is not a known status",
        );
    };
    let error = field(&params, "ErrorCode")
        .filter(|c| !c.is_empty())
        .map(|c| format!("provider error {c}"));
    // Our StatusCallback URL names the delivery; a callback configured elsewhere has only the
    // provider's MessageSid.
    let named = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "delivery")
            .map(|(_, v)| v.into_owned())
    });
    let delivery_id = match named.as_deref().map(convo_core::params::parse_int) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "the delivery query parameter must be an integer",
            );
        }
    };
    match state
        .store
        .update_delivery(delivery_id, sid, status, error)
        .await
    {
        Ok(true) => twiml(StatusCode::OK, None, None),
        Ok(false) => problem(StatusCode::NOT_FOUND, "no delivery matches this callback"),
        Err(e) => store_problem(e),
    }
}
