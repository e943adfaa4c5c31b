//! The schema is ready to be distributed by institution (Citus): built here as a shadow with
//! every tenant table hash-partitioned by `institution_id` (4 partitions), which enforces
//! Citus's key rule (every primary and unique key holds the distribution column) and shows, by
//! partition pruning, which statements a distributed database could route to one node. Every
//! statement the store prepares must touch one partition of each tenant table, except the few
//! listed below, which read across institutions by design. What this cannot show is Citus's
//! own planner (unsupported multi-shard SQL, 2PC costs): that needs a real cluster.

mod common;

use convo_store_postgres::scratch::ScratchDb;
use convo_store_postgres::{PgOptions, PgStore, migrations};
use convo_store_tests::fixture::practice;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The tenant tables (distributed on Citus); the others are small, read on every request,
/// and would be reference tables.
const DISTRIBUTED: &[&str] = &[
    "locations",
    "patients",
    "users",
    "conversations",
    "conversation_activity",
    "conversation_counts",
    "messages",
    "deliveries",
    "inbound_sids",
    "patient_phones",
    "send_keys",
];
const PARTITIONS: usize = 4;

/// Statements that cross institutions by design, by a fragment of their text, and why.
const ACROSS: &[(&str, &str)] = &[
    (
        "WITH due AS",
        "the outbox claim and its opt-out sweep take what is due in any institution",
    ),
    (
        "SELECT min(next_attempt_at)",
        "when the next delivery is due, in any institution",
    ),
    ("count(*) FILTER", "the outbox gauges for /metrics"),
    (
        "status = CASE WHEN $2::text <> 'sent'",
        "a status callback names a delivery by its id (in the callback URL) or the provider's",
    ),
    (
        "status = CASE WHEN $4::text IS NULL",
        "a finished attempt names its delivery by id",
    ),
    (
        "SELECT id, status FROM deliveries",
        "a status callback locks the delivery it names, as its update",
    ),
    (
        "SELECT status FROM deliveries WHERE id = $1",
        "a finished attempt locks its delivery, as its update",
    ),
    (
        "SELECT institution_id, message_id, status FROM deliveries",
        "after either, whether the status moved (message_updated), by the same id",
    ),
];

/// The migrations with every tenant table partitioned, storage settings dropped (partitioned
/// tables have none), and the version recorded as applied.
fn shadow_schema() -> String {
    let mut out = String::new();
    for sql in migrations() {
        let code: String = sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for statement in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            if statement.starts_with("ALTER TABLE") && statement.contains(" SET (") {
                continue;
            }
            let table = statement
                .strip_prefix("CREATE TABLE ")
                .and_then(|rest| rest.split_whitespace().next());
            match table {
                Some(t) if DISTRIBUTED.contains(&t) => {
                    out.push_str(&format!(
                        "{statement} PARTITION BY HASH (institution_id);\n"
                    ));
                    for r in 0..PARTITIONS {
                        out.push_str(&format!(
                            "CREATE TABLE {t}_p{r} PARTITION OF {t} \
                             FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {r});\n"
                        ));
                    }
                }
                _ => out.push_str(&format!("{statement};\n")),
            }
        }
    }
    out.push_str(&format!(
        "CREATE TABLE convo_schema (version bigint PRIMARY KEY, applied_at bigint NOT NULL);
         INSERT INTO convo_schema SELECT v, 0 FROM generate_series(1, {}) v;",
        migrations().len()
    ));
    out
}

/// The partitions of each tenant table a plan scans: `table` → partitions.
fn partitions(plan: &Value, out: &mut BTreeMap<String, BTreeSet<String>>) {
    if let Some(rel) = plan.get("Relation Name").and_then(Value::as_str)
        && let Some((table, _)) = rel.rsplit_once("_p")
        && DISTRIBUTED.contains(&table)
    {
        out.entry(table.to_string())
            .or_default()
            .insert(rel.to_string());
    }
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for child in children {
            partitions(child, out);
        }
    }
}

/// An argument for a parameter of this type: institution ids (and every other id) are 1.
fn example(ty: &str) -> &'static str {
    match ty {
        "bigint" | "integer" => "1",
        "boolean" => "false",
        "bytea" => "'\\x00'::bytea",
        "text[]" => "'{}'::text[]",
        "bigint[]" => "'{1}'::bigint[]",
        "integer[]" => "'{}'::integer[]",
        "boolean[]" => "'{}'::boolean[]",
        _ => "'x'",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hot_statement_routes_to_one_institutions_partitions() {
    let db = ScratchDb::create_empty().await.expect("empty database");
    let client = common::raw(db.url()).await;
    client
        .batch_execute(&shadow_schema())
        .await
        .expect("the schema partitions by institution (every key holds institution_id)");
    let loader = PgStore::open(db.url(), PgOptions::default())
        .await
        .expect("open");
    practice(&loader).await;
    let store = common::one_connection(db.url()).await;
    common::workload(&store).await;
    let statements = store.prepared_statements().await.expect("statements");
    assert!(
        statements.len() >= 25,
        "only {} statements",
        statements.len()
    );
    let mut spread = Vec::new();
    let mut excused = BTreeSet::new();
    for (sql, plan) in common::generic_plans(&client, &statements, |t| example(t).into()).await {
        let mut touched = BTreeMap::new();
        partitions(&plan[0]["Plan"], &mut touched);
        if std::env::var("ROUTING_DEBUG").is_ok() {
            eprintln!("{touched:?}\n{}\n", &sql[..sql.len().min(120)]);
        }
        let wide: Vec<_> = touched
            .iter()
            .filter(|(_, parts)| parts.len() > 1)
            .map(|(t, parts)| format!("{t} ({} partitions)", parts.len()))
            .collect();
        if wide.is_empty() {
            continue;
        }
        match ACROSS.iter().find(|(fragment, _)| sql.contains(fragment)) {
            Some((fragment, _)) => {
                excused.insert(*fragment);
            }
            None => spread.push(format!("{}:\n{sql}\n", wide.join(", "))),
        }
    }
    assert!(
        spread.is_empty(),
        "statements that would fan out across institutions:\n{}",
        spread.join("\n")
    );
    // Every excuse is still needed: one that routes now is taken off the list.
    let unused: Vec<_> = ACROSS
        .iter()
        .filter(|(f, _)| !excused.contains(f))
        .map(|(f, why)| format!("{f} ({why})"))
        .collect();
    assert!(
        unused.is_empty(),
        "no longer crossing institutions: {unused:?}"
    );
}
