use super::*;
use crate::{SqliteOptions, SqliteStore};
use convo_core::cursor::CursorPaging;
use convo_core::dataset::{Plan, Spec};
use convo_core::tz::Zone;
use rusqlite::StatementStatus;

/// SQLite silently re-compiles a statement on every new binding when a bound value can change
/// its plan (a bare `LIMIT ?`, STAT4 statistics) unless the connection asks for stable plans.
/// It costs no correctness, only CPU on every request, so only a counter can catch it.
#[tokio::test]
async fn hot_statements_are_compiled_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect("open");
    let mut records = Vec::new();
    Plan::new(Spec {
        conversations: 400,
        seed: 5,
        until: Millis(1_790_000_000_000),
        days: 90,
    })
    .emit(|r| {
        records.push(r);
        Ok::<_, ()>(())
    })
    .expect("emit");
    convo_core::import::import_records(&store, records)
        .await
        .expect("import");
    store.analyze().await.expect("analyze");
    // A reader exactly as the server opens them.
    let mut conn = crate::sqlite::Opener {
        path: path.clone(),
        options: SqliteOptions::default(),
        writer: false,
    }
    .open()
    .expect("open");
    let tenant = TenantCtx::resolved(1, 1, Zone::get("America/New_York").expect("zone"));
    for round in 0..6i64 {
        let since = (round % 2 == 1).then(|| Millis(1_790_000_000_000 - round * 3_600_000 * 24));
        let q = ListQuery {
            limit: 5 + round,
            offset: round * 7,
            cursor: None,
            updated_since: since,
            messages: Some(MessageQuery {
                limit: 1 + round,
                created_since: None,
                updated_since: since,
            }),
        };
        let page = page(&mut conn, &tenant, &q).expect("page");
        assert!(!page.conversations.is_empty());
    }
    // The cursor variant, both directions, with and without `updated_since`.
    for round in 0..4i64 {
        let since = (round % 2 == 1).then_some(Millis(1_790_000_000_000 - 3_600_000 * 24 * 30));
        let mut q = ListQuery {
            limit: 3 + round,
            offset: 0,
            cursor: Some(CursorPaging::First),
            updated_since: since,
            messages: None,
        };
        let first = page(&mut conn, &tenant, &q).expect("page");
        let Paging::Cursors(info) = first.paging else {
            panic!("a cursor page has page_info")
        };
        let end = info.end_cursor.expect("a full page");
        q.cursor = Some(CursorPaging::After(end));
        let next = page(&mut conn, &tenant, &q).expect("page");
        let Paging::Cursors(info) = next.paging else {
            panic!("a cursor page has page_info")
        };
        q.cursor = Some(CursorPaging::Before(
            info.start_cursor.expect("a full page"),
        ));
        let back = page(&mut conn, &tenant, &q).expect("page");
        assert_eq!(back.conversations, first.conversations);
    }
    for (name, sql) in hot_statements() {
        // Statements a list page does not run.
        if ["access", "one conversation", "one message"].contains(&name) {
            continue;
        }
        let stmt = conn.prepare_cached(sql).expect("cached");
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{name}");
        assert!(
            stmt.get_status(StatementStatus::Run) > 0,
            "{name} never ran"
        );
    }
}
