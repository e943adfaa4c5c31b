//! `GET /conversations` by page number (CONTRACT §3): order, paging, messages per thread.

use crate::Db;
use crate::fixture::{HOUR, UNTIL, generated, seeded, tenant, thread};
use crate::oracle::Oracle;
use convo_core::store::{ConversationStore, import_text};
use convo_core::{ListQuery, MessageQuery, Millis, TenantCtx};

pub(super) fn query(limit: i64, offset: i64, since: Option<i64>) -> ListQuery {
    ListQuery {
        limit,
        offset,
        cursor: None,
        updated_since: since.map(Millis),
        messages: None,
    }
}

/// Every page in turn, until one comes back empty.
pub(super) async fn walk(
    store: &dyn ConversationStore,
    tenant: &TenantCtx,
    per_page: i64,
    since: Option<i64>,
) -> Vec<i64> {
    let mut ids = Vec::new();
    for page in 0.. {
        let got = store
            .list_conversations(tenant, &query(per_page, page * per_page, since))
            .await
            .expect("list");
        if got.conversations.is_empty() {
            break;
        }
        ids.extend(got.conversations.iter().map(|c| c.id));
    }
    ids
}

pub async fn page_numbers_give_the_plain_order(db: Db) {
    // Two months: the order holds stretches of one to dozens of conversations a day, so pages
    // start anywhere in them.
    let oracle = seeded(db.store.as_ref(), 1_500, 60).await;
    for location in [1, 4] {
        let expected = oracle.order(location, None);
        assert!(expected.len() >= 150);
        for per_page in [1, 7, 20, 100] {
            assert_eq!(
                walk(db.store.as_ref(), &tenant(1, location), per_page, None).await,
                expected,
                "location {location}, per_page {per_page}"
            );
        }
    }
    // Polling windows: the filtered list is a prefix of the same order.
    for hours in [1, 5, 24, 24 * 7, 24 * 90] {
        let since = UNTIL - hours * HOUR;
        let expected = oracle.order(1, Some(since));
        for per_page in [20, 3] {
            assert_eq!(
                walk(db.store.as_ref(), &tenant(1, 1), per_page, Some(since)).await,
                expected,
                "{hours} h, per_page {per_page}"
            );
        }
    }
}

/// Conversations on the last and first millisecond of 2^20, 2^25 and 2^30 ms buckets (both
/// engines' activity levels; any engine's buckets are likelier at powers of two than anywhere
/// else), and ties on one instant.
pub(super) fn edge_instants() -> Vec<i64> {
    let mut at = Vec::new();
    for bits in [25, 20, 30] {
        let base = (UNTIL >> bits) << bits;
        for k in 0..4 {
            let edge = base - k * (1 << bits);
            at.extend([edge - 1, edge - 1, edge, edge + 1, edge + (1 << bits) - 1]);
        }
    }
    at
}

/// A practice of one location whose conversations sit at `at`.
pub(super) async fn edges(db: &Db) -> Oracle {
    let mut text = String::from(
        r#"{"type":"institution","id":1,"subdomain":"edges","name":"Edges"}
{"type":"location","id":1,"institution_id":1,"name":"L","tz":"America/New_York"}
"#,
    );
    for (i, t) in edge_instants().iter().enumerate() {
        let id = i + 1;
        text.push_str(&format!(
            "{{\"type\":\"patient\",\"id\":{id},\"institution_id\":1}}\n\
             {{\"type\":\"conversation\",\"id\":{id},\"location_id\":1,\"patient_id\":{id},\"created_at\":\"{}\"}}\n",
            Millis(*t).to_utc_string()
        ));
    }
    import_text(db.store.as_ref(), &text).await.expect("import");
    let records: Vec<_> = text
        .lines()
        .map(|l| convo_core::import::Record::parse_line(l).expect("record"))
        .collect();
    Oracle::from_records(&records)
}

pub async fn pages_start_right_at_slice_edges(db: Db) {
    let oracle = edges(&db).await;
    let expected = oracle.order(1, None);
    assert_eq!(expected.len(), edge_instants().len());
    for per_page in [1, 2, 3, 4] {
        assert_eq!(
            walk(db.store.as_ref(), &tenant(1, 1), per_page, None).await,
            expected,
            "{per_page}"
        );
    }
}

pub async fn each_conversation_carries_its_newest_messages(db: Db) {
    let records = generated(300, 30);
    let oracle = Oracle::from_records(&records);
    convo_core::store::import_records(db.store.as_ref(), records)
        .await
        .expect("import");
    let windows = [
        (5, None, None),
        (1, None, None),
        (100, None, None),
        (3, Some(UNTIL - 10 * 24 * HOUR), None),
        (20, None, Some(UNTIL - 3 * 24 * HOUR)),
        (0, None, None),
    ];
    for (limit, created_since, updated_since) in windows {
        let mut q = query(25, 0, None);
        q.messages = Some(MessageQuery {
            limit,
            created_since: created_since.map(Millis),
            updated_since: updated_since.map(Millis),
        });
        let page = db
            .store
            .list_conversations(&tenant(1, 2), &q)
            .await
            .expect("list");
        assert_eq!(page.conversations.len(), 25);
        for c in &page.conversations {
            let got: Vec<i64> = c.messages.iter().map(|m| m.id).collect();
            let want = oracle.thread(
                c.id,
                usize::try_from(limit).expect("limit"),
                created_since,
                updated_since,
            );
            assert_eq!(got, want, "conversation {}, limit {limit}", c.id);
            assert!(c.messages.iter().all(|m| m.conversation_id == c.id));
        }
    }
}

pub async fn one_conversation_of_the_location(db: Db) {
    crate::fixture::practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let messages = MessageQuery {
        limit: 2,
        created_since: None,
        updated_since: None,
    };
    let one = store
        .get_conversation(&tenant(1, 10), 1000, Some(&messages))
        .await
        .expect("get")
        .expect("conversation 1000");
    assert_eq!((one.id, one.patient.id), (1000, 100));
    let ids: Vec<i64> = one.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [50003, 50002]);
    let bare = store
        .get_conversation(&tenant(1, 10), 1000, None)
        .await
        .expect("get")
        .expect("conversation 1000");
    assert!(bare.messages.is_empty());
    // Another location of the same institution, or no such id: none.
    for (loc, id) in [(11, 1000), (10, 1003), (10, 999_999)] {
        assert!(
            store
                .get_conversation(&tenant(1, loc), id, None)
                .await
                .expect("get")
                .is_none(),
            "location {loc}, conversation {id}"
        );
    }
}

/// Live writes move conversations between activity buckets at every level (a seen moves its
/// thread to now, out of a bucket of the generated past): deep pages, which start from the
/// kept counts, still give the order that one whole page reads straight from the list index.
pub async fn pages_follow_live_writes(db: Db) {
    seeded(db.store.as_ref(), 600, 60).await;
    let store = db.store.as_ref();
    let here = tenant(1, 1);
    let whole = async || -> Vec<i64> {
        let page = store
            .list_conversations(&here, &query(100_000, 0, None))
            .await
            .expect("list");
        page.conversations.iter().map(|c| c.id).collect()
    };
    let before = whole().await;
    assert!(before.len() >= 150);
    // Oldest first, so that each seen takes a thread from further back than the last.
    for &id in before.iter().rev().step_by(9) {
        if let Some(newest) = thread(store, &here, id, 1).await.messages.first() {
            store.mark_seen(&here, newest.id, 1).await.expect("seen");
        }
    }
    let after = whole().await;
    assert_ne!(after, before);
    for per_page in [1, 7, 20] {
        assert_eq!(
            walk(store, &here, per_page, None).await,
            after,
            "per_page {per_page}"
        );
    }
}
