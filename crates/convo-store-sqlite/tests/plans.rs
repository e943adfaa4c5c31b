//! SQLite's own structures on a generated practice group: the activity slices and kept counts
//! stay equal to what they summarise after every write; no hot statement scans a table, before
//! any statistics or with real ones; and a list request runs a constant number of statements.
//! (What the list answers is the conformance suite's to check.)

use convo_core::params::ListParams;
use convo_core::store::prelude::*;
use convo_core::store::{import_records, import_text};
use convo_store_sqlite::{SqliteOptions, SqliteStore};
use convo_store_tests::fixture::{generated, later_activity};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

async fn seeded(conversations: u32, days: u32) -> (SqliteStore, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seeded.db");
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect("open");
    import_records(&store, generated(conversations, days))
        .await
        .expect("import");
    (store, dir, path)
}

type Rows = Vec<(i64, i64, i64, i64)>;

fn activity(path: &PathBuf) -> (Rows, Rows) {
    let conn = Connection::open(path).expect("open");
    let rows = |sql: &str| -> Rows {
        let mut stmt = conn.prepare(sql).expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let kept = rows(
        "SELECT institution_id, location_id, slice, n FROM conversation_activity ORDER BY 1, 2, 3",
    );
    let derived = rows(
        "SELECT institution_id, location_id, updated_at >> 25, count(*) FROM conversations
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    );
    assert_eq!(
        kept, derived,
        "activity slices drifted from the conversations"
    );
    for (table, column, bits) in [
        ("conversation_activity_stretches", "stretch", 30),
        ("conversation_activity_fine", "fine", 20),
    ] {
        let level = rows(&format!(
            "SELECT institution_id, location_id, {column}, n FROM {table} ORDER BY 1, 2, 3"
        ));
        let derived = rows(&format!(
            "SELECT institution_id, location_id, updated_at >> {bits}, count(*)
               FROM conversations GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ));
        assert_eq!(level, derived, "{table} drifted from the conversations");
    }
    let counts = rows(
        "SELECT l.id, l.conversation_count, (SELECT count(*) FROM conversations c
                WHERE c.location_id = l.id), 0 FROM locations l ORDER BY l.id",
    );
    (kept, counts)
}

#[tokio::test]
async fn slices_and_counts_follow_every_write() {
    let (store, _dir, path) = seeded(300, 30).await;
    let (before, counts) = activity(&path);
    for (_, kept, actual, _) in counts {
        assert_eq!(kept, actual);
    }
    let text = later_activity();
    import_text(&store, &text).await.expect("second import");
    let (after, counts) = activity(&path);
    assert_ne!(before, after);
    for (_, kept, actual, _) in counts {
        assert_eq!(kept, actual);
    }
}

/// A first load drops the triggers that keep the counts and builds the counts at its end; one
/// that fails must leave the triggers as they were, so that the counts still follow every write
/// after it.
#[tokio::test]
async fn a_failed_first_load_leaves_the_triggers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("failed.db");
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect("open");
    let triggers = || -> i64 {
        Connection::open(&path)
            .expect("open")
            .query_row(
                "SELECT count(*) FROM sqlite_schema
                  WHERE type = 'trigger' AND tbl_name = 'conversations'",
                [],
                |r| r.get(0),
            )
            .expect("count")
    };
    let before = triggers();
    assert!(before >= 3, "{before} triggers");
    let mut records = generated(300, 30);
    records.push(
        convo_core::import::Record::parse_line(
            r#"{"type":"message","id":99999999,"conversation_id":424242,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"System","id":null}}"#,
        )
        .expect("parse"),
    );
    import_records(&store, records)
        .await
        .expect_err("a message of no conversation");
    assert_eq!(triggers(), before);
    import_records(&store, generated(300, 30))
        .await
        .expect("first load");
    assert_eq!(triggers(), before);
    import_text(&store, &later_activity())
        .await
        .expect("second import");
    let (_, counts) = activity(&path);
    for (_, kept, actual, _) in counts {
        assert_eq!(kept, actual);
    }
}

/// No hot statement scans a table: a SCAN of anything but the page's own id list (json_each, a
/// CTE or a subquery over it) or a constant row walks a whole table or index.
async fn assert_on_indexes(store: &SqliteStore) {
    for (name, sql) in convo_store_sqlite::sqlite::hot_statements() {
        let plan = store.query_plan(sql).await.expect("plan");
        for line in &plan {
            let allowed = line.starts_with("SCAN cv")
                || line.starts_with("SCAN pg")
                || line.starts_with("SCAN j ")
                || line.contains("json_each")
                || line == "SCAN CONSTANT ROW"
                || line.contains("VIRTUAL TABLE");
            assert!(
                !line.starts_with("SCAN ") || allowed,
                "{name}: {line} in {plan:?}"
            );
        }
        assert!(
            plan.iter().any(|l| l.starts_with("SEARCH")),
            "{name}: no index search in {plan:?}"
        );
    }
}

#[tokio::test]
async fn hot_statements_use_their_indexes_before_any_statistics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("fresh.db"), SqliteOptions::default())
        .await
        .expect("open");
    import_text(&store, convo_store_tests::fixture::PRACTICE)
        .await
        .expect("practice");
    assert_on_indexes(&store).await;
}

#[tokio::test]
async fn hot_statements_use_indexes_with_real_statistics() {
    let (store, _dir, _path) = seeded(2_000, 365).await;
    store.optimize().await.expect("analyze");
    assert_on_indexes(&store).await;
}

/// A list request runs the same statements whatever the page size: access + BEGIN + page +
/// messages + count + COMMIT; without messages, one fewer; past page 1, three more to find where
/// the page starts (its stretch, its slice, its fine step); polling's messages, one more (the
/// changed messages' keys, then the messages).
#[tokio::test]
async fn a_page_runs_a_constant_number_of_statements() {
    let dir = tempfile::tempdir().expect("tempdir");
    let statements = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&statements);
    let options = SqliteOptions {
        trace: Some(Arc::new(move |_sql: &str| {
            counter.fetch_add(1, Ordering::SeqCst);
        })),
        readers: 2,
    };
    let store = SqliteStore::open(dir.path().join("count.db"), options)
        .await
        .expect("open");
    import_text(&store, convo_store_tests::fixture::PRACTICE)
        .await
        .expect("practice");
    let key = store.create_api_key(&["acme".into()]).await.expect("key");
    // More conversations than any page, each with messages, so page size matters if anything.
    let mut extra = String::new();
    for i in 0..150 {
        let pid = 10_000 + i;
        extra.push_str(&format!(
            "{{\"type\":\"patient\",\"id\":{pid},\"institution_id\":1,\"created_at\":\"2024-01-01T00:00:00Z\",\"updated_at\":\"2024-01-01T00:00:00Z\"}}\n\
             {{\"type\":\"conversation\",\"id\":{pid},\"location_id\":10,\"patient_id\":{pid},\"created_at\":\"2024-01-01T00:00:00Z\"}}\n"
        ));
        for j in 0..3 {
            extra.push_str(&format!(
                "{{\"type\":\"message\",\"id\":{},\"conversation_id\":{pid},\"body\":\"m\",\"created_at\":\"2024-01-0{}T00:00:00Z\",\"sender\":{{\"type\":\"Patient\",\"id\":{pid}}}}}\n",
                pid * 10 + j,
                j + 2
            ));
        }
    }
    import_text(&store, &extra).await.expect("import");
    let mut counts = Vec::new();
    for q in [
        "per_page=1&messages=1",
        "per_page=5&messages=5",
        "per_page=100&messages=100",
        "per_page=100&messages=100&page=2",
        "per_page=100&messages=3&updated_since=2023-01-01&messages_since=2023-01-01",
        "per_page=1&messages=1&updated_since=2023-01-01",
        "per_page=100",
    ] {
        let query = format!("subdomain=acme&location_id=10&{q}");
        let params = ListParams::parse(Some(&query)).expect("valid parameters");
        let before = statements.load(Ordering::SeqCst);
        store
            .list_for_key(key.id, ("acme", 10), &params.query)
            .await
            .expect("list")
            .expect("granted");
        counts.push((q, statements.load(Ordering::SeqCst) - before));
    }
    for (q, n) in &counts {
        let expected = if q.contains("messages") { 6 } else { 5 }
            + 3 * u64::from(q.contains("&page="))
            + u64::from(q.contains("messages=") && q.contains("updated_since"));
        assert_eq!(*n, expected, "{q}: {counts:?}");
    }
}
