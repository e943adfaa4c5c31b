//! `count` (CONTRACT §3): every match across pages, kept right at every instant `updated_since`
//! can name and after every kind of write.

use super::listing::{query, walk};
use crate::Db;
use crate::fixture::{HOUR, UNTIL, later_activity, seeded, tenant};
use convo_core::import::Record;
use convo_core::store::{ConversationStore, import_text};

async fn count(store: &dyn ConversationStore, location: i64, since: Option<i64>) -> Option<i64> {
    store
        .list_conversations(&tenant(1, location), &query(1, 0, since))
        .await
        .expect("list")
        .count()
}

pub async fn counts_agree_with_the_records(db: Db) {
    let oracle = seeded(db.store.as_ref(), 800, 60).await;
    let store = db.store.as_ref();
    let all = oracle.order(2, None).len() as i64;
    assert_eq!(count(store, 2, None).await, Some(all));
    // Every 2^25 ms edge in the window, one millisecond either side, and odd instants.
    let mut probes = vec![i64::MIN + 1, 0, UNTIL, UNTIL + 1];
    let mut edge = (UNTIL - 61 * 24 * HOUR) >> 25 << 25;
    while edge <= UNTIL {
        probes.extend([edge - 1, edge, edge + 1]);
        edge += 1 << 25;
    }
    probes.extend((0..50).map(|i| UNTIL - i * 29 * HOUR - 12_345));
    for since in probes {
        assert_eq!(
            count(store, 2, Some(since)).await,
            Some(oracle.order(2, Some(since)).len() as i64),
            "since {since}"
        );
    }
}

pub async fn counts_and_order_follow_a_second_import(db: Db) {
    let mut oracle = seeded(db.store.as_ref(), 300, 30).await;
    let store = db.store.as_ref();
    let text = later_activity();
    import_text(store, &text).await.expect("second import");
    let records: Vec<Record> = text
        .lines()
        .map(|l| Record::parse_line(l).expect("record"))
        .collect();
    oracle.apply(&records);
    for location in oracle.location_ids() {
        let order = oracle.order(location, None);
        assert_eq!(
            count(store, location, None).await,
            Some(order.len() as i64),
            "location {location}"
        );
        assert_eq!(walk(store, &tenant(1, location), 7, None).await, order);
        let since = UNTIL - 2 * 24 * HOUR;
        assert_eq!(
            count(store, location, Some(since)).await,
            Some(oracle.order(location, Some(since)).len() as i64)
        );
    }
}
