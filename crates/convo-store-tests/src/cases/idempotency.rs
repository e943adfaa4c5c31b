//! Retries that must not write twice: a repeated `Idempotency-Key` and a repeated provider
//! message id, in turn and racing each other (where engines with concurrent writers differ).

use super::inbound::sms;
use super::sends::text;
use crate::Db;
use crate::fixture::{ANA_NUMBER, practice, tenant};
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

pub async fn concurrent_sends_with_one_key_store_one_message(db: Db) {
    practice(db.store.as_ref()).await;
    let store: Arc<dyn Store> = db.store.clone();
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .send_message(&tenant(1, 10), keyed("Once only", "race"))
                .await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let sent = t.await.expect("task").expect("every racer is answered");
        ids.push(sent.id);
    }
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
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .receive_sms(sms(ANA_NUMBER, "Just once", "SM-race"))
                .await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("task").expect("every retry is answered"));
    }
    let firsts = outcomes.iter().filter(|o| !o.duplicate).count();
    assert_eq!(firsts, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.message_id == outcomes[0].message_id)
    );
    let thread = store
        .get_conversation(
            &tenant(1, 10),
            1000,
            Some(&convo_core::MessageQuery {
                limit: 100,
                created_since: None,
                updated_since: None,
            }),
        )
        .await
        .expect("get")
        .expect("1000");
    let copies = thread
        .messages
        .iter()
        .filter(|m| m.body == "Just once")
        .count();
    assert_eq!(copies, 1);
}
