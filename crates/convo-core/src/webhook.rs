//! Message webhooks in domain terms (CONTRACT §8): endpoints and subscriptions, the events the
//! store freezes at commit, the deliveries the worker claims and what an attempt came to.

use crate::model::Message;
use crate::outbox::DeliveryStatus;
use crate::time::Millis;
use std::collections::{BTreeMap, HashMap};

/// The one resource convo sends events for.
pub const RESOURCE_TYPE: &str = "Message";

/// A subscription's event, and an event's `event_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// Every new message: a staff send, an inbound SMS (imports fire nothing).
    MessageCreated,
    /// A change of any field of the message object: `seen_by`, `updated_at`, a staff message's
    /// delivery status.
    MessageUpdated,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 2] = [WebhookEvent::MessageCreated, WebhookEvent::MessageUpdated];

    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::MessageCreated => "message_created",
            WebhookEvent::MessageUpdated => "message_updated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// What a subscription request (`POST …/webhook_subscriptions`) asks for: `resource_type`
/// `Message` and an event convo fires. Every problem is reported, one sentence each, naming the
/// supported values (NexHealth's enum has more resources; convo sends only these).
pub fn subscription_event(
    resource_type: Option<&str>,
    event: Option<&str>,
) -> Result<WebhookEvent, Vec<String>> {
    let mut errors = Vec::new();
    match resource_type {
        Some(RESOURCE_TYPE) => {}
        Some(_) => errors.push(format!("resource_type must be {RESOURCE_TYPE}")),
        None => errors.push(format!(
            "resource_type is missing (it must be {RESOURCE_TYPE})"
        )),
    }
    let supported = || WebhookEvent::ALL.map(WebhookEvent::as_str).join(" or ");
    let parsed = match event {
        Some(e) => WebhookEvent::parse(e).or_else(|| {
            errors.push(format!("event must be {}", supported()));
            None
        }),
        None => {
            errors.push(format!("event is missing (it must be {})", supported()));
            None
        }
    };
    match parsed {
        Some(event) if errors.is_empty() => Ok(event),
        _ => Err(errors),
    }
}

/// How long an endpoint may fail without one success before it goes inactive.
pub const FAILING_LIMIT_MS: i64 = 48 * 3_600 * 1_000;

/// At most this many earlier attempts' errors a delivery keeps (and its body carries).
pub const ERRORS_KEPT: usize = 10;

/// A webhook endpoint: where an API key's deliveries go, and the secret they are signed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub id: i64,
    pub target_url: String,
    pub secret_key: String,
    pub active: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What a change to an endpoint asks for (absent: unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPatch {
    pub target_url: Option<String>,
    /// `Some(true)` also clears the failing state.
    pub active: Option<bool>,
}

/// A subscription: one institution's events of one kind, for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
    pub endpoint_id: i64,
    pub institution_id: i64,
    pub event: WebhookEvent,
    pub active: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Which of an endpoint's subscriptions a list shows (absent: all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    pub institution_id: Option<i64>,
    pub event: Option<WebhookEvent>,
}

/// What a change to a subscription asks for (absent: unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionPatch {
    pub active: Option<bool>,
    /// Another endpoint of the same key; its pending deliveries move with it.
    pub new_endpoint_id: Option<i64>,
}

/// An event as the store froze it at commit: the message as it was then, where it belongs, and,
/// for a staff message, its delivery's status and error then.
#[derive(Clone, Debug, PartialEq)]
pub struct FrozenEvent {
    pub id: i64,
    pub name: WebhookEvent,
    /// The commit time of the change.
    pub time: Millis,
    pub subdomain: String,
    pub institution_id: i64,
    pub location_id: i64,
    pub patient_id: i64,
    /// The location's IANA zone name, for `created_at_with_tz`.
    pub zone: String,
    pub message: Message,
    pub delivery: Option<(DeliveryStatus, Option<String>)>,
}

/// A delivery the worker is to attempt now.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookJob {
    /// The delivery's id.
    pub id: i64,
    pub endpoint_id: i64,
    pub target_url: String,
    pub secret_key: String,
    /// Attempts so far, this one included (an attempt counts once it is recorded).
    pub attempts: i64,
    /// When the first recorded attempt began; `None`: this one is the first.
    pub first_attempt_at: Option<Millis>,
    /// The errors of the earlier attempts, oldest first, at most `ERRORS_KEPT`.
    pub errors: Vec<String>,
    pub event: FrozenEvent,
}

/// An attempt that ended, as the worker hands it back to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub delivery_id: i64,
    /// When the attempt began: a delivery's first attempt starts its schedule.
    pub started_at: Millis,
    pub result: WebhookResult,
}

/// What a worker asks of one trip to the store.
///
/// Endpoints are leased: a worker claims only deliveries of endpoints it leases, it takes the
/// lease of an active endpoint with something due that no live worker holds, and gives it back
/// once it holds no claim there. So one process at a time delivers to an endpoint, and it keeps
/// the contract's 4 attempts in flight in memory while holding up to `ahead` claims, the next
/// ones queued: a freed slot is taken again without waiting for the database.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClaimAsk<'a> {
    /// Attempts to record first (`finish_webhooks`'s rule).
    pub finished: &'a [Finished],
    /// Claims the worker has held a while without starting them: which may still go (their
    /// delivery still pending and claimed by the worker, its endpoint and subscription still
    /// active). The others are given back.
    pub recheck: &'a [i64],
    /// Most deliveries to claim now (0: record and recheck only).
    pub limit: i64,
    /// Most claims the worker may hold per endpoint, in flight and queued together.
    pub ahead: i64,
}

/// What one trip brought back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claim {
    /// Newly claimed, oldest due first.
    pub jobs: Vec<WebhookJob>,
    /// The rechecked claims that may still go.
    pub kept: Vec<i64>,
}

/// What one attempt came to, as the worker judged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookResult {
    /// A 2xx within the time limit: the endpoint's failing state ends.
    Delivered { status: u16, took_ms: i64 },
    Failed {
        error: String,
        status: Option<u16>,
        took_ms: i64,
        /// When to try again; `None`: the schedule is spent, the delivery has failed for good
        /// (and the endpoint goes inactive if nothing succeeded since this delivery began).
        retry_at: Option<Millis>,
        /// `410 Gone`: the endpoint goes inactive at once.
        gone: bool,
    },
}

impl WebhookResult {
    /// What an attempt row records: outcome, HTTP status, error, duration.
    pub fn recorded(&self) -> (WebhookStatus, Option<u16>, Option<&str>, i64) {
        match self {
            WebhookResult::Delivered { status, took_ms } => {
                (WebhookStatus::Delivered, Some(*status), None, *took_ms)
            }
            WebhookResult::Failed {
                error,
                status,
                took_ms,
                ..
            } => (
                WebhookStatus::Failed,
                *status,
                Some(error.as_str()),
                *took_ms,
            ),
        }
    }

    /// A delivery's stored errors (a JSON array) after this attempt: a failure's error kept
    /// with the newest `ERRORS_KEPT`.
    pub fn errors_after(&self, stored: String) -> Result<String, serde_json::Error> {
        match self {
            WebhookResult::Delivered { .. } => Ok(stored),
            WebhookResult::Failed { error, .. } => {
                let earlier: Vec<String> = serde_json::from_str(&stored).unwrap_or_default();
                serde_json::to_string(&kept_errors(earlier, error.clone()))
            }
        }
    }
}

/// Where a webhook delivery stands. Stored as its lowercase name by every engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookStatus {
    /// Waiting for its first attempt or a retry.
    Pending,
    Delivered,
    /// Given up (the schedule spent, the endpoint gone or deactivated).
    Failed,
}

impl WebhookStatus {
    pub const ALL: [WebhookStatus; 3] = [
        WebhookStatus::Pending,
        WebhookStatus::Delivered,
        WebhookStatus::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Pending => "pending",
            WebhookStatus::Delivered => "delivered",
            WebhookStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One attempt as operators see it (`convo webhooks deliveries`): never a body or a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub id: i64,
    pub delivery_id: i64,
    pub event_id: i64,
    pub endpoint_id: i64,
    pub event: WebhookEvent,
    pub at: Millis,
    /// `delivered` or `failed`.
    pub outcome: WebhookStatus,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub took_ms: i64,
}

/// Whether an endpoint failing since `failing_since` goes inactive after a failure at `now`.
pub fn deactivates(failing_since: Millis, now: Millis) -> bool {
    now.0.saturating_sub(failing_since.0) >= FAILING_LIMIT_MS
}

/// An endpoint's record of failure: the first failure since the last success (`None`: not
/// failing), and that success.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub failing_since: Option<Millis>,
    pub last_success_at: Option<Millis>,
}

/// What an attempt's result does to its delivery and its endpoint: one rule for every engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub status: WebhookStatus,
    /// When it is tried again (`Pending` only).
    pub next_attempt_at: Option<Millis>,
    /// The endpoint's health after it.
    pub health: Health,
    /// The endpoint goes inactive: `410 Gone`, 48 hours of failure, or a spent schedule with no
    /// success since this delivery began (with −10 % jitter its last retry comes at 43 hours).
    pub deactivate: bool,
}

/// How attempt `result` at `now` settles a delivery first tried at `first_attempt_at`, to an
/// endpoint in `health`.
pub fn settle(
    result: &WebhookResult,
    first_attempt_at: Millis,
    health: Health,
    now: Millis,
) -> Settlement {
    match result {
        WebhookResult::Delivered { .. } => Settlement {
            status: WebhookStatus::Delivered,
            next_attempt_at: None,
            health: Health {
                failing_since: None,
                last_success_at: Some(now),
            },
            deactivate: false,
        },
        WebhookResult::Failed { retry_at, gone, .. } => {
            let since = health.failing_since.unwrap_or(now);
            let next = retry_at.filter(|_| !gone);
            let spent = next.is_none()
                && health
                    .last_success_at
                    .is_none_or(|ok| ok.0 < first_attempt_at.0);
            Settlement {
                status: if next.is_some() {
                    WebhookStatus::Pending
                } else {
                    WebhookStatus::Failed
                },
                next_attempt_at: next,
                health: Health {
                    failing_since: Some(since),
                    last_success_at: health.last_success_at,
                },
                deactivate: *gone || spent || deactivates(since, now),
            }
        }
    }
}

/// A delivery's kept errors with `error` added: the newest `ERRORS_KEPT`, oldest first.
/// A claimed delivery as the store holds it when attempts at it are recorded.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub endpoint_id: i64,
    pub event_id: i64,
    pub event: WebhookEvent,
    pub claimed_by: Option<i64>,
    pub first_attempt_at: Option<Millis>,
    /// Its stored errors (a JSON array).
    pub errors: String,
}

/// One `webhook_attempts` row (its time is the batch's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRow<'a> {
    pub delivery_id: i64,
    pub event_id: i64,
    pub endpoint_id: i64,
    pub event: WebhookEvent,
    pub outcome: WebhookStatus,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
    pub took_ms: i64,
}

/// A delivery after its attempt: one more attempt counted, its claim released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryChange {
    pub id: i64,
    /// Its first attempt's start (unchanged when it had one).
    pub first_attempt_at: Millis,
    pub status: WebhookStatus,
    pub next_attempt_at: Option<Millis>,
    pub errors: String,
}

/// An endpoint after a batch's attempts at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointChange {
    pub id: i64,
    pub health: Health,
    pub deactivate: bool,
}

/// What recording a batch of attempts writes, the same on every engine.
#[derive(Debug, Default)]
pub struct Recorded<'a> {
    pub attempts: Vec<AttemptRow<'a>>,
    pub deliveries: Vec<DeliveryChange>,
    /// One per endpoint, in id order (the order engines lock them in).
    pub endpoints: Vec<EndpointChange>,
}

/// Records `results` (in the order the attempts ended) of deliveries `found` as the store
/// holds them, with their endpoints' `health`. A delivery deleted meanwhile is skipped; one
/// whose claim was taken over gets its attempt row and nothing else (the new claim is left
/// alone). Each endpoint's health folds through its results in order, so a batch writes what
/// recording them one at a time would have, with one change per endpoint.
pub fn record<'a>(
    worker: i64,
    results: &'a [Finished],
    found: &HashMap<i64, Claimed>,
    health: &HashMap<i64, Health>,
    now: Millis,
) -> Result<Recorded<'a>, serde_json::Error> {
    let mut out = Recorded::default();
    let mut endpoints: BTreeMap<i64, EndpointChange> = BTreeMap::new();
    for Finished {
        delivery_id: id,
        started_at,
        result,
    } in results
    {
        let Some(claimed) = found.get(id) else {
            continue;
        };
        let (outcome, http_status, error, took_ms) = result.recorded();
        out.attempts.push(AttemptRow {
            delivery_id: *id,
            event_id: claimed.event_id,
            endpoint_id: claimed.endpoint_id,
            event: claimed.event,
            outcome,
            http_status,
            error,
            took_ms,
        });
        if claimed.claimed_by != Some(worker) {
            continue;
        }
        let endpoint = endpoints
            .entry(claimed.endpoint_id)
            .or_insert_with(|| EndpointChange {
                id: claimed.endpoint_id,
                health: health
                    .get(&claimed.endpoint_id)
                    .copied()
                    .unwrap_or_default(),
                deactivate: false,
            });
        let first = claimed.first_attempt_at.unwrap_or(*started_at);
        let settled = settle(result, first, endpoint.health, now);
        endpoint.health = settled.health;
        endpoint.deactivate |= settled.deactivate;
        out.deliveries.push(DeliveryChange {
            id: *id,
            first_attempt_at: first,
            status: settled.status,
            next_attempt_at: settled.next_attempt_at,
            errors: result.errors_after(claimed.errors.clone())?,
        });
    }
    out.endpoints = endpoints.into_values().collect();
    Ok(out)
}

pub fn kept_errors(mut errors: Vec<String>, error: String) -> Vec<String> {
    errors.push(error);
    let excess = errors.len().saturating_sub(ERRORS_KEPT);
    errors.drain(..excess);
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(endpoint_id: i64, claimed_by: Option<i64>) -> Claimed {
        Claimed {
            endpoint_id,
            event_id: 100,
            event: WebhookEvent::MessageCreated,
            claimed_by,
            first_attempt_at: Some(Millis(1_000)),
            errors: "[]".into(),
        }
    }

    fn done(id: i64, result: WebhookResult) -> Finished {
        Finished {
            delivery_id: id,
            started_at: Millis(9_000),
            result,
        }
    }

    fn failing(error: &str, retry_at: Option<i64>) -> WebhookResult {
        WebhookResult::Failed {
            error: error.into(),
            status: Some(500),
            took_ms: 3,
            retry_at: retry_at.map(Millis),
            gone: false,
        }
    }

    #[test]
    fn a_batch_folds_each_endpoints_health_through_its_results_in_order() {
        let now = Millis(10_000);
        let results = vec![
            done(1, failing("HTTP 500", Some(20_000))),
            done(
                2,
                WebhookResult::Delivered {
                    status: 204,
                    took_ms: 1,
                },
            ),
            done(3, failing("HTTP 502", Some(20_000))),
            done(4, failing("HTTP 500", None)),
        ];
        let found: HashMap<i64, Claimed> = [
            (1, claimed(7, Some(9))),
            (2, claimed(7, Some(9))),
            (3, claimed(7, Some(9))),
            (4, claimed(8, Some(9))),
        ]
        .into();
        let health: HashMap<i64, Health> = [(
            7,
            Health {
                failing_since: Some(Millis(5_000)),
                last_success_at: None,
            },
        )]
        .into();
        let out = record(9, &results, &found, &health, now).expect("record");
        // The same as recording them one at a time.
        let mut h7 = health[&7];
        let mut h8 = Health::default();
        let mut expected = Vec::new();
        for f in &results {
            let h = if f.delivery_id == 4 { &mut h8 } else { &mut h7 };
            let s = settle(&f.result, Millis(1_000), *h, now);
            *h = s.health;
            expected.push((f.delivery_id, s.status, s.next_attempt_at));
        }
        let got: Vec<_> = out
            .deliveries
            .iter()
            .map(|d| (d.id, d.status, d.next_attempt_at))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(out.attempts.len(), 4);
        assert_eq!(
            out.endpoints,
            vec![
                EndpointChange {
                    id: 7,
                    health: h7,
                    deactivate: false
                },
                // A spent schedule with no success since it began deactivates.
                EndpointChange {
                    id: 8,
                    health: h8,
                    deactivate: true
                },
            ]
        );
        assert_eq!(
            h7.failing_since,
            Some(now),
            "a success mid-batch restarts the 48 h"
        );
        assert_eq!(out.deliveries[0].errors, r#"["HTTP 500"]"#);
    }

    #[test]
    fn a_first_attempt_starts_the_schedule_when_it_began_not_when_it_was_claimed() {
        let mut fresh = claimed(7, Some(9));
        fresh.first_attempt_at = None;
        let found: HashMap<i64, Claimed> = [(1, fresh), (2, claimed(7, Some(9)))].into();
        let results = vec![
            done(1, failing("HTTP 500", Some(40_000))),
            done(2, failing("HTTP 500", Some(40_000))),
        ];
        let out = record(9, &results, &found, &HashMap::new(), Millis(10_000)).expect("record");
        let firsts: Vec<_> = out
            .deliveries
            .iter()
            .map(|d| (d.id, d.first_attempt_at))
            .collect();
        assert_eq!(firsts, vec![(1, Millis(9_000)), (2, Millis(1_000))]);
    }

    #[test]
    fn a_taken_over_claim_records_its_attempt_only_and_a_deleted_one_nothing() {
        let results = vec![
            done(1, failing("timeout", Some(20_000))),
            done(2, failing("x", None)),
        ];
        let found: HashMap<i64, Claimed> = [(1, claimed(7, Some(3)))].into();
        let out = record(9, &results, &found, &HashMap::new(), Millis(10_000)).expect("record");
        assert_eq!(out.attempts.len(), 1);
        assert_eq!(out.attempts[0].delivery_id, 1);
        assert_eq!(out.attempts[0].error, Some("timeout"));
        assert!(out.deliveries.is_empty());
        assert!(out.endpoints.is_empty());
    }

    #[test]
    fn a_gone_endpoint_stays_deactivated_through_a_later_success_in_the_batch() {
        let gone = WebhookResult::Failed {
            error: "HTTP 410".into(),
            status: Some(410),
            took_ms: 1,
            retry_at: None,
            gone: true,
        };
        let results = vec![
            done(1, gone),
            done(
                2,
                WebhookResult::Delivered {
                    status: 200,
                    took_ms: 1,
                },
            ),
        ];
        let found: HashMap<i64, Claimed> =
            [(1, claimed(7, Some(9))), (2, claimed(7, Some(9)))].into();
        let out = record(9, &results, &found, &HashMap::new(), Millis(10_000)).expect("record");
        assert!(out.endpoints[0].deactivate);
    }
    #[test]
    fn a_delivery_keeps_its_newest_ten_errors() {
        let mut errors = Vec::new();
        for i in 0..12 {
            errors = kept_errors(errors, format!("HTTP {i}"));
        }
        assert_eq!(errors.len(), ERRORS_KEPT);
        assert_eq!(errors.first().map(String::as_str), Some("HTTP 2"));
        assert_eq!(errors.last().map(String::as_str), Some("HTTP 11"));
    }

    #[test]
    fn an_endpoint_goes_inactive_after_48_hours_of_failure() {
        let t = Millis(1_795_521_600_000);
        assert!(!deactivates(t, Millis(t.0 + FAILING_LIMIT_MS - 1)));
        assert!(deactivates(t, Millis(t.0 + FAILING_LIMIT_MS)));
    }

    fn failed(retry_at: Option<Millis>, gone: bool) -> WebhookResult {
        WebhookResult::Failed {
            error: "HTTP 500".into(),
            status: Some(500),
            took_ms: 3,
            retry_at,
            gone,
        }
    }

    #[test]
    fn attempts_settle_deliveries_and_endpoints() {
        let t = Millis(1_795_521_600_000);
        let later = Millis(t.0 + 30_000);
        let failing = |since: Millis| Health {
            failing_since: Some(since),
            last_success_at: None,
        };
        let ok = WebhookResult::Delivered {
            status: 204,
            took_ms: 2,
        };
        let s = settle(&ok, t, failing(t), later);
        assert_eq!(s.status, WebhookStatus::Delivered);
        assert_eq!(
            s.health,
            Health {
                failing_since: None,
                last_success_at: Some(later)
            }
        );
        assert!(!s.deactivate);
        // A first failure starts the failing state; a retry is pending.
        let retry = Some(Millis(t.0 + 90_000));
        let s = settle(&failed(retry, false), t, Health::default(), later);
        assert_eq!(s.status, WebhookStatus::Pending);
        assert_eq!(s.health.failing_since, Some(later));
        assert!(!s.deactivate);
        // 410: failed and off at once, whatever the schedule says.
        let s = settle(&failed(retry, true), t, Health::default(), later);
        assert_eq!(
            (s.status, s.next_attempt_at, s.deactivate),
            (WebhookStatus::Failed, None, true)
        );
        // 48 hours failing: off, even with retries left.
        let day2 = Millis(t.0 + FAILING_LIMIT_MS);
        let s = settle(
            &failed(Some(Millis(day2.0 + 1)), false),
            t,
            failing(t),
            day2,
        );
        assert!(s.deactivate);
        // A spent schedule with no success since the delivery began: off.
        let h43 = Millis(t.0 + 43 * 3_600_000);
        let s = settle(&failed(None, false), t, failing(later), h43);
        assert_eq!((s.status, s.deactivate), (WebhookStatus::Failed, true));
        // A spent schedule when the endpoint succeeded since the delivery began: still on.
        let since_ok = Health {
            failing_since: Some(Millis(later.0 + 1)),
            last_success_at: Some(later),
        };
        let s = settle(&failed(None, false), t, since_ok, h43);
        assert_eq!((s.status, s.deactivate), (WebhookStatus::Failed, false));
    }

    #[test]
    fn statuses_round_trip_by_name() {
        for s in WebhookStatus::ALL {
            assert_eq!(WebhookStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(WebhookStatus::parse("queued"), None);
    }

    #[test]
    fn events_round_trip_by_name() {
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(WebhookEvent::parse("Message_Created"), None);
        assert_eq!(WebhookEvent::parse("patient_created"), None);
    }

    #[test]
    fn a_subscription_asks_for_a_message_event() {
        assert_eq!(
            subscription_event(Some("Message"), Some("message_updated")),
            Ok(WebhookEvent::MessageUpdated)
        );
        assert_eq!(
            subscription_event(Some("Patient"), Some("patient_created")),
            Err(vec![
                "resource_type must be Message".to_string(),
                "event must be message_created or message_updated".to_string(),
            ])
        );
        assert_eq!(
            subscription_event(None, None),
            Err(vec![
                "resource_type is missing (it must be Message)".to_string(),
                "event is missing (it must be message_created or message_updated)".to_string(),
            ])
        );
        assert_eq!(
            subscription_event(Some("message"), Some("message_created")),
            Err(vec!["resource_type must be Message".to_string()])
        );
    }
}
