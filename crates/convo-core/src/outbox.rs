//! The SMS outbox in domain terms: what the worker hands the provider, what an attempt came to,
//! and the delivery statuses (CONTRACT §6).

use crate::time::Millis;

/// Where a delivery record stands. Stored as its lowercase name by every engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for the worker (a first attempt or a retry).
    Queued,
    /// The provider accepted it.
    Sent,
    Delivered,
    Undelivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Undelivered,
        DeliveryStatus::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Undelivered => "undelivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The stored name back; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Settled by the provider: nothing the worker learns later replaces it.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryStatus::Delivered | DeliveryStatus::Undelivered | DeliveryStatus::Failed
        )
    }

    /// An operator may queue it again (`convo deliveries retry`).
    pub const fn is_retryable(self) -> bool {
        matches!(self, DeliveryStatus::Undelivered | DeliveryStatus::Failed)
    }
}

/// A provider's status callback, in the delivery record's terms.
pub fn delivery_status(provider_status: &str) -> Option<DeliveryStatus> {
    match provider_status {
        "queued" | "accepted" | "sending" | "scheduled" | "sent" => Some(DeliveryStatus::Sent),
        "delivered" | "read" => Some(DeliveryStatus::Delivered),
        "undelivered" => Some(DeliveryStatus::Undelivered),
        "failed" | "canceled" => Some(DeliveryStatus::Failed),
        _ => None,
    }
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
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// When the worker will try it (again); `None` once it is settled.
    pub next_attempt_at: Option<Millis>,
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub updated_at: Millis,
    /// The worker holding it now, if one is handing it to the provider.
    pub claimed_by: Option<i64>,
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

/// The outbox in numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Waiting to go out: due now or scheduled for a retry, claimed or not.
    pub pending: i64,
    /// Due now and not claimed by a live worker.
    pub due: i64,
    /// Claimed by a worker (being handed to the provider).
    pub claimed: i64,
    /// How long the oldest due, unclaimed entry has waited.
    pub oldest_due_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_statuses_map_to_records() {
        assert_eq!(
            delivery_status("delivered"),
            Some(DeliveryStatus::Delivered)
        );
        assert_eq!(
            delivery_status("undelivered"),
            Some(DeliveryStatus::Undelivered)
        );
        assert_eq!(delivery_status("failed"), Some(DeliveryStatus::Failed));
        assert_eq!(delivery_status("sent"), Some(DeliveryStatus::Sent));
        assert_eq!(delivery_status("bogus"), None);
    }

    #[test]
    fn stored_names_round_trip() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("Queued"), None);
    }
}
