//! Cursor paging (CONTRACT §4): keyset walks in both directions, `page_info`, and stability
//! while the list changes under the walk.

use super::listing::{edge_instants, edges};
use crate::Db;
use crate::fixture::{HOUR, UNTIL, seeded, tenant};
use convo_core::cursor::{CursorPaging, PageInfo};
use convo_core::store::ConversationStore;
use convo_core::{ListQuery, Millis, Paging};

fn cursor_query(per_page: i64, since: Option<i64>, paging: CursorPaging) -> ListQuery {
    ListQuery {
        limit: per_page,
        offset: 0,
        cursor: Some(paging),
        updated_since: since.map(Millis),
        messages: None,
    }
}

async fn cursor_page(
    store: &dyn ConversationStore,
    location: i64,
    q: &ListQuery,
) -> (Vec<i64>, PageInfo) {
    let got = store
        .list_conversations(&tenant(1, location), q)
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
    store: &dyn ConversationStore,
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

pub async fn cursor_walks_give_the_plain_order_both_ways(db: Db) {
    let oracle = seeded(db.store.as_ref(), 900, 60).await;
    for location in [1, 4] {
        for since in [None, Some(UNTIL - 20 * 24 * HOUR)] {
            let expected = oracle.order(location, since);
            for per_page in [1, 7, 100] {
                cursor_walks(db.store.as_ref(), location, per_page, since, &expected).await;
            }
        }
    }
}

/// Writes during a cursor walk: a conversation that gains activity moves to the front (a
/// client meets it again by polling `updated_since`), and no other is skipped or repeated —
/// where page numbers would shift every later page by one for each such move.
pub async fn a_cursor_walk_is_stable_under_concurrent_writes(db: Db) {
    let oracle = seeded(db.store.as_ref(), 600, 30).await;
    let store = db.store.as_ref();
    let expected = oracle.order(2, None);
    // Marking a message seen by someone new is a write that moves its conversation's
    // activity to now.
    let touch = |id: i64| {
        let unseen = oracle.unseen(id);
        async move {
            let Some((message, user)) = unseen else {
                return false;
            };
            store
                .mark_seen(&tenant(1, 2), message, user)
                .await
                .expect("seen");
            true
        }
    };
    let per_page = 10;
    let (mut seen, mut moved): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    let mut paging = CursorPaging::First;
    for page in 0.. {
        let (ids, info) = cursor_page(store, 2, &cursor_query(per_page, None, paging)).await;
        seen.extend(&ids);
        // Between pages: one conversation already read and one not yet read gain activity.
        if let Some(&read) = ids.first() {
            touch(read).await;
        }
        if let Some(&ahead) = expected.get(seen.len() + 15 + page)
            && touch(ahead).await
        {
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

pub async fn cursor_walks_split_ties_at_slice_edges(db: Db) {
    let oracle = edges(&db).await;
    let expected = oracle.order(1, None);
    assert_eq!(expected.len(), edge_instants().len());
    for per_page in [1, 2, 3, 4] {
        cursor_walks(db.store.as_ref(), 1, per_page, None, &expected).await;
    }
}
