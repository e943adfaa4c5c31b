//! Twilio's webhooks: `POST /sms/inbound` (a patient's SMS) and `POST /sms/status` (delivery
//! status callbacks). No bearer token: each request must carry a valid `X-Twilio-Signature`.
//! Answers are TwiML (`text/xml`), errors included, so Twilio's debugger shows the reason.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::SignedForm;
use crate::twiml::{problem, twiml};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use convo_core::StoreError;
use convo_core::outbox::{DeliveryStatus, delivery_status};
use convo_core::write::{InboundSms, Keyword, NewAttachment};

const OPTED_OUT: &str = "You have been unsubscribed and will receive no more messages from us. \
                         Reply START to resubscribe.";
const OPTED_IN: &str = "You have been resubscribed and will receive messages from us again. \
                        Reply STOP to unsubscribe.";

/// A store outcome as TwiML, with the status and sentence the JSON API would give.
fn store_problem(e: StoreError) -> Response {
    let e = ApiError::from(e);
    e.log_detail();
    problem(e.status(), &e.client_message())
}

/// The SMS a signed inbound webhook reports, or what is wrong with the report (a 400).
fn inbound_sms(form: &SignedForm) -> Result<InboundSms, String> {
    let missing: Vec<&str> = ["From", "To", "MessageSid"]
        .into_iter()
        .filter(|k| form.field(k).is_none_or(|v| v.trim().is_empty()))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing parameters: {}", missing.join(", ")));
    }
    let media_count = form
        .field("NumMedia")
        .and_then(convo_core::params::parse_int)
        .unwrap_or(0);
    let media = (media_count > 0)
        .then(|| form.field("MediaUrl0"))
        .flatten()
        .map(|url| NewAttachment {
            file_name: url
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .map(Into::into),
            content_type: form.field("MediaContentType0").map(Into::into),
            file_size: None,
            url: Some(url.into()),
        });
    let body = form.field("Body").unwrap_or("");
    if body.trim().is_empty() && media.is_none() {
        return Err("the message has no Body and no media".into());
    }
    Ok(InboundSms {
        to: form.field("To").unwrap_or("").into(),
        from: form.field("From").unwrap_or("").into(),
        body: body.into(),
        sid: form.field("MessageSid").unwrap_or("").into(),
        media,
    })
}

pub async fn inbound(State(state): State<AppState>, form: SignedForm) -> Response {
    let sms = match inbound_sms(&form) {
        Ok(sms) => sms,
        Err(wrong) => return problem(StatusCode::BAD_REQUEST, &wrong),
    };
    match state.store.receive_sms(sms).await {
        Ok(outcome) => {
            state.webhook_wakeup();
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

/// A provider's report on one delivery: which (our id from the callback URL, else the
/// provider's), its status in our terms, and the provider's error code.
struct StatusReport<'a> {
    delivery_id: Option<i64>,
    sid: &'a str,
    status: DeliveryStatus,
    error: Option<String>,
}

fn status_report<'a>(form: &'a SignedForm, uri: &Uri) -> Result<StatusReport<'a>, &'static str> {
    let (Some(sid), Some(reported)) = (form.field("MessageSid"), form.field("MessageStatus"))
    else {
        return Err("missing parameters: MessageSid and MessageStatus are required");
    };
    let status = delivery_status(reported).ok_or("MessageStatus is not a known status")?;
    let error = form
        .field("ErrorCode")
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
        Some(None) => return Err("the delivery query parameter must be an integer"),
    };
    Ok(StatusReport {
        delivery_id,
        sid,
        status,
        error,
    })
}

pub async fn status(State(state): State<AppState>, uri: Uri, form: SignedForm) -> Response {
    let report = match status_report(&form, &uri) {
        Ok(report) => report,
        Err(wrong) => return problem(StatusCode::BAD_REQUEST, wrong),
    };
    match state
        .store
        .update_delivery(report.delivery_id, report.sid, report.status, report.error)
        .await
    {
        Ok(true) => {
            state.webhook_wakeup();
            twiml(StatusCode::OK, None, None)
        }
        Ok(false) => problem(StatusCode::NOT_FOUND, "no delivery matches this callback"),
        Err(e) => store_problem(e),
    }
}
