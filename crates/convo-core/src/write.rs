//! The write side's inputs and outcomes (CONTRACT §6), and its pure rules.

use crate::time::Millis;

/// A staff user's message to a patient (`POST /messages`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub patient_id: i64,
    pub user_id: i64,
    /// Already trimmed and checked (1–1600 characters, or empty with an attachment).
    pub body: String,
    pub attachment: Option<NewAttachment>,
    /// The client's `Idempotency-Key`, scoped to its API key: a repeat of the same send
    /// answers with the first message and writes nothing.
    pub idempotency: Option<IdempotencyKey>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub api_key_id: i64,
    pub key: String,
}

/// Checks an `Idempotency-Key` header value: 1–255 visible ASCII characters.
pub fn idempotency_key(value: &str) -> Option<&str> {
    let ok = (1..=255).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(value)
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewAttachment {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub file_size: Option<i64>,
    pub url: Option<String>,
}

/// An SMS a patient sent, as the provider's webhook reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundSms {
    /// The location's number (as sent by the provider).
    pub to: String,
    pub from: String,
    pub body: String,
    /// The provider's message id: a retried webhook carries the same one.
    pub sid: String,
    pub media: Option<NewAttachment>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
}

/// The carrier keywords of CONTRACT §6: the whole body, trimmed, any case.
pub fn keyword(body: &str) -> Option<Keyword> {
    let word = body.trim().to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "REVOKE" | "OPT OUT" => {
            Some(Keyword::OptOut)
        }
        "START" | "YES" | "UNSTOP" => Some(Keyword::OptIn),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundOutcome {
    pub message_id: i64,
    pub conversation_id: i64,
    /// The same provider message id was stored before; nothing new was written.
    pub duplicate: bool,
    pub keyword: Option<Keyword>,
}

/// An outgoing SMS the worker is to hand to the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The delivery record's id: the message's `sms_msg_id`.
    pub id: i64,
    pub message_id: i64,
    pub to: String,
    pub from: String,
    pub body: String,
    pub media_url: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// A delivery record as an operator sees it (never the body or the numbers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub message_id: i64,
    pub institution_id: i64,
    pub location_id: i64,
    pub status: String,
    pub attempts: i64,
    /// When the worker will try it (again); `None` once it is settled.
    pub next_attempt_at: Option<Millis>,
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub updated_at: Millis,
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The provider took it; its id follows the status callbacks.
    Accepted { provider_id: String },
    /// Try again at `at` (a 5xx, a timeout, a connection error).
    Retry { error: String, at: Millis },
    /// Never going out (a 4xx, or too many attempts).
    Failed { error: String },
}

/// A provider's status callback, in the delivery record's terms.
pub fn delivery_status(provider_status: &str) -> Option<&'static str> {
    match provider_status {
        "queued" | "accepted" | "sending" | "scheduled" => Some("sent"),
        "sent" => Some("sent"),
        "delivered" | "read" => Some("delivered"),
        "undelivered" => Some("undelivered"),
        "failed" | "canceled" => Some("failed"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_the_whole_body_in_any_case() {
        for w in [
            "STOP",
            "stop",
            " Stop\n",
            "stopall",
            "Unsubscribe",
            "cancel",
            "END",
            "quit",
        ] {
            assert_eq!(keyword(w), Some(Keyword::OptOut), "{w}");
        }
        assert_eq!(keyword("revoke"), Some(Keyword::OptOut));
        assert_eq!(keyword("opt out"), Some(Keyword::OptOut));
        for w in ["START", "yes", " Unstop "] {
            assert_eq!(keyword(w), Some(Keyword::OptIn), "{w}");
        }
        for w in [
            "stop it",
            "please stop",
            "STOP!",
            "",
            "opt-out",
            "yes please",
        ] {
            assert_eq!(keyword(w), None, "{w}");
        }
    }

    #[test]
    fn provider_statuses_map_to_records() {
        assert_eq!(delivery_status("delivered"), Some("delivered"));
        assert_eq!(delivery_status("undelivered"), Some("undelivered"));
        assert_eq!(delivery_status("failed"), Some("failed"));
        assert_eq!(delivery_status("sent"), Some("sent"));
        assert_eq!(delivery_status("bogus"), None);
    }
}
