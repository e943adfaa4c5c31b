//! Message webhooks (CONTRACT §8): endpoints that belong to their key, events frozen at the
//! commit of the write that causes them with one delivery per matching active subscription,
//! claims that hold the per-endpoint limit across owners, attempts that settle deliveries and
//! endpoints, deletion that stops pending deliveries, replay and purge.

use super::inbound::sms;
use super::sends::text;
use crate::Db;
use crate::fixture::{ANA_NUMBER, LOCATION_NUMBER, practice, tenant};
use crate::property::for_all;
use convo_core::outbox::DeliveryStatus;
use convo_core::store::import_text;
use convo_core::store::prelude::*;
use convo_core::webhook::{
    ClaimAsk, EndpointPatch, Finished, SubscriptionFilter, SubscriptionPatch, WebhookEvent,
    WebhookJob, WebhookResult, WebhookStatus,
};
use convo_core::write::InboundSms;
use convo_core::{Denied, Millis, Refusal, SenderKind, StoreError, TenantCtx};
use proptest::prelude::*;
use std::collections::HashMap;

const STALE: i64 = 60_000;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Location 20 of institution 2 with a number and Zed with one, so that both institutions can
/// send.
const OTHER_CAN_TEXT: &str = r#"{"type":"location","id":20,"institution_id":2,"name":"Elsewhere","tz":"Europe/London","phone_number":"+15557770000"}
{"type":"patient","id":200,"institution_id":2,"first_name":"Zed","bio":{"cell_phone_number":"+15165550200"},"created_at":"2024-01-02T10:00:00Z","updated_at":"2024-01-02T10:00:00Z"}"#;

async fn key(store: &dyn Store, subdomains: &[&str]) -> i64 {
    let subdomains: Vec<String> = subdomains.iter().map(|s| s.to_string()).collect();
    store.create_api_key(&subdomains).await.expect("key").id
}

async fn endpoint(store: &dyn Store, key: i64, url: &str) -> i64 {
    store
        .create_endpoint(key, url, SECRET, true)
        .await
        .expect("endpoint")
        .id
}

async fn subscribe(store: &dyn Store, key: i64, endpoint: i64, inst: i64, event: WebhookEvent) {
    let sub = store
        .create_subscription(key, endpoint, inst, event, true)
        .await
        .expect("subscription")
        .expect("the key's endpoint");
    assert_eq!(
        (sub.endpoint_id, sub.institution_id, sub.event, sub.active),
        (endpoint, inst, event, true)
    );
}

async fn claim(store: &dyn Store, worker: i64, limit: i64) -> Vec<WebhookJob> {
    claim_at(store, worker, &[], (limit, 4), Millis::now()).await
}

/// A claim that records `finished` first, `(limit, ahead)`.
async fn claim_at(
    store: &dyn Store,
    worker: i64,
    finished: &[Finished],
    (limit, ahead): (i64, i64),
    now: Millis,
) -> Vec<WebhookJob> {
    let ask = ClaimAsk {
        finished,
        recheck: &[],
        limit,
        ahead,
    };
    let claim = store
        .claim_webhooks(worker, ask, now, STALE)
        .await
        .expect("claim");
    assert!(claim.kept.is_empty(), "nothing was rechecked");
    claim.jobs
}

fn ended(id: i64, result: WebhookResult) -> Finished {
    Finished {
        delivery_id: id,
        started_at: Millis::now(),
        result,
    }
}

async fn finish(store: &dyn Store, worker: i64, id: i64, result: WebhookResult) {
    store
        .finish_webhooks(worker, &[ended(id, result)], Millis::now())
        .await
        .expect("finish");
}

fn delivered() -> WebhookResult {
    WebhookResult::Delivered {
        status: 204,
        took_ms: 3,
    }
}

fn failed(retry_at: Option<Millis>, gone: bool) -> WebhookResult {
    WebhookResult::Failed {
        error: if gone { "HTTP 410" } else { "HTTP 500" }.into(),
        status: Some(if gone { 410 } else { 500 }),
        took_ms: 5,
        retry_at,
        gone,
    }
}

/// A practice, a key for `acme`, one endpoint subscribed to both events of institution 1, a
/// worker: what most cases start from.
async fn subscribed(db: &Db) -> (i64, i64, i64) {
    let store = db.store.as_ref();
    practice(store).await;
    let key = key(store, &["acme"]).await;
    let ep = endpoint(store, key, "https://hooks.example.com/a").await;
    for event in WebhookEvent::ALL {
        subscribe(store, key, ep, 1, event).await;
    }
    let worker = store.register_worker().await.expect("worker");
    (key, ep, worker)
}

pub async fn endpoints_belong_to_their_key(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let (a, b) = (key(store, &["acme"]).await, key(store, &["acme"]).await);
    let made = store
        .create_endpoint(a, "https://hooks.example.com/a", SECRET, true)
        .await
        .expect("endpoint");
    assert_eq!(
        (
            made.target_url.as_str(),
            made.secret_key.as_str(),
            made.active
        ),
        ("https://hooks.example.com/a", SECRET, true)
    );
    assert_eq!(made.created_at, made.updated_at);
    let off = store
        .create_endpoint(a, "https://hooks.example.com/b", SECRET, false)
        .await
        .expect("endpoint");
    let all = store.list_endpoints(a, None).await.expect("list");
    assert_eq!(all, vec![made.clone(), off.clone()]);
    assert_eq!(
        store.list_endpoints(a, Some(false)).await.expect("list"),
        vec![off.clone()]
    );
    // Another key sees nothing of them and can change nothing.
    assert!(
        store
            .list_endpoints(b, None)
            .await
            .expect("list")
            .is_empty()
    );
    let patch = EndpointPatch {
        target_url: Some("https://evil.example.com".into()),
        active: None,
    };
    assert_eq!(
        store
            .update_endpoint(b, made.id, &patch)
            .await
            .expect("update"),
        None
    );
    assert!(!store.delete_endpoint(b, made.id).await.expect("delete"));
    assert_eq!(
        store
            .list_subscriptions(b, made.id, &SubscriptionFilter::default())
            .await
            .expect("list"),
        None
    );
    assert_eq!(
        store
            .create_subscription(b, made.id, 1, WebhookEvent::MessageCreated, true)
            .await
            .expect("subscribe"),
        None
    );
    // Its own key changes it; only what the patch names changes.
    let changed = store
        .update_endpoint(a, made.id, &patch)
        .await
        .expect("update")
        .expect("the key's endpoint");
    assert_eq!(changed.target_url, "https://evil.example.com");
    assert!(changed.active);
    assert!(changed.updated_at >= made.updated_at);
    assert!(store.delete_endpoint(a, off.id).await.expect("delete"));
    assert!(!store.delete_endpoint(a, off.id).await.expect("delete"));
    assert_eq!(store.list_endpoints(a, None).await.expect("list").len(), 1);
    // The key's institutions by subdomain, as §7 orders the refusals.
    assert_eq!(
        store.institution_for_key(a, "ACME").await.expect("scope"),
        Ok(1)
    );
    assert_eq!(
        store.institution_for_key(a, "other").await.expect("scope"),
        Err(Denied::Forbidden {
            subdomain: "other".into()
        })
    );
    store.revoke_api_key(a).await.expect("revoke");
    assert_eq!(
        store.institution_for_key(a, "acme").await.expect("scope"),
        Err(Denied::Revoked)
    );
}

pub async fn subscriptions_are_one_per_event_and_filterable(db: Db) {
    let (key, ep, _) = subscribed(&db).await;
    let store = db.store.as_ref();
    let all = store
        .list_subscriptions(key, ep, &SubscriptionFilter::default())
        .await
        .expect("list")
        .expect("endpoint");
    assert_eq!(all.len(), 2);
    // The same subscription again is the same one, active as asked.
    let again = store
        .create_subscription(key, ep, 1, WebhookEvent::MessageCreated, false)
        .await
        .expect("subscribe")
        .expect("endpoint");
    assert_eq!(again.id, all[0].id);
    assert!(!again.active);
    let created = SubscriptionFilter {
        institution_id: Some(1),
        event: Some(WebhookEvent::MessageCreated),
    };
    let only = store
        .list_subscriptions(key, ep, &created)
        .await
        .expect("list")
        .expect("endpoint");
    assert_eq!(only, vec![again.clone()]);
    let none = SubscriptionFilter {
        institution_id: Some(2),
        event: None,
    };
    assert_eq!(
        store
            .list_subscriptions(key, ep, &none)
            .await
            .expect("list"),
        Some(vec![])
    );
    // Moved to another endpoint of the key; onto one that has it already: refused.
    let second = endpoint(store, key, "https://hooks.example.com/b").await;
    let moved = store
        .update_subscription(
            key,
            ep,
            again.id,
            1,
            &SubscriptionPatch {
                active: Some(true),
                new_endpoint_id: Some(second),
            },
        )
        .await
        .expect("move")
        .expect("found");
    assert_eq!((moved.endpoint_id, moved.active), (second, true));
    subscribe(store, key, ep, 1, WebhookEvent::MessageCreated).await;
    let clash = store
        .update_subscription(
            key,
            second,
            again.id,
            1,
            &SubscriptionPatch {
                active: None,
                new_endpoint_id: Some(ep),
            },
        )
        .await;
    assert!(
        matches!(
            clash,
            Err(StoreError::Refused(Refusal::SubscriptionExists { endpoint_id, .. }))
                if endpoint_id == ep
        ),
        "{clash:?}"
    );
    // The wrong institution, endpoint or key finds nothing.
    let patch = SubscriptionPatch::default();
    for (k, e, inst) in [(key, second, 2), (key, ep, 1), (key + 1, second, 1)] {
        assert_eq!(
            store
                .update_subscription(k, e, again.id, inst, &patch)
                .await
                .expect("update"),
            None,
            "key {k}, endpoint {e}, institution {inst}"
        );
    }
}

pub async fn writes_freeze_their_events_at_commit(db: Db) {
    let (_, ep, worker) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let sent = store
        .send_message(&here, text(100, 5, "See you at 3"))
        .await
        .expect("send");
    let seen = store.mark_seen(&here, sent.id, 6).await.expect("seen");
    // Seen again by the same user changes nothing, and fires nothing.
    store.mark_seen(&here, sent.id, 6).await.expect("seen");
    let jobs = claim(store, worker, 10).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let (created, updated) = (&jobs[0], &jobs[1]);
    assert_eq!(created.event.name, WebhookEvent::MessageCreated);
    // Frozen: the created event is the message as the send committed it, not as it is now.
    assert_eq!(created.event.message, sent);
    assert_eq!(created.event.message.seen_by, "[]");
    assert_eq!(created.event.delivery, Some((DeliveryStatus::Queued, None)));
    assert_eq!(
        (
            created.event.subdomain.as_str(),
            created.event.institution_id,
            created.event.location_id,
            created.event.patient_id,
            created.event.zone.as_str()
        ),
        ("acme", 1, 10, 100, "America/Los_Angeles")
    );
    assert_eq!(created.event.time, sent.created_at);
    assert_eq!(updated.event.name, WebhookEvent::MessageUpdated);
    assert_eq!(updated.event.message, seen);
    assert_eq!(updated.event.message.seen_by, r#"["6"]"#);
    assert_ne!(created.event.id, updated.event.id);
    for job in &jobs {
        assert_eq!(
            (job.endpoint_id, job.attempts, job.secret_key.as_str()),
            (ep, 1, SECRET)
        );
        assert_eq!(job.target_url, "https://hooks.example.com/a");
        assert!(job.errors.is_empty());
        finish(store, worker, job.id, delivered()).await;
    }
    // A status callback moves the delivery: message_updated with the new status; the same
    // status again moves nothing.
    let delivery = sent.sms_msg_id.expect("delivery");
    for _ in 0..2 {
        store
            .update_delivery(
                Some(delivery),
                "SM-1",
                DeliveryStatus::Undelivered,
                Some("30003".into()),
            )
            .await
            .expect("callback");
    }
    let jobs = claim(store, worker, 10).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].event.name, WebhookEvent::MessageUpdated);
    assert_eq!(
        jobs[0].event.delivery,
        Some((DeliveryStatus::Undelivered, Some("30003".into())))
    );
    finish(store, worker, jobs[0].id, delivered()).await;
    // A patient's SMS: message_created, a patient sender, no delivery.
    let got = store
        .receive_sms(sms(ANA_NUMBER, "Running late", "SM-in-1"))
        .await
        .expect("inbound");
    let jobs = claim(store, worker, 10).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let m = &jobs[0].event.message;
    assert_eq!(
        (
            m.id,
            m.sender.kind,
            m.sender.name.as_deref(),
            jobs[0].event.delivery.clone()
        ),
        (got.message_id, SenderKind::Patient, Some("Ana Diaz"), None)
    );
    // The provider retrying its webhook is not a new message.
    store
        .receive_sms(sms(ANA_NUMBER, "Running late", "SM-in-1"))
        .await
        .expect("inbound");
    finish(store, worker, jobs[0].id, delivered()).await;
    assert!(claim(store, worker, 10).await.is_empty());
    // Imports fire nothing.
    import_text(
        store,
        r#"{"type":"message","id":60000,"conversation_id":1000,"body":"imported","created_at":"2024-03-13T08:00:00.000Z","sender":{"type":"User","id":5}}"#,
    )
    .await
    .expect("import");
    assert!(claim(store, worker, 10).await.is_empty());
}

pub async fn nothing_is_queued_for_what_is_inactive(db: Db) {
    let (key, ep, worker) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let subs = store
        .list_subscriptions(key, ep, &SubscriptionFilter::default())
        .await
        .expect("list")
        .expect("endpoint");
    let off = SubscriptionPatch {
        active: Some(false),
        new_endpoint_id: None,
    };
    for s in &subs {
        store
            .update_subscription(key, ep, s.id, 1, &off)
            .await
            .expect("update")
            .expect("found");
    }
    store
        .send_message(&here, text(100, 5, "not for anyone"))
        .await
        .expect("send");
    assert!(claim(store, worker, 10).await.is_empty());
    // Subscriptions on, endpoint off: still nothing.
    for s in &subs {
        store
            .create_subscription(key, ep, 1, s.event, true)
            .await
            .expect("subscribe");
    }
    let endpoint_off = EndpointPatch {
        target_url: None,
        active: Some(false),
    };
    store
        .update_endpoint(key, ep, &endpoint_off)
        .await
        .expect("update");
    store
        .send_message(&here, text(100, 5, "still not"))
        .await
        .expect("send");
    assert!(claim(store, worker, 10).await.is_empty());
    assert_eq!(
        store
            .webhook_stats(Millis::now(), STALE)
            .await
            .expect("stats")
            .pending,
        0
    );
    // Another institution's writes never reach institution 1's subscriptions.
    import_text(store, OTHER_CAN_TEXT).await.expect("other");
    let on = EndpointPatch {
        target_url: None,
        active: Some(true),
    };
    store.update_endpoint(key, ep, &on).await.expect("update");
    store
        .send_message(&tenant(2, 20), text(200, 7, "other tenant"))
        .await
        .expect("send");
    assert!(claim(store, worker, 10).await.is_empty());
}

pub async fn attempts_settle_deliveries_and_endpoints(db: Db) {
    let (key, ep, worker) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    store
        .send_message(&here, text(100, 5, "first"))
        .await
        .expect("send");
    let job = claim(store, worker, 10).await.remove(0);
    // A failure: pending again at the time the worker chose, the error kept.
    let at = Millis(Millis::now().0 + 60_000);
    finish(store, worker, job.id, failed(Some(at), false)).await;
    assert!(claim(store, worker, 10).await.is_empty(), "not due yet");
    assert_eq!(store.next_webhook_at().await.expect("next"), Some(at));
    let stats = store
        .webhook_stats(Millis::now(), STALE)
        .await
        .expect("stats");
    assert_eq!((stats.pending, stats.due, stats.claimed), (1, 0, 0));
    let again = claim_at(store, worker, &[], (10, 4), at).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id, again[0].attempts, again[0].errors.clone()),
        (job.id, 2, vec!["HTTP 500".to_string()])
    );
    // The schedule counts from when the first attempt began, recorded with it.
    assert_eq!(job.first_attempt_at, None, "never attempted before");
    let began = again[0]
        .first_attempt_at
        .expect("the first attempt's start");
    assert!(began.0 <= Millis::now().0 && began.0 + 60_000 > Millis::now().0);
    assert_eq!(again[0].event, job.event, "the same event, the same id");
    finish(store, worker, job.id, delivered()).await;
    let attempts = store
        .list_webhook_attempts(Some(ep), None, 10)
        .await
        .expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.delivery_id, a.outcome, a.http_status))
            .collect::<Vec<_>>(),
        vec![
            (job.id, WebhookStatus::Delivered, Some(204)),
            (job.id, WebhookStatus::Failed, Some(500)),
        ]
    );
    assert_eq!(attempts[1].error.as_deref(), Some("HTTP 500"));
    assert_eq!(
        store
            .list_webhook_attempts(None, Some(WebhookStatus::Failed), 10)
            .await
            .expect("attempts")
            .len(),
        1
    );
    // 410 Gone: the endpoint goes inactive at once and gets nothing more.
    store
        .send_message(&here, text(100, 5, "second"))
        .await
        .expect("send");
    let job = claim(store, worker, 10).await.remove(0);
    finish(store, worker, job.id, failed(Some(Millis::now()), true)).await;
    let eps = store.list_endpoints(key, None).await.expect("list");
    assert!(!eps[0].active, "410 deactivates");
    store
        .send_message(&here, text(100, 5, "third"))
        .await
        .expect("send");
    assert!(claim(store, worker, 10).await.is_empty());
    // Re-activated: new writes reach it again.
    let on = EndpointPatch {
        target_url: None,
        active: Some(true),
    };
    store.update_endpoint(key, ep, &on).await.expect("update");
    store
        .send_message(&here, text(100, 5, "fourth"))
        .await
        .expect("send");
    let jobs = claim(store, worker, 10).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].event.message.body, "fourth");
    // A spent schedule with no success since the delivery began: failed, and the endpoint
    // off (the success above came before it).
    let retry = Millis(Millis::now().0 + 1);
    finish(store, worker, jobs[0].id, failed(Some(retry), false)).await;
    let last = claim_at(store, worker, &[], (10, 4), Millis(retry.0 + 1)).await;
    assert_eq!(last.len(), 1);
    finish(store, worker, last[0].id, failed(None, false)).await;
    assert!(!store.list_endpoints(key, None).await.expect("list")[0].active);
}

pub async fn endpoints_are_leased_to_one_worker_at_a_time(db: Db) {
    let (key, _, w1) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let other = endpoint(store, key, "https://hooks.example.com/other").await;
    subscribe(store, key, other, 1, WebhookEvent::MessageCreated).await;
    for i in 0..6 {
        store
            .send_message(&here, text(100, 5, &format!("m{i}")))
            .await
            .expect("send");
    }
    let w2 = store.register_worker().await.expect("worker");
    store.heartbeat_worker(w1).await.expect("heartbeat");
    // 12 due (6 to each endpoint). The first claim leases both endpoints to w1, whatever its
    // limit; w2 gets nothing of them while w1 lives.
    let first = claim_at(store, w1, &[], (3, 4), Millis::now()).await;
    assert_eq!(first.len(), 3);
    assert!(claim(store, w2, 100).await.is_empty(), "both are w1's");
    // w1 holds at most `ahead` per endpoint, in flight and queued together.
    let second = claim_at(store, w1, &[], (100, 4), Millis::now()).await;
    assert_eq!(first.len() + second.len(), 8, "4 per endpoint");
    for e in [first[0].endpoint_id, other] {
        // Oldest first within an endpoint: each holds its first four events.
        let mut ids: Vec<i64> = first
            .iter()
            .chain(&second)
            .filter(|j| j.endpoint_id == e)
            .map(|j| j.event.id)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), 4, "endpoint {e}");
        let lowest = ids[0];
        assert_eq!(
            ids,
            (lowest..lowest + 4).collect::<Vec<_>>(),
            "endpoint {e}"
        );
    }
    assert!(claim(store, w1, 100).await.is_empty(), "every slot is held");
    // One settles: a slot frees, for the next of that endpoint, in the same call.
    let done = [ended(second[0].id, delivered())];
    let next = claim_at(store, w1, &done, (100, 4), Millis::now()).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].endpoint_id, second[0].endpoint_id);
    // A worker that stops gives its claims and leases back at once; an attempt counts only
    // once recorded, so what w1 held and never finished is still a first attempt.
    store.retire_worker(w1).await.expect("retire");
    let taken = claim_at(store, w2, &[], (100, 5), Millis::now()).await;
    assert_eq!(taken.len(), 10, "5 and 6 left, at most 5 each");
    assert!(
        taken
            .iter()
            .all(|j| j.attempts == 1 && j.first_attempt_at.is_none())
    );
}

pub async fn a_lease_goes_back_when_its_worker_holds_nothing_there(db: Db) {
    let (_, ep, w1) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let w2 = store.register_worker().await.expect("worker");
    store.heartbeat_worker(w1).await.expect("heartbeat");
    store
        .send_message(&here, text(100, 5, "one"))
        .await
        .expect("send");
    let job = claim(store, w1, 10).await.remove(0);
    store
        .send_message(&here, text(100, 5, "two"))
        .await
        .expect("send");
    assert!(claim(store, w2, 10).await.is_empty(), "leased to w1");
    // w1 finishes and claims nothing more (limit 0): it holds nothing there, the lease goes.
    finish(store, w1, job.id, delivered()).await;
    let jobs = claim(store, w2, 10).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].endpoint_id, jobs[0].event.message.body.as_str()),
        (ep, "two")
    );
    // w2 stops heartbeating: a live worker takes over its lease and its claim (the same
    // delivery, still a first attempt), and then w2's late finish changes nothing of it.
    let stale = 300;
    tokio::time::sleep(std::time::Duration::from_millis(2 * stale as u64)).await;
    store.heartbeat_worker(w1).await.expect("heartbeat");
    let ask = ClaimAsk {
        finished: &[],
        recheck: &[],
        limit: 10,
        ahead: 4,
    };
    let taken = store
        .claim_webhooks(w1, ask, Millis::now(), stale)
        .await
        .expect("claim")
        .jobs;
    assert_eq!(
        taken.iter().map(|j| (j.id, j.attempts)).collect::<Vec<_>>(),
        vec![(jobs[0].id, 1)]
    );
}

pub async fn a_recheck_keeps_what_may_still_go_and_gives_back_the_rest(db: Db) {
    let (key, ep, worker) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    for body in ["one", "two"] {
        store
            .send_message(&here, text(100, 5, body))
            .await
            .expect("send");
    }
    let jobs = claim(store, worker, 10).await;
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids.len(), 2);
    let recheck = |ids: Vec<i64>| async move {
        let ask = ClaimAsk {
            finished: &[],
            recheck: &ids,
            limit: 0,
            ahead: 4,
        };
        store
            .claim_webhooks(worker, ask, Millis::now(), STALE)
            .await
            .expect("recheck")
    };
    assert_eq!(recheck(ids.clone()).await.kept, ids, "both may still go");
    // The endpoint is switched off: neither may go, and both are given back.
    let off = EndpointPatch {
        target_url: None,
        active: Some(false),
    };
    store.update_endpoint(key, ep, &off).await.expect("update");
    let off_claim = recheck(ids.clone()).await;
    assert!(off_claim.kept.is_empty() && off_claim.jobs.is_empty());
    // Back on: both are claimable again, still first attempts.
    let on = EndpointPatch {
        target_url: None,
        active: Some(true),
    };
    store.update_endpoint(key, ep, &on).await.expect("update");
    let again = claim(store, worker, 10).await;
    assert_eq!(again.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
    assert!(again.iter().all(|j| j.attempts == 1));
}

pub async fn deleting_stops_pending_deliveries(db: Db) {
    let (key, ep, worker) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let sent = store
        .send_message(&here, text(100, 5, "one"))
        .await
        .expect("send");
    store.mark_seen(&here, sent.id, 6).await.expect("seen");
    let subs = store
        .list_subscriptions(key, ep, &SubscriptionFilter::default())
        .await
        .expect("list")
        .expect("endpoint");
    let created = subs
        .iter()
        .find(|s| s.event == WebhookEvent::MessageCreated)
        .expect("created");
    assert!(
        store
            .delete_subscription(key, ep, created.id)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_subscription(key, ep, created.id)
            .await
            .expect("delete")
    );
    let jobs = claim(store, worker, 10).await;
    assert_eq!(jobs.len(), 1, "only the updated event is left");
    assert_eq!(jobs[0].event.name, WebhookEvent::MessageUpdated);
    // Deleted while in flight: the attempt's end records nothing and revives nothing.
    assert!(store.delete_endpoint(key, ep).await.expect("delete"));
    finish(store, worker, jobs[0].id, delivered()).await;
    assert!(claim(store, worker, 10).await.is_empty());
    let stats = store
        .webhook_stats(Millis::now(), STALE)
        .await
        .expect("stats");
    assert_eq!(stats.pending, 0);
}

/// A settled delivery is done with: its end reported again (a trip whose commit the worker
/// did not hear of is sent again with the next) adds no attempt, and nothing is left pending.
pub async fn a_settled_delivery_is_recorded_once(db: Db) {
    let (_, ep, worker) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    store
        .send_message(&here, text(100, 5, "one"))
        .await
        .expect("send");
    let jobs = claim(store, worker, 10).await;
    assert_eq!(jobs.len(), 1);
    finish(store, worker, jobs[0].id, delivered()).await;
    finish(store, worker, jobs[0].id, delivered()).await;
    let attempts = store
        .list_webhook_attempts(Some(ep), None, 10)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(
        (attempts[0].delivery_id, attempts[0].outcome),
        (jobs[0].id, WebhookStatus::Delivered)
    );
    let stats = store
        .webhook_stats(Millis::now(), STALE)
        .await
        .expect("stats");
    assert_eq!((stats.pending, stats.due, stats.claimed), (0, 0, 0));
    assert!(claim(store, worker, 10).await.is_empty());
}

/// The worker turns a send's queued event into deliveries later: what it delivers is what
/// matched at commit, subscriptions made since get nothing of it, ids are never used twice
/// (a deleted subscription's by a new one, a purged event's by a new event), and a replay
/// does not queue again what is still queued.
pub async fn what_matched_at_commit_is_what_is_delivered(db: Db) {
    let (key, ep, worker) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let before = Millis::now();
    store
        .send_message(&here, text(100, 5, "one"))
        .await
        .expect("send");
    // Made after the commit, before any claim: not a match of that event.
    let late = endpoint(store, key, "https://hooks.example.com/late").await;
    subscribe(store, key, late, 1, WebhookEvent::MessageCreated).await;
    assert_eq!(
        store
            .replay_webhooks(ep, before, Millis::now())
            .await
            .expect("replay"),
        Some(0),
        "queued already"
    );
    let stats = store
        .webhook_stats(Millis::now(), STALE)
        .await
        .expect("stats");
    assert_eq!((stats.pending, stats.claimed), (1, 0));
    let jobs = claim(store, worker, 10).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].endpoint_id, ep);
    let first_event = jobs[0].event.id;
    finish(store, worker, jobs[0].id, delivered()).await;
    // A subscription deleted and another made: a new id.
    let subs = store
        .list_subscriptions(key, late, &SubscriptionFilter::default())
        .await
        .expect("list")
        .expect("endpoint");
    assert!(
        store
            .delete_subscription(key, late, subs[0].id)
            .await
            .expect("delete")
    );
    let again = store
        .create_subscription(key, late, 1, WebhookEvent::MessageCreated, true)
        .await
        .expect("subscription")
        .expect("the key's endpoint");
    assert!(again.id > subs[0].id, "{} reused", again.id);
    // Every event purged: the next one has a new id all the same.
    assert!(
        store
            .purge_webhooks(Millis(Millis::now().0 + 1))
            .await
            .expect("purge")
            >= 1
    );
    store
        .send_message(&here, text(100, 5, "two"))
        .await
        .expect("send");
    let jobs = claim(store, worker, 10).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs.iter().all(|j| j.event.id > first_event), "{jobs:?}");
}

pub async fn replay_queues_stored_events_again(db: Db) {
    let (key, ep, worker) = subscribed(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let before = Millis::now();
    for body in ["a", "b"] {
        store
            .send_message(&here, text(100, 5, body))
            .await
            .expect("send");
    }
    let jobs = claim(store, worker, 10).await;
    assert_eq!(jobs.len(), 2);
    for j in &jobs {
        finish(store, worker, j.id, delivered()).await;
    }
    assert_eq!(
        store
            .replay_webhooks(ep, before, Millis::now())
            .await
            .expect("replay"),
        Some(2)
    );
    // Pending already: not queued twice.
    assert_eq!(
        store
            .replay_webhooks(ep, before, Millis::now())
            .await
            .expect("replay"),
        Some(0)
    );
    let replayed = claim(store, worker, 10).await;
    let mut got: Vec<i64> = replayed.iter().map(|j| j.event.id).collect();
    let mut want: Vec<i64> = jobs.iter().map(|j| j.event.id).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "the same events, the same ids");
    assert!(
        replayed
            .iter()
            .all(|j| j.attempts == 1 && j.errors.is_empty())
    );
    for j in &replayed {
        finish(store, worker, j.id, delivered()).await;
    }
    assert_eq!(
        store
            .replay_webhooks(ep, Millis(Millis::now().0 + 60_000), Millis::now())
            .await
            .expect("replay"),
        Some(0),
        "nothing since then"
    );
    assert_eq!(
        store
            .replay_webhooks(ep + 1000, before, Millis::now())
            .await
            .expect("replay"),
        None
    );
    // Purged: events, settled deliveries and attempts before the cut go; replay finds nothing.
    let purged = store
        .purge_webhooks(Millis(Millis::now().0 + 1))
        .await
        .expect("purge");
    assert_eq!(purged, 2);
    assert!(
        store
            .list_webhook_attempts(None, None, 10)
            .await
            .expect("attempts")
            .is_empty()
    );
    assert_eq!(
        store
            .replay_webhooks(ep, before, Millis::now())
            .await
            .expect("replay"),
        Some(0)
    );
    let _ = key;
}

/// Subscriptions of the property below: (endpoint, institution, event). Endpoints 0 and 1
/// belong to keys of one institution each, 2 and 3 to one key of both.
const TENANCY_SUBS: [(usize, i64, WebhookEvent); 6] = [
    (0, 1, WebhookEvent::MessageCreated),
    (1, 2, WebhookEvent::MessageCreated),
    (1, 2, WebhookEvent::MessageUpdated),
    (2, 1, WebhookEvent::MessageCreated),
    (2, 1, WebhookEvent::MessageUpdated),
    (3, 2, WebhookEvent::MessageCreated),
];

/// A write of the property below, in institution `inst` + 1.
#[derive(Clone, Debug)]
enum TenancyOp {
    Send {
        inst: usize,
    },
    Inbound {
        inst: usize,
    },
    /// A message of the institution written earlier in the run, seen by one of its users.
    Seen {
        inst: usize,
        pick: usize,
        user: usize,
    },
    /// One of `TENANCY_SUBS` deleted, or made again.
    Toggle {
        sub: usize,
    },
}

fn tenancy_ops() -> impl Strategy<Value = Vec<TenancyOp>, Tree: Send> {
    let op = prop_oneof![
        (0..2usize).prop_map(|inst| TenancyOp::Send { inst }),
        (0..2usize).prop_map(|inst| TenancyOp::Inbound { inst }),
        (0..2usize, 0..64usize, 0..2usize).prop_map(|(inst, pick, user)| TenancyOp::Seen {
            inst,
            pick,
            user
        }),
        (0..TENANCY_SUBS.len()).prop_map(|sub| TenancyOp::Toggle { sub }),
    ];
    proptest::collection::vec(op, 1..40)
}

struct TenancyWorld<'a> {
    store: &'a dyn Store,
    /// Each endpoint's key and id.
    endpoints: [(i64, i64); 4],
    worker: i64,
}

impl TenancyWorld<'_> {
    /// Claims and settles everything pending: how many deliveries each (endpoint, event) got,
    /// and an error for a delivery outside its endpoint's institution.
    async fn drain(&self) -> Result<HashMap<(usize, WebhookEvent), usize>, String> {
        let mut got = HashMap::new();
        let mut finished = Vec::new();
        loop {
            let jobs = claim_at(
                self.store,
                self.worker,
                &finished,
                (1_000, 1_000),
                Millis::now(),
            )
            .await;
            if jobs.is_empty() {
                return Ok(got);
            }
            finished.clear();
            for j in jobs {
                let e = self
                    .endpoints
                    .iter()
                    .position(|(_, id)| *id == j.endpoint_id)
                    .ok_or_else(|| {
                        format!("a job for endpoint {}, which nobody made", j.endpoint_id)
                    })?;
                let wants = TENANCY_SUBS
                    .iter()
                    .find(|(ep, _, event)| *ep == e && *event == j.event.name)
                    .map(|(_, inst, _)| *inst);
                if wants != Some(j.event.institution_id) {
                    return Err(format!(
                        "endpoint {e} got {:?} of institution {} ({})",
                        j.event.name, j.event.institution_id, j.event.subdomain
                    ));
                }
                *got.entry((e, j.event.name)).or_insert(0) += 1;
                finished.push(ended(j.id, delivered()));
            }
        }
    }

    /// One run: every subscription on, the queue empty, then `ops`, then what each
    /// subscription got must be what its institution's writes while it lived asked for.
    async fn run(&self, ops: Vec<TenancyOp>) -> Result<(), String> {
        let store = self.store;
        for (ep, inst, event) in TENANCY_SUBS {
            let (key, id) = self.endpoints[ep];
            store
                .create_subscription(key, id, inst, event, true)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.drain().await?;
        let mut on = [true; TENANCY_SUBS.len()];
        let mut expected: HashMap<(usize, WebhookEvent), usize> = HashMap::new();
        // Messages written in this run, per institution, with who has seen them.
        let mut written: [Vec<(i64, Vec<i64>)>; 2] = [Vec::new(), Vec::new()];
        let fire = |expected: &mut HashMap<(usize, WebhookEvent), usize>,
                    on: &[bool],
                    inst: i64,
                    event: WebhookEvent| {
            for (i, (ep, sub_inst, sub_event)) in TENANCY_SUBS.iter().enumerate() {
                if on[i] && *sub_inst == inst && *sub_event == event {
                    *expected.entry((*ep, event)).or_insert(0) += 1;
                }
            }
        };
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                TenancyOp::Send { inst } => {
                    let (here, patient, user) = TENANCY_PLACES[inst];
                    let m = store
                        .send_message(&here(), text(patient, user[0], &format!("send {n}")))
                        .await
                        .map_err(|e| e.to_string())?;
                    written[inst].push((m.id, Vec::new()));
                    fire(
                        &mut expected,
                        &on,
                        inst as i64 + 1,
                        WebhookEvent::MessageCreated,
                    );
                }
                TenancyOp::Inbound { inst } => {
                    let (to, from) = TENANCY_NUMBERS[inst];
                    let sid = format!("SM{}-{n}", Millis::now().0);
                    let got = store
                        .receive_sms(InboundSms {
                            to: to.into(),
                            from: from.into(),
                            body: format!("reply {n}"),
                            sid,
                            media: None,
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                    written[inst].push((got.message_id, Vec::new()));
                    fire(
                        &mut expected,
                        &on,
                        inst as i64 + 1,
                        WebhookEvent::MessageCreated,
                    );
                }
                TenancyOp::Seen { inst, pick, user } => {
                    let (here, _, users) = TENANCY_PLACES[inst];
                    let Some(len) = std::num::NonZeroUsize::new(written[inst].len()) else {
                        continue;
                    };
                    let (id, seen) = &mut written[inst][pick % len];
                    let user = users[user % users.len()];
                    store
                        .mark_seen(&here(), *id, user)
                        .await
                        .map_err(|e| e.to_string())?;
                    if !seen.contains(&user) {
                        seen.push(user);
                        fire(
                            &mut expected,
                            &on,
                            inst as i64 + 1,
                            WebhookEvent::MessageUpdated,
                        );
                    }
                }
                TenancyOp::Toggle { sub } => {
                    let (ep, inst, event) = TENANCY_SUBS[sub];
                    let (key, id) = self.endpoints[ep];
                    if on[sub] {
                        let subs = store
                            .list_subscriptions(key, id, &SubscriptionFilter::default())
                            .await
                            .map_err(|e| e.to_string())?
                            .unwrap_or_default();
                        let s = subs
                            .iter()
                            .find(|s| s.institution_id == inst && s.event == event)
                            .ok_or("a subscription that is on was not listed")?;
                        store
                            .delete_subscription(key, id, s.id)
                            .await
                            .map_err(|e| e.to_string())?;
                        // Its pending deliveries go with it.
                        expected.remove(&(ep, event));
                    } else {
                        store
                            .create_subscription(key, id, inst, event, true)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    on[sub] = !on[sub];
                }
            }
        }
        let got = self.drain().await?;
        if got != expected {
            return Err(format!("delivered {got:?}, expected {expected:?}"));
        }
        Ok(())
    }
}

/// Per institution: where its staff write, the patient they write to, its users.
type Place = (fn() -> TenantCtx, i64, &'static [i64]);
const TENANCY_PLACES: [Place; 2] = [
    (|| tenant(1, 10), 100, &[5, 6]),
    (|| tenant(2, 20), 200, &[7]),
];
/// Per institution: its location's number and its patient's.
const TENANCY_NUMBERS: [(&str, &str); 2] = [
    (LOCATION_NUMBER, ANA_NUMBER),
    ("+15557770000", "+15165550200"),
];

/// Whatever mix of writes in two institutions, and subscriptions deleted and made again: a
/// subscription receives its own institution's events only, each once, and nothing pending of
/// a deleted one.
pub async fn no_subscription_receives_another_institutions_events(db: Db) {
    let store = db.store.as_ref();
    practice(store).await;
    import_text(store, OTHER_CAN_TEXT).await.expect("other");
    let keys = [
        key(store, &["acme"]).await,
        key(store, &["other"]).await,
        key(store, &["acme", "other"]).await,
    ];
    let mut endpoints = [(0, 0); 4];
    for (i, k) in [keys[0], keys[1], keys[2], keys[2]].into_iter().enumerate() {
        endpoints[i] = (
            k,
            endpoint(store, k, &format!("https://hooks.example.com/{i}")).await,
        );
    }
    let world = TenancyWorld {
        store,
        endpoints,
        worker: store.register_worker().await.expect("worker"),
    };
    let world = &world;
    for_all(24, tenancy_ops(), move |ops| world.run(ops)).await;
}
