//! Tenancy in the storage API itself: a tenant's calls never reach another institution's or
//! another location's data, whatever ids they name.

use super::listing::query;
use super::sends::text;
use crate::Db;
use crate::fixture::{practice, tenant};
use convo_core::{Missing, Refusal, StoreError};

pub async fn no_store_call_crosses_an_institution(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    // Institution 1 naming institution 2's location lists nothing of it.
    let page = store
        .list_conversations(&tenant(1, 20), &query(100, 0, None))
        .await
        .expect("list");
    assert!(page.conversations.is_empty());
    assert_eq!(page.count(), Some(0));
    // Each location lists only its own.
    let mine = store
        .list_conversations(&tenant(1, 10), &query(100, 0, None))
        .await
        .expect("list");
    let mut ids: Vec<i64> = mine.conversations.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1000, 1001, 1002, 1004]);
    for (institution, location, id) in [(1, 10, 2000), (2, 20, 1000)] {
        let found = store
            .get_conversation(&tenant(institution, location), id, None)
            .await
            .expect("get");
        assert!(
            found.is_none(),
            "{institution}/{location} reads conversation {id}"
        );
    }
    assert!(matches!(
        store.mark_seen(&tenant(1, 10), 50030, 5).await,
        Err(StoreError::NotFound(Missing::Message(50030)))
    ));
    assert!(matches!(
        store.send_message(&tenant(1, 10), text(200, 5, "x")).await,
        Err(StoreError::Refused(Refusal::PatientNotInInstitution(200)))
    ));
    assert!(matches!(
        store.send_message(&tenant(2, 20), text(100, 7, "x")).await,
        Err(StoreError::Refused(Refusal::PatientNotInInstitution(100)))
    ));
    // Institution 2 sees its own secret, and only it.
    let theirs = store
        .list_conversations(&tenant(2, 20), &query(100, 0, None))
        .await
        .expect("list");
    assert_eq!(
        theirs
            .conversations
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        [2000]
    );
}
