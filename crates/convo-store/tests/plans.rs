//! SQLite's own structures on a generated practice group: the activity slices and kept counts
//! stay equal to what they summarise after every write, and with real planner statistics no hot
//! statement scans a table. (What the list answers is the conformance suite's to check.)

use convo_core::store::prelude::*;
use convo_core::store::{import_records, import_text};
use convo_store::{SqliteOptions, SqliteStore};
use convo_store_tests::fixture::{generated, later_activity};
use rusqlite::Connection;
use std::path::PathBuf;

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

#[tokio::test]
async fn hot_statements_use_indexes_with_real_statistics() {
    let (store, _dir, _path) = seeded(2_000, 365).await;
    store.optimize().await.expect("analyze");
    for (name, sql) in convo_store::sqlite::hot_statements() {
        let plan = store.query_plan(sql).await.expect("plan");
        for line in &plan {
            // SCAN of anything but the page's own id list (json_each, a CTE or a subquery over
            // it) or a constant row walks a whole table or index.
            let allowed = line.starts_with("SCAN cv")
                || line.starts_with("SCAN pg")
                || line.starts_with("SCAN j ")
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
