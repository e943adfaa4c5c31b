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

/// The most characters a body may have (one long SMS concatenation, CONTRACT §6).
pub const MAX_CHARS: usize = 1600;

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

/// The body rules of §6; every problem, one string each.
fn validate(m: SendMessage) -> Result<NewMessage, Vec<String>> {
    let mut errors = Vec::new();
    let body = m.body.as_deref().unwrap_or("").trim().to_string();
    let chars = body.chars().count();
    if chars > MAX_CHARS {
        errors.push(format!(
            "message.body must be at most {MAX_CHARS} characters"
        ));
    } else if chars == 0 && m.attachment.is_none() {
        errors.push("message.body must be 1 to 1600 characters (or send an attachment)".into());
    }
    let attachment = m.attachment.map(|a| NewAttachment {
        file_name: a.file_name,
        content_type: a.content_type,
        file_size: a.file_size,
        url: a.url,
    });
    if let Some(a) = &attachment {
        if a.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
            errors.push("message.attachment.url is missing".into());
        }
        if a.file_size.is_some_and(|n| n < 0) {
            errors.push("message.attachment.file_size must not be negative".into());
        }
    }
    if m.patient_id < 1 {
        errors.push("message.patient_id must be a positive integer".into());
    }
    if m.user_id < 1 {
        errors.push("message.user_id must be a positive integer".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NewMessage {
        patient_id: m.patient_id,
        user_id: m.user_id,
        body,
        attachment,
        idempotency: None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(body: Option<&str>, attachment: Option<AttachmentBody>) -> SendMessage {
        SendMessage {
            patient_id: 1,
            user_id: 2,
            body: body.map(Into::into),
            attachment,
        }
    }

    #[test]
    fn body_length_counts_characters_after_trimming() {
        assert!(validate(m(Some("  hi  "), None)).is_ok_and(|n| n.body == "hi"));
        assert!(validate(m(Some(&"é".repeat(1600)), None)).is_ok());
        assert!(validate(m(Some(&"a".repeat(1601)), None)).is_err());
        assert!(validate(m(Some("   "), None)).is_err());
        assert!(validate(m(None, None)).is_err());
    }

    #[test]
    fn an_attachment_needs_a_url_and_may_go_alone() {
        let a = |url: Option<&str>| AttachmentBody {
            file_name: None,
            content_type: Some("image/jpeg".into()),
            file_size: Some(10),
            url: url.map(Into::into),
        };
        assert!(validate(m(None, Some(a(Some("https://x.example/p.jpg"))))).is_ok());
        assert_eq!(
            validate(m(None, Some(a(None)))).err(),
            Some(vec!["message.attachment.url is missing".to_string()])
        );
    }
}
