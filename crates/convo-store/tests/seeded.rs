//! The list on a generated practice group (many conversations, long and short threads, dense
//! recent activity): paging through activity slices gives exactly the plain order, counts agree
//! with a brute-force count, the slices follow every write, and with real planner statistics
//! no hot statement scans a table.

use convo_core::cursor::{CursorPaging, PageInfo};
use convo_core::dataset::{Plan, Spec};
use convo_core::import::{Record, import_records, import_text};
use convo_core::tz::Zone;
use convo_core::{ListQuery, Millis, Paging, Store, TenantCtx};
use convo_store::{SqliteOptions, SqliteStore};
use rusqlite::Connection;
use std::path::PathBuf;

const UNTIL: i64 = 1_790_000_000_000;
const HOUR: i64 = 3_600_000;

fn records(conversations: u32, days: u32) -> Vec<Record> {
    let mut out = Vec::new();
    Plan::new(Spec {
        conversations,
        seed: 11,
        until: Millis(UNTIL),
        days,
    })
    .emit(|r| {
        out.push(r);
        Ok::<_, ()>(())
    })
    .expect("emit into a Vec");
    out
}

async fn seeded(conversations: u32, days: u32) -> (SqliteStore, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seeded.db");
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect("open");
    import_records(&store, records(conversations, days))
        .await
        .expect("import");
    (store, dir, path)
}

fn tenant(location: i64) -> TenantCtx {
    TenantCtx::resolved(1, location, Zone::get("America/New_York").expect("zone"))
}

/// The order and count straight from the table, with no help from slices.
fn brute(path: &PathBuf, location: i64, since: Option<i64>) -> Vec<i64> {
    let conn = Connection::open(path).expect("open");
    let mut stmt = conn
        .prepare(
            "SELECT id FROM conversations WHERE location_id = ?1 AND updated_at >= ?2
             ORDER BY updated_at DESC, id DESC",
        )
        .expect("prepare");
    stmt.query_map((location, since.unwrap_or(i64::MIN)), |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

async fn walk(store: &SqliteStore, location: i64, per_page: i64, since: Option<i64>) -> Vec<i64> {
    let mut ids = Vec::new();
    for page in 0.. {
        let q = ListQuery {
            limit: per_page,
            offset: page * per_page,
            cursor: None,
            updated_since: since.map(Millis),
            messages: None,
        };
        let got = store
            .list_conversations(&tenant(location), &q)
            .await
            .expect("list");
        if got.conversations.is_empty() {
            break;
        }
        ids.extend(got.conversations.iter().map(|c| c.id));
    }
    ids
}

fn cursor_query(per_page: i64, since: Option<i64>, paging: CursorPaging) -> ListQuery {
    ListQuery {
        limit: per_page,
        offset: 0,
        cursor: Some(paging),
        updated_since: since.map(Millis),
        messages: None,
    }
}

async fn cursor_page(store: &SqliteStore, location: i64, q: &ListQuery) -> (Vec<i64>, PageInfo) {
    let got = store
        .list_conversations(&tenant(location), q)
        .await
        .expect("list");
    let Paging::Cursors(info) = got.paging else {
        panic!("a cursor page has page_info")
    };
    (got.conversations.iter().map(|c| c.id).collect(), info)
}

/// Forward with `end_cursor` to the end, then back with `start_cursor` to the start: both
/// walks, and every page's flags, must agree with the plain order.
async fn cursor_walks(
    store: &SqliteStore,
    location: i64,
    per_page: i64,
    since: Option<i64>,
    expected: &[i64],
) {
    let mut forward: Vec<i64> = Vec::new();
    let mut paging = CursorPaging::First;
    let mut pages = Vec::new();
    loop {
        let (ids, info) =
            cursor_page(store, location, &cursor_query(per_page, since, paging)).await;
        assert_eq!(
            info.has_previous_page,
            !forward.is_empty(),
            "previous after {}",
            forward.len()
        );
        forward.extend(&ids);
        assert_eq!(
            info.has_next_page,
            forward.len() < expected.len(),
            "next after {}",
            forward.len()
        );
        pages.push(info);
        match (info.has_next_page, info.end_cursor) {
            (true, Some(end)) => paging = CursorPaging::After(end),
            _ => break,
        }
    }
    assert_eq!(forward, expected, "forward, {per_page} per page");
    let mut backward: Vec<Vec<i64>> = Vec::new();
    let mut info = *pages.last().expect("a page");
    while info.has_previous_page {
        let start = info.start_cursor.expect("a non-empty page");
        let (ids, next) = cursor_page(
            store,
            location,
            &cursor_query(per_page, since, CursorPaging::Before(start)),
        )
        .await;
        assert!(next.has_next_page);
        backward.push(ids);
        info = next;
    }
    let mut rebuilt: Vec<i64> = backward.into_iter().rev().flatten().collect();
    let last_page_len =
        expected.len() - (pages.len() - 1) * usize::try_from(per_page).expect("size");
    rebuilt.extend(&expected[expected.len() - last_page_len..]);
    assert_eq!(rebuilt, expected, "backward, {per_page} per page");
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
async fn paging_through_slices_gives_the_plain_order() {
    // Two months: slices hold from one to dozens of conversations, so pages start mid-slice,
    // at slice edges and across many empty stretches.
    let (store, _dir, path) = seeded(1_500, 60).await;
    for location in [1, 4] {
        let expected = brute(&path, location, None);
        assert!(expected.len() >= 150);
        for per_page in [1, 7, 20, 100] {
            assert_eq!(
                walk(&store, location, per_page, None).await,
                expected,
                "location {location}, per_page {per_page}"
            );
        }
    }
    // Polling windows: the filtered list is a prefix of the same order.
    for hours in [1, 5, 24, 24 * 7, 24 * 90] {
        let since = UNTIL - hours * HOUR;
        let expected = brute(&path, 1, Some(since));
        assert_eq!(
            walk(&store, 1, 20, Some(since)).await,
            expected,
            "{hours} h"
        );
        assert_eq!(walk(&store, 1, 3, Some(since)).await, expected, "{hours} h");
    }
}

#[tokio::test]
async fn counts_agree_with_a_brute_force_count() {
    let (store, _dir, path) = seeded(800, 60).await;
    let all = brute(&path, 2, None);
    let first = |since: Option<i64>| ListQuery {
        limit: 1,
        offset: 0,
        cursor: None,
        updated_since: since.map(Millis),
        messages: None,
    };
    let page = store
        .list_conversations(&tenant(2), &first(None))
        .await
        .expect("list");
    assert_eq!(page.count(), Some(all.len() as i64));
    // Every 2^25 ms slice edge in the window, one millisecond either side, and odd instants.
    let mut probes = vec![i64::MIN + 1, 0, UNTIL, UNTIL + 1];
    let mut edge = (UNTIL - 61 * 24 * HOUR) >> 25 << 25;
    while edge <= UNTIL {
        probes.extend([edge - 1, edge, edge + 1]);
        edge += 1 << 25;
    }
    probes.extend((0..50).map(|i| UNTIL - i * 29 * HOUR - 12_345));
    for since in probes {
        let page = store
            .list_conversations(&tenant(2), &first(Some(since)))
            .await
            .expect("list");
        assert_eq!(
            page.count(),
            Some(brute(&path, 2, Some(since)).len() as i64),
            "since {since}"
        );
    }
}

#[tokio::test]
async fn slices_and_counts_follow_every_write() {
    let (store, _dir, path) = seeded(300, 30).await;
    let (before, counts) = activity(&path);
    for (_, kept, actual, _) in counts {
        assert_eq!(kept, actual);
    }
    // New activity on old conversations (moving them across slices), a message moved between
    // conversations, and a new conversation.
    let later = |h: i64| Millis(UNTIL + h * HOUR).to_utc_string();
    let text = format!(
        r#"{{"type":"message","id":900001,"conversation_id":1,"body":"back again","created_at":"{}","sender":{{"type":"Patient","id":1}}}}
{{"type":"message","id":900002,"conversation_id":2,"body":"hello","created_at":"{}","sender":{{"type":"System","id":null}}}}
{{"type":"message","id":900001,"conversation_id":3,"body":"moved","created_at":"{}","sender":{{"type":"System","id":null}}}}
{{"type":"patient","id":5000,"institution_id":1,"first_name":"New"}}
{{"type":"conversation","id":5000,"location_id":3,"patient_id":5000,"created_at":"{}"}}
"#,
        later(1),
        later(50),
        later(2),
        later(3)
    );
    import_text(&store, &text).await.expect("second import");
    let (after, counts) = activity(&path);
    assert_ne!(before, after);
    for (_, kept, actual, _) in counts {
        assert_eq!(kept, actual);
    }
    let order = brute(&path, 1, None);
    assert_eq!(walk(&store, 1, 2, None).await, order);
}

#[tokio::test]
async fn hot_statements_use_indexes_with_real_statistics() {
    let (store, _dir, _path) = seeded(2_000, 365).await;
    store.analyze().await.expect("analyze");
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

#[tokio::test]
async fn pages_start_right_at_slice_edges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("edges.db");
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect("open");
    let mut text = String::from(
        r#"{"type":"institution","id":1,"subdomain":"edges","name":"Edges"}
{"type":"location","id":1,"institution_id":1,"name":"L","tz":"America/New_York"}
"#,
    );
    // Conversations on the last and first millisecond of slices, and ties on one instant.
    let base = (UNTIL >> 25) << 25;
    let mut at = Vec::new();
    for k in 0..6 {
        let edge = base - k * (1 << 25);
        at.extend([edge - 1, edge - 1, edge, edge + 1, edge + (1 << 25) - 1]);
    }
    for (i, t) in at.iter().enumerate() {
        let id = i + 1;
        text.push_str(&format!(
            "{{\"type\":\"patient\",\"id\":{id},\"institution_id\":1}}\n\
             {{\"type\":\"conversation\",\"id\":{id},\"location_id\":1,\"patient_id\":{id},\"created_at\":\"{}\"}}\n",
            Millis(*t).to_utc_string()
        ));
    }
    import_text(&store, &text).await.expect("import");
    let expected = brute(&path, 1, None);
    assert_eq!(expected.len(), at.len());
    for per_page in [1, 2, 3, 4] {
        assert_eq!(
            walk(&store, 1, per_page, None).await,
            expected,
            "{per_page}"
        );
        // Ties on one instant split across cursor pages without loss or repetition.
        cursor_walks(&store, 1, per_page, None, &expected).await;
    }
}

#[tokio::test]
async fn cursor_walks_give_the_plain_order_both_ways() {
    let (store, _dir, path) = seeded(900, 60).await;
    for location in [1, 4] {
        for since in [None, Some(UNTIL - 20 * 24 * HOUR)] {
            let expected = brute(&path, location, since);
            for per_page in [1, 7, 100] {
                cursor_walks(&store, location, per_page, since, &expected).await;
            }
        }
    }
}

/// Writes during a cursor walk: a conversation that gains activity moves to the front (a
/// client meets it again by polling `updated_since`), and no other is skipped or repeated —
/// where page numbers would shift every later page by one for each such move.
#[tokio::test]
async fn a_cursor_walk_is_stable_under_concurrent_writes() {
    let (store, _dir, path) = seeded(600, 30).await;
    let expected = brute(&path, 2, None);
    let writer = Connection::open(&path).expect("open");
    let mut now = UNTIL + 1;
    let mut touch = |id: i64| {
        now += 1;
        writer
            .execute(
                "UPDATE conversations SET updated_at = ?2 WHERE id = ?1",
                (id, now),
            )
            .expect("touch");
    };
    let per_page = 10;
    let (mut seen, mut moved): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    let mut paging = CursorPaging::First;
    for page in 0.. {
        let (ids, info) = cursor_page(&store, 2, &cursor_query(per_page, None, paging)).await;
        seen.extend(&ids);
        // Between pages: one conversation already read and one not yet read gain activity.
        if let Some(&read) = ids.first() {
            touch(read);
        }
        if let Some(&ahead) = expected.get(seen.len() + 15 + page) {
            touch(ahead);
            moved.push(ahead);
        }
        match (info.has_next_page, info.end_cursor) {
            (true, Some(end)) => paging = CursorPaging::After(end),
            _ => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no conversation twice");
    let still: Vec<i64> = expected
        .iter()
        .copied()
        .filter(|id| !moved.contains(id))
        .collect();
    let seen_still: Vec<i64> = seen
        .iter()
        .copied()
        .filter(|id| !moved.contains(id))
        .collect();
    assert_eq!(
        seen_still, still,
        "every conversation that stayed put, once, in order"
    );
}
