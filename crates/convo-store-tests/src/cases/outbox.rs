//! The SMS outbox (CONTRACT §6 and §9): claims held by owners that renew them, attempts and
//! provider callbacks in any order, operators' retries, and opt-outs that stop a queued send.

use super::inbound::sms;
use super::sends::text;
use crate::Db;
use crate::fixture::{ANA_NUMBER, LOCATION_NUMBER, delivery_where, practice, tenant};
use convo_core::outbox::{Attempt, DeliveryRecord, DeliveryStatus};
use convo_core::store::prelude::*;
use convo_core::{Millis, Missing, Refusal, StoreError};
use std::time::Duration;

async fn queue(store: &dyn Store, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let m = store
            .send_message(&tenant(1, 10), text(100, 5, &format!("Message {i}")))
            .await
            .expect("send");
        ids.push(m.sms_msg_id.expect("delivery"));
    }
    ids
}

async fn finish(store: &dyn Store, worker: i64, id: i64, attempt: Attempt) {
    store
        .finish_delivery(worker, id, attempt)
        .await
        .expect("finish");
}

async fn record(store: &dyn Store, id: i64) -> DeliveryRecord {
    delivery_where(store, |d| d.id == id).await
}

/// Two owners that both renew: registering the second must not end the first (an engine that
/// one process owns may take back claims at registration; a heartbeat brings an owner back).
async fn two_owners(store: &dyn Store) -> (i64, i64) {
    let w1 = store.register_worker().await.expect("worker");
    let w2 = store.register_worker().await.expect("worker");
    store.heartbeat_worker(w1).await.expect("heartbeat");
    store.heartbeat_worker(w2).await.expect("heartbeat");
    assert_ne!(w1, w2);
    (w1, w2)
}

pub async fn claims_belong_to_live_owners(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    queue(store, 3).await;
    let (w1, w2) = two_owners(store).await;
    let stale = 300;
    let now = Millis::now();
    let first = store
        .claim_deliveries(w1, now, stale, 2)
        .await
        .expect("claim");
    assert_eq!(first.len(), 2);
    for d in &first {
        assert_eq!(
            (d.to.as_str(), d.from.as_str()),
            (ANA_NUMBER, LOCATION_NUMBER)
        );
        assert_eq!(d.attempts, 1);
        assert!(d.body.starts_with("Message "));
    }
    let second = store
        .claim_deliveries(w2, now, stale, 10)
        .await
        .expect("claim");
    assert_eq!(second.len(), 1, "the one nobody holds");
    assert!(
        store
            .claim_deliveries(w2, now, stale, 10)
            .await
            .expect("claim")
            .is_empty(),
        "a live owner keeps its claims"
    );
    let stats = store.outbox_stats(now, stale).await.expect("stats");
    assert_eq!((stats.pending, stats.claimed, stats.due), (3, 3, 0));
    // w1 stops renewing; w2 goes on and takes over w1's claims, not its own.
    tokio::time::sleep(Duration::from_millis(2 * stale as u64)).await;
    store.heartbeat_worker(w2).await.expect("heartbeat");
    let taken = store
        .claim_deliveries(w2, Millis::now(), stale, 10)
        .await
        .expect("claim");
    let mut taken_ids: Vec<i64> = taken.iter().map(|d| d.id).collect();
    let mut first_ids: Vec<i64> = first.iter().map(|d| d.id).collect();
    taken_ids.sort_unstable();
    first_ids.sort_unstable();
    assert_eq!(taken_ids, first_ids);
    assert!(taken.iter().all(|d| d.attempts == 2));
    // The old owner, back, records what it saw but does not release the new owner's claim.
    finish(
        store,
        w1,
        first_ids[0],
        Attempt::Retry {
            error: "timeout".into(),
            at: Millis::now(),
        },
    )
    .await;
    store.heartbeat_worker(w2).await.expect("heartbeat");
    let stats = store
        .outbox_stats(Millis::now(), stale)
        .await
        .expect("stats");
    assert_eq!(stats.claimed, 3);
    // A worker that stops gives its claims back at once.
    store.retire_worker(w2).await.expect("retire");
    let stats = store
        .outbox_stats(Millis::now(), stale)
        .await
        .expect("stats");
    assert_eq!((stats.claimed, stats.due), (0, 3));
    let w3 = store.register_worker().await.expect("worker");
    let all = store
        .claim_deliveries(w3, Millis::now(), stale, 10)
        .await
        .expect("claim");
    assert_eq!(all.len(), 3);
}

pub async fn attempts_and_callbacks_settle_a_delivery(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let ids = queue(store, 3).await;
    let w = store.register_worker().await.expect("worker");
    let claimed = store
        .claim_deliveries(w, Millis::now(), 20_000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    // Accepted, then delivered; a late `sent` never replaces a final status.
    finish(
        store,
        w,
        ids[0],
        Attempt::Accepted {
            provider_id: "SM-a".into(),
        },
    )
    .await;
    let r = record(store, ids[0]).await;
    assert_eq!(
        (r.status, r.provider_id.as_deref()),
        (DeliveryStatus::Sent, Some("SM-a"))
    );
    assert_eq!(r.next_attempt_at, None);
    for status in [DeliveryStatus::Delivered, DeliveryStatus::Sent] {
        assert!(
            store
                .update_delivery(None, "SM-a", status, None)
                .await
                .expect("callback")
        );
    }
    assert_eq!(
        record(store, ids[0]).await.status,
        DeliveryStatus::Delivered
    );
    assert!(
        !store
            .update_delivery(None, "SM-nobody", DeliveryStatus::Delivered, None)
            .await
            .expect("callback")
    );
    // A retry is scheduled; a callback naming the delivery (the provider had it after all)
    // ends the pending resend.
    let at = Millis(Millis::now().0 + 60_000);
    finish(
        store,
        w,
        ids[1],
        Attempt::Retry {
            error: "provider 503".into(),
            at,
        },
    )
    .await;
    let r = record(store, ids[1]).await;
    assert_eq!(
        (r.status, r.next_attempt_at),
        (DeliveryStatus::Queued, Some(at))
    );
    assert_eq!(r.error.as_deref(), Some("provider 503"));
    assert_eq!(store.next_delivery_at().await.expect("next"), Some(at));
    assert!(
        store
            .update_delivery(Some(ids[1]), "SM-b", DeliveryStatus::Sent, None)
            .await
            .expect("callback")
    );
    let r = record(store, ids[1]).await;
    assert_eq!((r.status, r.next_attempt_at), (DeliveryStatus::Sent, None));
    assert_eq!(r.provider_id.as_deref(), Some("SM-b"));
    assert_eq!(store.next_delivery_at().await.expect("next"), None);
    // Refused for good.
    finish(
        store,
        w,
        ids[2],
        Attempt::Failed {
            error: "provider 400".into(),
        },
    )
    .await;
    let r = record(store, ids[2]).await;
    assert_eq!(
        (r.status, r.next_attempt_at),
        (DeliveryStatus::Failed, None)
    );
    let failed = store
        .list_deliveries(Some(DeliveryStatus::Failed), 10)
        .await
        .expect("list");
    assert_eq!(failed.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[2]]);
}

pub async fn operators_retry_only_what_failed(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let ids = queue(store, 1).await;
    let id = ids[0];
    let w = store.register_worker().await.expect("worker");
    let fail = |w: i64| async move {
        let claimed = store
            .claim_deliveries(w, Millis::now(), 20_000, 10)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        finish(
            store,
            w,
            id,
            Attempt::Failed {
                error: "provider 400".into(),
            },
        )
        .await;
    };
    fail(w).await;
    store.retry_delivery(id).await.expect("retry");
    let r = record(store, id).await;
    assert_eq!(
        (r.status, r.attempts, r.error, r.provider_id),
        (DeliveryStatus::Queued, 0, None, None)
    );
    assert!(matches!(
        store.retry_delivery(id).await,
        Err(StoreError::Refused(Refusal::NotRetryable { id: i, status: DeliveryStatus::Queued })) if i == id
    ));
    assert!(matches!(
        store.retry_delivery(9_999).await,
        Err(StoreError::NotFound(Missing::Delivery(9_999)))
    ));
    fail(w).await;
    store
        .receive_sms(sms(ANA_NUMBER, "STOP", "SM-stop"))
        .await
        .expect("stop");
    assert!(matches!(
        store.retry_delivery(id).await,
        Err(StoreError::Refused(Refusal::RetryUnsubscribed(i))) if i == id
    ));
}

pub async fn an_opt_out_stops_a_queued_send(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let ids = queue(store, 1).await;
    store
        .receive_sms(sms(ANA_NUMBER, "STOP", "SM-stop"))
        .await
        .expect("stop");
    let w = store.register_worker().await.expect("worker");
    assert!(
        store
            .claim_deliveries(w, Millis::now(), 20_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "never handed to the provider after STOP"
    );
    let r = record(store, ids[0]).await;
    assert_eq!(r.status, DeliveryStatus::Failed);
    assert!(r.error.expect("a reason").contains("unsubscribed"));
}

/// Opted-out sends are looked for only among those a claim would take (a backlog of thousands
/// must not be scanned on every claim), so a claim must also pass over ones beyond that window:
/// with a limit of 1 and Ana's two queued sends ahead of Dee's, no claim hands out Ana's, each
/// claim fails the one it finds first, and Dee's goes out.
pub async fn a_claim_passes_over_opted_out_sends_beyond_its_window(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    convo_core::store::import_text(store, super::sends::DEE)
        .await
        .expect("Dee");
    let ana = queue(store, 2).await;
    let dee = store
        .send_message(&tenant(1, 10), text(104, 5, "For Dee"))
        .await
        .expect("send")
        .sms_msg_id
        .expect("delivery");
    store
        .receive_sms(sms(ANA_NUMBER, "STOP", "SM-stop"))
        .await
        .expect("stop");
    let w = store.register_worker().await.expect("worker");
    let mut claimed = Vec::new();
    for _ in 0..3 {
        let got = store
            .claim_deliveries(w, Millis::now(), 20_000, 1)
            .await
            .expect("claim");
        claimed.extend(got.iter().map(|d| d.id));
    }
    assert_eq!(claimed, vec![dee], "only Dee's send is handed out");
    for id in ana {
        let r = record(store, id).await;
        assert_eq!(r.status, DeliveryStatus::Failed, "delivery {id}");
        assert!(r.error.expect("a reason").contains("unsubscribed"));
    }
}
