//! Retries that must not write twice: a repeated `Idempotency-Key` and a repeated provider
//! message id, in turn and racing each other (where engines with concurrent writers differ).

use super::inbound::sms;
use super::sends::text;
use crate::Db;
use crate::fixture::{ANA_NUMBER, practice, tenant, thread};
use convo_core::store::prelude::*;
use convo_core::write::{IdempotencyKey, NewMessage};
use convo_core::{Refusal, StoreError};
use std::sync::Arc;

fn keyed(body: &str, key: &str) -> NewMessage {
    let mut m = text(100, 5, body);
    m.idempotency = Some(IdempotencyKey {
        api_key_id: 1,
        key: key.into(),
    });
    m
}

pub async fn a_repeated_key_answers_with_the_first_message(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let first = store
        .send_message(&here, keyed("Your ride is here", "k-1"))
        .await
        .expect("send");
    let again = store
        .send_message(&here, keyed("Your ride is here", "k-1"))
        .await
        .expect("repeat");
    assert_eq!(again, first);
    assert_eq!(
        store.list_deliveries(None, 10).await.expect("list").len(),
        1
    );
    // The same key for another message is a client bug, said plainly.
    assert!(matches!(
        store
            .send_message(&here, keyed("Something else", "k-1"))
            .await,
        Err(StoreError::Refused(Refusal::IdempotencyKeyReused))
    ));
    // Keys belong to an API key: another key's "k-1" is another send.
    let mut other = keyed("Your ride is here", "k-1");
    other.idempotency = Some(IdempotencyKey {
        api_key_id: 2,
        key: "k-1".into(),
    });
    let second = store.send_message(&here, other).await.expect("send");
    assert_ne!(second.id, first.id);
}

const RACERS: usize = 8;

/// The same call from `RACERS` tasks at once; every one must be answered.
async fn race<T, F, Fut>(store: &Arc<dyn Store>, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| tokio::spawn(call(store.clone())))
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task").expect("every racer is answered"));
    }
    answers
}

pub async fn concurrent_sends_with_one_key_store_one_message(db: Db) {
    practice(db.store.as_ref()).await;
    let store: Arc<dyn Store> = db.store.clone();
    let sent = race(&store, |store| async move {
        store
            .send_message(&tenant(1, 10), keyed("Once only", "race"))
            .await
    })
    .await;
    let mut ids: Vec<i64> = sent.iter().map(|m| m.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one message for every racer: {ids:?}");
    assert_eq!(
        store.list_deliveries(None, 10).await.expect("list").len(),
        1
    );
}

pub async fn concurrent_retries_of_one_sms_store_one_message(db: Db) {
    practice(db.store.as_ref()).await;
    let store: Arc<dyn Store> = db.store.clone();
    let outcomes = race(&store, |store| async move {
        store
            .receive_sms(sms(ANA_NUMBER, "Just once", "SM-race"))
            .await
    })
    .await;
    let firsts = outcomes.iter().filter(|o| !o.duplicate).count();
    assert_eq!(firsts, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.message_id == outcomes[0].message_id)
    );
    let thread = thread(store.as_ref(), &tenant(1, 10), 1000, 100).await;
    let copies = thread
        .messages
        .iter()
        .filter(|m| m.body == "Just once")
        .count();
    assert_eq!(copies, 1);
}
