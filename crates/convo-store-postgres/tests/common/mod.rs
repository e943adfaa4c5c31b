//! What the plan and routing checks run: every use case of the store once, on a store with a
//! pool of one connection, so that `prepared_statements` then lists every hot statement.
#![allow(dead_code)]

use convo_core::cursor::{Cursor, CursorPaging};
use convo_core::outbox::{Attempt, DeliveryStatus};
use convo_core::store::prelude::*;
use convo_core::webhook::{
    ClaimAsk, EndpointPatch, Finished, SubscriptionFilter, SubscriptionPatch, WebhookEvent,
    WebhookResult, WebhookStatus,
};
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
    webhooks(store, key.id, worker).await;
    store.retire_worker(worker).await.expect("retire");
}

/// The webhook side: management, the writes that freeze events, the worker's trips, the
/// operators' reads.
async fn webhooks(store: &PgStore, key: i64, worker: i64) {
    let here = tenant(1, 10);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let ep = store
        .create_endpoint(key, "https://hooks.example.com/plans", secret, true)
        .await
        .expect("endpoint");
    let mut subs = Vec::new();
    for event in WebhookEvent::ALL {
        subs.push(
            store
                .create_subscription(key, ep.id, 1, event, true)
                .await
                .expect("subscription")
                .expect("the key's endpoint"),
        );
    }
    let _ = store
        .institution_for_key(key, "acme")
        .await
        .expect("institution");
    let _ = store.list_endpoints(key, None).await.expect("endpoints");
    let _ = store
        .list_subscriptions(key, ep.id, &SubscriptionFilter::default())
        .await
        .expect("subscriptions");
    let off = SubscriptionPatch {
        active: Some(true),
        ..SubscriptionPatch::default()
    };
    let _ = store
        .update_subscription(key, ep.id, subs[0].id, 1, &off)
        .await
        .expect("update subscription");
    let on = EndpointPatch {
        target_url: None,
        active: Some(true),
    };
    let _ = store
        .update_endpoint(key, ep.id, &on)
        .await
        .expect("update");
    let sent = store
        .send_message(
            &here,
            NewMessage::parse(100, 5, Some("hooked"), None).expect("message"),
        )
        .await
        .expect("send");
    store.mark_seen(&here, sent.id, 5).await.expect("seen");
    store
        .receive_sms(InboundSms {
            to: LOCATION_NUMBER.into(),
            from: ANA_NUMBER.into(),
            body: "hooked reply".into(),
            sid: "SMhook".into(),
            media: None,
        })
        .await
        .expect("inbound");
    let now = Millis::now();
    let ask = |finished, recheck, limit| ClaimAsk {
        finished,
        recheck,
        limit,
        ahead: 64,
    };
    let first = store
        .claim_webhooks(worker, ask(&[], &[], 10), now, 20_000)
        .await
        .expect("claim");
    assert!(first.jobs.len() >= 3, "the send, the seen, the reply");
    let ended: Vec<Finished> = first
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| Finished {
            delivery_id: j.id,
            started_at: now,
            result: if i == 0 {
                WebhookResult::Failed {
                    error: "HTTP 500".into(),
                    status: Some(500),
                    took_ms: 1,
                    retry_at: Some(Millis(now.0 + 60_000)),
                    gone: false,
                }
            } else {
                WebhookResult::Delivered {
                    status: 204,
                    took_ms: 1,
                }
            },
        })
        .collect();
    let held: Vec<i64> = first.jobs.iter().skip(2).map(|j| j.id).collect();
    store
        .claim_webhooks(worker, ask(&ended[..2], &held, 10), now, 20_000)
        .await
        .expect("record, recheck and claim");
    store
        .finish_webhooks(worker, &ended[2..], now)
        .await
        .expect("finish");
    let _ = store.next_webhook_at().await.expect("next");
    let _ = store.webhook_stats(now, 20_000).await.expect("stats");
    let _ = store
        .list_webhook_attempts(Some(ep.id), Some(WebhookStatus::Failed), 10)
        .await
        .expect("attempts");
    let _ = store
        .replay_webhooks(ep.id, Millis(0), now)
        .await
        .expect("replay");
    let _ = store.purge_webhooks(Millis(0)).await.expect("purge");
    store
        .delete_subscription(key, ep.id, subs[1].id)
        .await
        .expect("delete subscription");
    store.delete_endpoint(key, ep.id).await.expect("delete");
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
        let plan = explained(client, &format!("hot{i}{args}")).await;
        out.push((sql.clone(), plan));
    }
    out
}

/// A statement's custom plan for NULL arguments (PostgreSQL's plan when it plans per run).
pub async fn custom_plan(client: &tokio_postgres::Client, sql: &str) -> Value {
    client
        .batch_execute("SET plan_cache_mode = force_custom_plan")
        .await
        .expect("custom plans");
    let statement = client.prepare(sql).await.expect("prepare");
    let args = vec!["NULL"; statement.params().len()].join(", ");
    let name = "per_run";
    let _ = client.batch_execute(&format!("DEALLOCATE {name}")).await;
    let types: Vec<String> = statement
        .params()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    let decl = if types.is_empty() {
        String::new()
    } else {
        format!("({})", types.join(", "))
    };
    let call = if args.is_empty() {
        String::new()
    } else {
        format!("({args})")
    };
    client
        .batch_execute(&format!("PREPARE {name}{decl} AS {sql}"))
        .await
        .expect("prepare");
    let plan = explained(client, &format!("{name}{call}")).await;
    client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .expect("generic plans again");
    plan
}

/// The plan of `EXECUTE {call}` (EXPLAIN's JSON, read as text over the simple protocol).
async fn explained(client: &tokio_postgres::Client, call: &str) -> Value {
    let explain = format!("EXPLAIN (FORMAT JSON) EXECUTE {call}");
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
    serde_json::from_str(&text).expect("json")
}
