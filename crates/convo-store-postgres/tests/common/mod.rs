//! What the plan and routing checks run: every use case of the store once, on a store with a
//! pool of one connection, so that `prepared_statements` then lists every hot statement.
#![allow(dead_code)]

use convo_core::cursor::{Cursor, CursorPaging};
use convo_core::outbox::{Attempt, DeliveryStatus};
use convo_core::store::prelude::*;
use convo_core::write::{IdempotencyKey, InboundSms, NewMessage};
use convo_core::{ListQuery, MessageQuery, Millis};
use convo_store_postgres::{PgOptions, PgStore};
use convo_store_tests::fixture::{ANA_NUMBER, LOCATION_NUMBER, tenant};
use serde_json::Value;

/// A plain connection, for what a test does behind the store's back.
pub async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

pub async fn one_connection(url: &str) -> PgStore {
    PgStore::open(
        url,
        PgOptions {
            pool_size: 1,
            ..PgOptions::default()
        },
    )
    .await
    .expect("open")
}

fn query(limit: i64, offset: i64) -> ListQuery {
    ListQuery {
        limit,
        offset,
        cursor: None,
        updated_since: None,
        messages: Some(MessageQuery {
            limit: 5,
            created_since: None,
            updated_since: None,
        }),
    }
}

/// Every read and write of the API and the worker, on the conformance practice (institution 1,
/// location 10, patient 100, user 5).
pub async fn workload(store: &PgStore) {
    let here = tenant(1, 10);
    let key = store.create_api_key(&["acme".into()]).await.expect("key");
    let _ = store.authenticate_key(&key.raw).await.expect("auth");
    let _ = store.key_is_live(key.id).await.expect("live");
    let _ = store
        .list_for_key(key.id, ("acme", 10), &query(20, 0))
        .await
        .expect("list");
    for q in [
        query(20, 0),
        query(20, 40),
        ListQuery {
            updated_since: Some(Millis(0)),
            ..query(20, 20)
        },
        ListQuery {
            messages: Some(MessageQuery {
                limit: 5,
                created_since: Some(Millis(0)),
                updated_since: Some(Millis(0)),
            }),
            ..query(20, 0)
        },
    ] {
        store.list_conversations(&here, &q).await.expect("page");
    }
    let at = Cursor {
        updated_at: Millis::now(),
        id: 1000,
    };
    for paging in [
        CursorPaging::First,
        CursorPaging::After(at),
        CursorPaging::Before(at),
    ] {
        for poll in [None, Some(Millis(0))] {
            let q = ListQuery {
                cursor: Some(paging),
                messages: Some(MessageQuery {
                    limit: 5,
                    created_since: None,
                    updated_since: poll,
                }),
                ..query(20, 0)
            };
            store
                .list_conversations(&here, &q)
                .await
                .expect("cursor page");
        }
    }
    for poll in [None, Some(Millis(0))] {
        let mq = MessageQuery {
            limit: 5,
            created_since: None,
            updated_since: poll,
        };
        store
            .get_conversation(&here, 1000, Some(&mq))
            .await
            .expect("one");
    }
    let send = |body: &str, key: Option<&str>| NewMessage {
        patient_id: 100,
        user_id: 5,
        body: body.into(),
        attachment: None,
        idempotency: key.map(|k| IdempotencyKey {
            api_key_id: 1,
            key: k.into(),
        }),
    };
    let sent = store
        .send_message(&here, send("plain", None))
        .await
        .expect("send");
    store
        .send_message(&here, send("keyed", Some("k1")))
        .await
        .expect("keyed");
    store
        .send_message(&here, send("keyed", Some("k1")))
        .await
        .expect("replay");
    store.mark_seen(&here, sent.id, 6).await.expect("seen");
    for (from, body, sid) in [
        (ANA_NUMBER, "hello", "SMw1"),
        ("+12025550123", "new number", "SMw2"),
        ("+12025550123", "STOP", "SMw3"),
        (ANA_NUMBER, "hello", "SMw1"),
    ] {
        store
            .receive_sms(InboundSms {
                to: LOCATION_NUMBER.into(),
                from: from.into(),
                body: body.into(),
                sid: sid.into(),
                media: None,
            })
            .await
            .expect("inbound");
    }
    let worker = store.register_worker().await.expect("worker");
    store.heartbeat_worker(worker).await.expect("heartbeat");
    let claimed = store
        .claim_deliveries(worker, Millis::now(), 20_000, 10)
        .await
        .expect("claim");
    for d in &claimed {
        store
            .finish_delivery(
                worker,
                d.id,
                Attempt::Failed {
                    error: "test".into(),
                },
            )
            .await
            .expect("finish");
    }
    store
        .update_delivery(
            Some(sent.sms_msg_id.expect("delivery")),
            "SMp",
            DeliveryStatus::Delivered,
            None,
        )
        .await
        .expect("callback");
    store
        .update_delivery(None, "SMp", DeliveryStatus::Delivered, None)
        .await
        .expect("callback by provider id");
    let _ = store.next_delivery_at().await.expect("next");
    let _ = store
        .outbox_stats(Millis::now(), 20_000)
        .await
        .expect("stats");
    store.retire_worker(worker).await.expect("retire");
}

/// Each statement under a generic plan (the session is switched to `force_generic_plan`):
/// prepared with its parameter types, explained with `arg(type)` for each parameter; the
/// statement's text and its plan (EXPLAIN's JSON, read as text over the simple protocol).
pub async fn generic_plans(
    client: &tokio_postgres::Client,
    statements: &[(String, Vec<String>)],
    arg: impl Fn(&str) -> String,
) -> Vec<(String, Value)> {
    client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .expect("generic plans");
    let mut out = Vec::new();
    for (i, (sql, types)) in statements.iter().enumerate() {
        let list = |items: Vec<String>| {
            if items.is_empty() {
                String::new()
            } else {
                format!("({})", items.join(", "))
            }
        };
        let decl = list(types.clone());
        let args = list(types.iter().map(|t| arg(t)).collect());
        client
            .batch_execute(&format!("PREPARE hot{i}{decl} AS {sql}"))
            .await
            .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
        let explain = format!("EXPLAIN (FORMAT JSON) EXECUTE hot{i}{args}");
        let messages = client
            .simple_query(&explain)
            .await
            .unwrap_or_else(|e| panic!("{explain}: {e}"));
        let text = messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .expect("a plan");
        out.push((sql.clone(), serde_json::from_str(&text).expect("json")));
    }
    out
}
