//! `POST /messages` and `POST /messages/{id}/seen` (CONTRACT §6).

use crate::AppState;
use crate::dto::{Envelope, MessageDto};
use crate::error::{ApiError, json_response};
use crate::extract::{bearer_key, check_version, json_body, tenant};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use convo_core::params::{ScopedParams, description, parse_int};
use convo_core::write::{IdempotencyKey, NewAttachment, NewMessage, idempotency_key};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    message: SendMessage,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessage {
    patient_id: i64,
    user_id: i64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    attachment: Option<AttachmentBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentBody {
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    file_size: Option<i64>,
    #[serde(default)]
    url: Option<String>,
}

/// The body as the client sent it, to the rules of §6 that core holds for every entry point.
fn validate(m: SendMessage) -> Result<NewMessage, Vec<String>> {
    let attachment = m.attachment.map(|a| NewAttachment {
        file_name: a.file_name,
        content_type: a.content_type,
        file_size: a.file_size,
        url: a.url,
    });
    NewMessage::parse(m.patient_id, m.user_id, m.body.as_deref(), attachment)
}

pub async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(&headers, state.config.strict_version)?;
    let key_id = bearer_key(&headers, &state)?;
    let parsed: Result<SendBody, ApiError> =
        json_body(&headers, body, state.config.body_timeout).await;
    let (message, mut extra) = match parsed {
        Ok(b) => match validate(b.message) {
            Ok(m) => (Some(m), Vec::new()),
            Err(errors) => (None, errors),
        },
        Err(ApiError::BadRequest(errors)) => (None, errors),
        Err(other) => return Err(other),
    };
    let idempotency = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) if idempotency_key(v).is_some() => Some(IdempotencyKey {
            api_key_id: key_id,
            key: v.to_string(),
        }),
        Some(_) => {
            extra.push("Idempotency-Key must be 1 to 255 visible ASCII characters".into());
            None
        }
    };
    let params = ScopedParams::parse(uri.query(), false);
    let (tenant, params) = tenant(&state, key_id, params, extra).await?;
    let mut message = message.ok_or_else(|| ApiError::Internal("validated body missing".into()))?;
    message.idempotency = idempotency;
    let written = state.store.send_message(&tenant, message).await?;
    state.outbox_wakeup();
    let description = created(&params.notes);
    Ok(json_response(
        StatusCode::CREATED,
        &Envelope::new(&description, MessageDto::new(&written, tenant.zone()), None),
    ))
}

fn created(notes: &[String]) -> String {
    // As on the list: notes, when there are any, are the description.
    if notes.is_empty() {
        "Created".into()
    } else {
        description(notes)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeenBody {
    user_id: i64,
}

pub async fn seen(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(&headers, state.config.strict_version)?;
    let key_id = bearer_key(&headers, &state)?;
    let parsed: Result<SeenBody, ApiError> =
        json_body(&headers, body, state.config.body_timeout).await;
    let (user_id, extra) = match parsed {
        Ok(b) if b.user_id >= 1 => (b.user_id, Vec::new()),
        Ok(_) => (0, vec!["user_id must be a positive integer".into()]),
        Err(ApiError::BadRequest(errors)) => (0, errors),
        Err(other) => return Err(other),
    };
    let params = ScopedParams::parse(uri.query(), false);
    let (tenant, params) = tenant(&state, key_id, params, extra).await?;
    let Some(message_id) = parse_int(&id).filter(|&n| n >= 1) else {
        return Err(ApiError::NotFound(format!(
            "message {id} is not a message of this location"
        )));
    };
    let message = state.store.mark_seen(&tenant, message_id, user_id).await?;
    Ok(json_response(
        StatusCode::OK,
        &Envelope::new(
            &description(&params.notes),
            MessageDto::new(&message, tenant.zone()),
            None,
        ),
    ))
}
