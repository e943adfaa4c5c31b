//! `POST /messages` and `POST /messages/{id}/seen` (CONTRACT §6).

use crate::AppState;
use crate::dto::{self, ok_object, ok_one};
use crate::error::ApiError;
use crate::extract::{ApiVersion, Checked, ScopedJson};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use convo_core::params::{description, parse_int};
use convo_core::write::{IdempotencyKey, NewAttachment, NewMessage, idempotency_key};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
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

/// The body to core's rules (shared by every entry point), then the `Idempotency-Key` header,
/// which is scoped to the API key.
impl Checked for NewMessage {
    type Raw = SendBody;

    fn check(
        raw: Option<SendBody>,
        headers: &HeaderMap,
        key_id: i64,
        errors: &mut Vec<String>,
    ) -> Option<Self> {
        let mut message = raw.and_then(|b| {
            let m = b.message;
            let attachment = m.attachment.map(|a| NewAttachment {
                file_name: a.file_name,
                content_type: a.content_type,
                file_size: a.file_size,
                url: a.url,
            });
            NewMessage::parse(m.patient_id, m.user_id, m.body.as_deref(), attachment)
                .map_err(|problems| errors.extend(problems))
                .ok()
        });
        match headers.get("idempotency-key").map(|v| v.to_str()) {
            None => {}
            Some(Ok(v)) if idempotency_key(v).is_some() => {
                if let Some(m) = &mut message {
                    m.idempotency = Some(IdempotencyKey {
                        api_key_id: key_id,
                        key: v.to_string(),
                    });
                }
            }
            Some(_) => {
                errors.push("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
            }
        }
        message.filter(|_| errors.is_empty())
    }
}

pub async fn send(
    _: ApiVersion,
    State(state): State<AppState>,
    ScopedJson {
        tenant,
        params,
        body: message,
    }: ScopedJson<NewMessage>,
) -> Result<Response, ApiError> {
    let written = state.store.send_message(&tenant, message).await?;
    state.outbox_wakeup();
    state.webhook_wakeup();
    let description = created(&params.notes);
    Ok(ok_object(StatusCode::CREATED, &description, |j| {
        dto::message(j, &written, tenant.zone());
    }))
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
pub struct SeenBody {
    user_id: i64,
}

/// Who saw the message: a positive user id.
pub struct Seer(i64);

impl Checked for Seer {
    type Raw = SeenBody;

    fn check(
        raw: Option<SeenBody>,
        _: &HeaderMap,
        _: i64,
        errors: &mut Vec<String>,
    ) -> Option<Self> {
        match raw {
            Some(b) if b.user_id >= 1 => Some(Seer(b.user_id)),
            Some(_) => {
                errors.push("user_id must be a positive integer".into());
                None
            }
            None => None,
        }
    }
}

pub async fn seen(
    _: ApiVersion,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ScopedJson {
        tenant,
        params,
        body: Seer(user_id),
    }: ScopedJson<Seer>,
) -> Result<Response, ApiError> {
    let Some(message_id) = parse_int(&id).filter(|&n| n >= 1) else {
        return Err(ApiError::NotFound(format!(
            "message {id} is not a message of this location"
        )));
    };
    let message = state.store.mark_seen(&tenant, message_id, user_id).await?;
    state.webhook_wakeup();
    Ok(ok_one(&params.notes, |j| {
        dto::message(j, &message, tenant.zone());
    }))
}
