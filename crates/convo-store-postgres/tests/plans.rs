//! Every statement the store prepares (its hot statements, collected by running each use case
//! once) stays on its indexes under a generic plan, on a database large enough for the planner
//! to care. PostgreSQL re-plans prepared statements per execution until it decides a generic
//! plan is as cheap, and a generic plan of a join with `LIMIT $n OFFSET $m` can be a sequential
//! scan and a hash join (the notes measured 6–18 ms against 0.2–1 ms): so every statement is
//! checked as if PostgreSQL had switched.

mod common;

use convo_store_postgres::scratch::ScratchDb;
use convo_store_postgres::{PgOptions, PgStore};
use convo_store_tests::fixture::practice;
use serde_json::Value;
use std::time::Duration;

/// Tables big enough in production that a sequential scan of them is a bug.
const LARGE: &[&str] = &[
    "conversations",
    "messages",
    "patients",
    "conversation_activity",
    "patient_phones",
    "deliveries",
    "inbound_sids",
    "send_keys",
    "webhook_events",
    "webhook_deliveries",
    "webhook_attempts",
];

/// Fills location 10 with 20,000 conversations of 10 messages each, their activity spread over
/// two years (~1,800 slices), and the keyed tables in proportion (raw SQL: only the planner's
/// statistics matter here).
const BULK: &str = "
INSERT INTO patients (institution_id, id, first_name, bio, created_at, updated_at)
    SELECT 1, g, 'p' || g, '{}', 0, 0 FROM generate_series(10000::bigint, 29999) g;
INSERT INTO patient_phones (institution_id, phone, patient_id)
    SELECT 1, '+1202' || lpad(g::text, 7, '0'), g FROM generate_series(10000::bigint, 29999) g;
INSERT INTO conversations (institution_id, id, location_id, patient_id, created_at, updated_at)
    SELECT 1, g, 10, g, g * 1000, 1650000000000 + g * 3000000 FROM generate_series(10000::bigint, 29999) g;
INSERT INTO conversation_activity (institution_id, location_id, shift, slice, stripe, n)
    SELECT 1, 10, l.shift, updated_at >> l.shift, 0, count(*)
      FROM conversations, (VALUES (20::smallint), (25::smallint), (30::smallint)) l (shift)
     WHERE institution_id = 1 AND location_id = 10 AND id >= 10000 GROUP BY 3, 4
    ON CONFLICT (institution_id, location_id, shift, slice, stripe)
    DO UPDATE SET n = conversation_activity.n + excluded.n;
INSERT INTO messages (institution_id, id, conversation_id, body, created_at, updated_at,
                      sender_type, sender_id)
    SELECT 1, 1000000 + c * 10 + k, c, 'm', 1650000000000 + c * 3000000 + k, 1650000000000 + c * 3000000 + k,
           'Patient', c
      FROM generate_series(10000::bigint, 29999) c, generate_series(0::bigint, 9) k;
INSERT INTO deliveries (institution_id, message_id, location_id, to_number, from_number, body,
                        status, created_at, updated_at, provider_id)
    SELECT 1, id, 10, '+1', '+1', 'm', 'delivered', 0, 0, 'SMbulk' || id
      FROM messages WHERE id >= 1000000 AND id % 10 = 0;
INSERT INTO send_keys (institution_id, api_key_id, key, message_id, created_at)
    SELECT 1, 1, 'key-' || id, id, 0 FROM messages WHERE id >= 1000000 AND id % 10 = 1;
INSERT INTO inbound_sids (institution_id, sid, message_id)
    SELECT 1, 'SMin' || id, id FROM messages WHERE id >= 1000000 AND id % 10 = 2;
SELECT setval(pg_get_serial_sequence('messages', 'id'), 2000000);
SELECT setval(pg_get_serial_sequence('patients', 'id'), 100000);
SELECT setval(pg_get_serial_sequence('conversations', 'id'), 100000);
INSERT INTO conversation_counts (institution_id, location_id, stripe, n) VALUES (1, 10, 7, 20000);
INSERT INTO webhook_endpoints (id, api_key_id, target_url, secret_key, active, created_at, updated_at)
    SELECT g, 1, 'https://hooks.example.com/' || g, 'whsec_x', true, 0, 0
      FROM generate_series(900::bigint, 909) g;
INSERT INTO webhook_subscriptions (id, endpoint_id, institution_id, event, active, created_at, updated_at)
    SELECT g, g, 1, 'message_created', true, 0, 0 FROM generate_series(900::bigint, 909) g;
INSERT INTO webhook_events (id, event, created_at, institution_id, location_id, patient_id,
    subdomain, tz, message_id, conversation_id, body, message_created_at, message_updated_at,
    sender_type, seen_by, has_attachment, is_custom_reminder_response)
    SELECT 1000000 + g, 'message_created', g, 1, 10, 100, 'acme', 'UTC', g, 1000, 'm', g, g,
           'User', '[]', false, false
      FROM generate_series(1::bigint, 20000) g;
INSERT INTO webhook_deliveries (id, event_id, endpoint_id, subscription_id, status, attempts,
    first_attempt_at, next_attempt_at, created_at, updated_at)
    SELECT 1000000 + g * 10 + k, 1000000 + g, 900 + k, 900 + k,
           CASE WHEN g % 20 = 0 THEN 'pending' ELSE 'delivered' END, 1, g,
           CASE WHEN g % 20 = 0 THEN 4000000000000 ELSE NULL END, g, g
      FROM generate_series(1::bigint, 20000) g, generate_series(0::bigint, 9) k;
INSERT INTO webhook_attempts (delivery_id, event_id, endpoint_id, event, at, outcome, took_ms)
    SELECT id, event_id, endpoint_id, 'message_created', created_at, 'delivered', 1
      FROM webhook_deliveries WHERE id >= 1000000;
SELECT setval(pg_get_serial_sequence('webhook_events', 'id'), 2000000);
SELECT setval(pg_get_serial_sequence('webhook_deliveries', 'id'), 2000000);
SELECT setval(pg_get_serial_sequence('webhook_endpoints', 'id'), 1000);
SELECT setval(pg_get_serial_sequence('webhook_subscriptions', 'id'), 1000);";

/// Every scan node of a plan: (node type, relation).
fn scans(plan: &Value, out: &mut Vec<(String, String)>) {
    if let Some(node) = plan.get("Node Type").and_then(Value::as_str)
        && let Some(rel) = plan.get("Relation Name").and_then(Value::as_str)
    {
        out.push((node.to_string(), rel.to_string()));
    }
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for child in children {
            scans(child, out);
        }
    }
}

/// The mark of a statement the store runs with custom plans (`store::plan_for_now`).
const PER_RUN: &str = "/* planned per run */";

/// Statements that read their whole table when its statistics are from when it was empty, by a
/// fragment of their text, and why that is left so.
const STALE_STATISTICS_SCAN: &[(&str, &str)] = &[(
    "count(*) FILTER (WHERE claimed_by IS NOT NULL)",
    "the outbox's /metrics gauges count every pending send: without statistics PostgreSQL takes \
     every row for pending, so a scrape reads the table until the next ANALYZE (autovacuum's, \
     which `convo serve` warns about when it is off)",
)];

/// When the planner's statistics were taken, relative to the bulk rows.
#[derive(Clone, Copy, Debug)]
enum Statistics {
    /// After them: what `VACUUM ANALYZE` (or autovacuum) leaves.
    Fresh,
    /// Before them, on empty tables, and never again: a database loaded by writes alone on a
    /// server with autovacuum off (as this machine's), or between two autovacuum runs.
    TakenWhenEmpty,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hot_statement_stays_on_its_indexes_under_a_generic_plan() {
    hot_statements_stay_on_their_indexes(Statistics::Fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hot_statement_stays_on_its_indexes_with_statistics_taken_when_empty() {
    hot_statements_stay_on_their_indexes(Statistics::TakenWhenEmpty).await;
}

async fn hot_statements_stay_on_their_indexes(statistics: Statistics) {
    let db = ScratchDb::create().await.expect("scratch database");
    // The practice goes in through another store: only the workload's statements are wanted.
    practice(&db.open().await.expect("open")).await;
    let store = common::one_connection(db.url()).await;
    let client = common::raw(db.url()).await;
    let (before, after) = match statistics {
        Statistics::Fresh => ("", "VACUUM ANALYZE"),
        Statistics::TakenWhenEmpty => ("VACUUM ANALYZE", ""),
    };
    client.batch_execute(before).await.expect("statistics");
    client.batch_execute(BULK).await.expect("bulk");
    client.batch_execute(after).await.expect("statistics");
    common::workload(&store).await;
    let statements = store.prepared_statements().await.expect("statements");
    assert!(
        statements.len() >= 40,
        "only {} statements",
        statements.len()
    );
    let mut bad = Vec::new();
    for (sql, plan) in common::generic_plans(&client, &statements, |_| "NULL".into()).await {
        // The worker's queue statements are planned per run: their generic plan is never used.
        let plan = if sql.contains(PER_RUN) {
            common::custom_plan(&client, &sql).await
        } else {
            plan
        };
        let mut found = Vec::new();
        scans(&plan[0]["Plan"], &mut found);
        let excused = matches!(statistics, Statistics::TakenWhenEmpty)
            && STALE_STATISTICS_SCAN.iter().any(|(f, _)| sql.contains(f));
        for (node, rel) in found {
            if node == "Seq Scan" && LARGE.contains(&rel.as_str()) && !excused {
                bad.push(format!("Seq Scan on {rel} in:\n{sql}\n"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "statistics {statistics:?}:\n{}",
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_its_lifetime_is_replaced_and_plans_again() {
    let db = ScratchDb::create().await.expect("scratch database");
    practice(&db.open().await.expect("open")).await;
    let store = PgStore::open(
        db.url(),
        PgOptions {
            pool_size: 1,
            connection_lifetime: Duration::from_millis(300),
            ..PgOptions::default()
        },
    )
    .await
    .expect("open");
    common::workload(&store).await;
    // Within its lifetime the one connection keeps what it prepared...
    let kept = store.prepared_statements().await.expect("statements");
    assert!(kept.len() >= 40, "only {} statements", kept.len());
    // ...past it, a new connection takes its place, with nothing prepared (nothing planned).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fresh = store.prepared_statements().await.expect("statements");
    assert!(fresh.len() < 3, "{} statements still prepared", fresh.len());
}
