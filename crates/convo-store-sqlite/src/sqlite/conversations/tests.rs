use super::*;
use crate::{SqliteOptions, SqliteStore};
use convo_core::cursor::CursorPaging;
use convo_core::dataset::{Plan, Spec};
use convo_core::tz::Zone;
use convo_core::{Maintenance, Millis};
use rusqlite::StatementStatus;

/// A generated practice group with planner statistics, and a reader opened exactly as the
/// server opens them (the temp dir must outlive both).
async fn seeded_reader(
    conversations: u32,
    seed: u64,
    days: u32,
) -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect("open");
    let mut records = Vec::new();
    Plan::new(Spec {
        conversations,
        seed,
        until: Millis(1_790_000_000_000),
        days,
    })
    .emit(|r| {
        records.push(r);
        Ok::<_, ()>(())
    })
    .expect("emit");
    convo_core::store::import_records(&store, records)
        .await
        .expect("import");
    store.optimize().await.expect("analyze");
    let conn = crate::sqlite::Opener {
        path,
        options: SqliteOptions::default(),
        writer: false,
    }
    .open()
    .expect("open");
    (dir, conn)
}

/// SQLite silently re-compiles a statement on every new binding when a bound value can change
/// its plan (a bare `LIMIT ?`, STAT4 statistics) unless the connection asks for stable plans.
/// It costs no correctness, only CPU on every request, so only a counter can catch it.
#[tokio::test]
async fn hot_statements_are_compiled_once() {
    let (_dir, conn) = seeded_reader(400, 5, 90).await;
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
        let page = page(&conn, &tenant, &q).expect("page");
        assert!(!page.conversations.is_empty());
    }
    // Polling far back, where whole threads changed (twice, with other bindings the second
    // time).
    for limit in [1, 2] {
        let since = Some(Millis(1_790_000_000_000 - 3_600_000 * 24 * 3_650));
        let q = ListQuery {
            limit: 100,
            offset: 0,
            cursor: None,
            updated_since: since,
            messages: Some(MessageQuery {
                limit,
                created_since: None,
                updated_since: since,
            }),
        };
        assert!(
            !page(&conn, &tenant, &q)
                .expect("page")
                .conversations
                .is_empty()
        );
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
        let first = page(&conn, &tenant, &q).expect("page");
        let Paging::Cursors(info) = first.paging else {
            panic!("a cursor page has page_info")
        };
        let end = info.end_cursor.expect("a full page");
        q.cursor = Some(CursorPaging::After(end));
        let next = page(&conn, &tenant, &q).expect("page");
        let Paging::Cursors(info) = next.paging else {
            panic!("a cursor page has page_info")
        };
        q.cursor = Some(CursorPaging::Before(
            info.start_cursor.expect("a full page"),
        ));
        let back = page(&conn, &tenant, &q).expect("page");
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

/// A backward cursor page near the newest conversations must start its range at the cursor:
/// with `updated_since` as a second lower bound, SQLite once sought to the location's oldest
/// conversation and walked up to the cursor. Plans print the same either way, so the test
/// counts the virtual machine's steps, which grow with the rows walked.
#[tokio::test]
async fn a_backward_page_walks_only_its_own_rows() {
    let (_dir, mut conn) = seeded_reader(2_000, 9, 60).await;
    let tenant = TenantCtx::resolved(1, 1, Zone::get("America/New_York").expect("zone"));
    let mut q = ListQuery {
        limit: 5,
        offset: 0,
        cursor: Some(CursorPaging::First),
        updated_since: None,
        messages: None,
    };
    let Paging::Cursors(first) = page(&conn, &tenant, &q).expect("page").paging else {
        panic!("page_info")
    };
    let steps = |conn: &mut rusqlite::Connection, sql: &str| {
        conn.prepare_cached(sql)
            .expect("cached")
            .get_status(StatementStatus::VmStep)
    };
    for sql in [BEFORE_SQL, NEWER_SQL] {
        conn.prepare_cached(sql)
            .expect("cached")
            .reset_status(StatementStatus::VmStep);
    }
    // Back from the first page's end: four rows lie before it.
    q.cursor = Some(CursorPaging::Before(first.end_cursor.expect("cursor")));
    let back = page(&conn, &tenant, &q).expect("page");
    assert_eq!(back.conversations.len(), 4);
    let counted = [("before", BEFORE_SQL), ("newer", NEWER_SQL)]
        .map(|(name, sql)| (name, steps(&mut conn, sql)));
    // Measured: ~600 steps for these rows; ~7,500 when the range started at the oldest of
    // the location's ~800 conversations.
    for (name, n) in counted {
        assert!(n < 2_000, "{name}: {n} steps ({counted:?})");
    }
}

/// The slice width is written out in SQL (the ranged count, the 0002 migration's triggers), and
/// the stretch and fine widths in the 0008 and 0009 migrations': every copy must be its
/// constant, or counts drift from the slices silently.
#[test]
fn every_copy_of_the_slice_width_agrees() {
    let shifts = |sql: &str| -> Vec<u32> {
        sql.split(">>")
            .skip(1)
            .chain(sql.split("<<").skip(1))
            .map(|rest| {
                let digits: String = rest
                    .trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().expect("a shift by a number")
            })
            .collect()
    };
    let triggers = include_str!("../schema/0002_activity_buckets.sql");
    for sql in [COUNT_SINCE_SQL, triggers] {
        let found = shifts(sql);
        assert!(!found.is_empty());
        assert!(found.iter().all(|&s| s == SLICE_BITS), "{found:?}");
    }
    let mask = (1_i64 << SLICE_BITS) - 1;
    assert!(COUNT_SINCE_SQL.contains(&mask.to_string()));
    for (sql, bits) in [
        (
            include_str!("../schema/0008_activity_stretches.sql"),
            STRETCH_BITS,
        ),
        (include_str!("../schema/0009_activity_fine.sql"), FINE_BITS),
    ] {
        let found = shifts(sql);
        assert!(!found.is_empty());
        assert!(found.iter().all(|&s| s == bits), "{found:?}");
    }
}

/// The page and messages statements have no ORDER BY (a sorter copied every row); the order is
/// put right in Rust. SQLite's `reverse_unordered_selects` returns unordered rows the other way
/// round (here, the messages' rows: the page's own rows come from an ordered subquery either
/// way): pages must come out the same, so nothing leans on an order SQLite never promised.
#[tokio::test]
async fn pages_do_not_depend_on_the_order_sqlite_returns_rows_in() {
    let (_dir, conn) = seeded_reader(600, 11, 120).await;
    let tenant = TenantCtx::resolved(1, 1, Zone::get("America/New_York").expect("zone"));
    let queries: Vec<ListQuery> = [(20, 0, 5, None), (7, 30, 100, None), (50, 5, 1, Some(40))]
        .into_iter()
        .map(|(limit, offset, messages, days)| {
            let since = days.map(|d: i64| Millis(1_790_000_000_000 - d * 86_400_000));
            ListQuery {
                limit,
                offset,
                cursor: None,
                updated_since: since,
                messages: Some(MessageQuery {
                    limit: messages,
                    created_since: None,
                    updated_since: since,
                }),
            }
        })
        .collect();
    let pages = |conn: &rusqlite::Connection| {
        queries
            .iter()
            .map(|q| page(conn, &tenant, q).expect("page").conversations)
            .collect::<Vec<_>>()
    };
    let forward = pages(&conn);
    conn.execute_batch("PRAGMA reverse_unordered_selects = ON")
        .expect("pragma");
    conn.flush_prepared_statement_cache();
    let reversed = pages(&conn);
    assert_eq!(forward, reversed);
    for (page, q) in forward.iter().zip(&queries) {
        assert!(page.len() > 1);
        assert!(page.is_sorted_by(|a, b| (a.updated_at, a.id) > (b.updated_at, b.id)));
        for c in page {
            let limit = q.messages.as_ref().map_or(0, |m| m.limit) as usize;
            assert!(c.messages.len() <= limit);
            assert!(
                c.messages
                    .is_sorted_by(|a, b| (a.created_at, a.id) > (b.created_at, b.id))
            );
        }
    }
}

/// Polling finds each thread's boundary from the changed messages' keys, then reads rows from
/// there: each thread's newest N changed messages, whether few changed (a day) or whole threads
/// did (ten years back), as a plain per-conversation query says directly.
#[tokio::test]
async fn polling_gives_the_newest_changed_messages() {
    let (_dir, conn) = seeded_reader(400, 17, 200).await;
    let tenant = TenantCtx::resolved(1, 1, Zone::get("America/New_York").expect("zone"));
    let until = 1_790_000_000_000_i64;
    for (days, created_days) in [(1, None), (20, None), (3_650, None), (3_650, Some(60))] {
        let since = Millis(until - days * 86_400_000);
        let created_since = created_days.map(|d: i64| Millis(until - d * 86_400_000));
        let q = ListQuery {
            limit: 100,
            offset: 0,
            cursor: None,
            updated_since: Some(since),
            messages: Some(MessageQuery {
                limit: 3,
                created_since,
                updated_since: Some(since),
            }),
        };
        let page = page(&conn, &tenant, &q).expect("page");
        assert!(!page.conversations.is_empty(), "{days} days");
        let mut newest = conn
            .prepare(
                "SELECT id FROM messages WHERE conversation_id = ?1 AND updated_at >= ?2
                   AND created_at >= ?3
                 ORDER BY created_at DESC, id DESC LIMIT 3",
            )
            .expect("prepare");
        for c in &page.conversations {
            let want: Vec<i64> = newest
                .query_map(
                    params![c.id, since.0, created_since.map_or(i64::MIN, |m| m.0)],
                    |r| r.get(0),
                )
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            let got: Vec<i64> = c.messages.iter().map(|m| m.id).collect();
            assert_eq!(got, want, "conversation {} over {days} days", c.id);
        }
    }
}
