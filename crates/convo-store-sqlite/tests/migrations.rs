//! A database written by an earlier release opens, migrates and answers the same.

use convo_core::store::prelude::*;
use convo_core::tz::Zone;
use convo_core::{ListQuery, MessageQuery, TenantCtx};
use convo_store_sqlite::{SqliteOptions, SqliteStore};
use rusqlite::Connection;

#[tokio::test]
async fn a_version_1_database_migrates_with_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(include_str!("../src/sqlite/schema/0001_init.sql"))
            .expect("v1 schema");
        conn.execute_batch(
            "INSERT INTO institutions VALUES (1, 'acme', 'Acme');
             INSERT INTO locations VALUES (10, 1, 'A', 'America/Chicago', NULL, 2);
             INSERT INTO patients (id, institution_id, first_name, created_at, updated_at)
                 VALUES (100, 1, 'Ana', 0, 0), (101, 1, 'Ben', 0, 0);
             INSERT INTO conversations VALUES (1000, 1, 10, 100, 1000, 5000), (1001, 1, 10, 101, 1000, 9000);
             INSERT INTO messages (id, conversation_id, body, created_at, updated_at, sender_type, sender_id)
                 VALUES (1, 1000, 'old', 2000, 2000, 'Patient', 100),
                        (2, 1000, 'new', 5000, 5000, 'System', NULL),
                        (3, 1001, 'other', 9000, 9000, 'Patient', 101);
             PRAGMA user_version = 1;",
        )
        .expect("v1 data");
    }
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect("migrate");
    let tenant = TenantCtx::resolved(1, 10, Zone::get("America/Chicago").expect("zone"));
    let query = ListQuery {
        limit: 10,
        offset: 1,
        cursor: None,
        updated_since: None,
        messages: Some(MessageQuery {
            limit: 5,
            created_since: None,
            updated_since: None,
        }),
    };
    let page = store
        .list_conversations(&tenant, &query)
        .await
        .expect("list");
    assert_eq!(page.count(), Some(2));
    let ids: Vec<(i64, Vec<i64>)> = page
        .conversations
        .iter()
        .map(|c| (c.id, c.messages.iter().map(|m| m.id).collect()))
        .collect();
    assert_eq!(ids, vec![(1000, vec![2, 1])]);
    let conn = Connection::open(&path).expect("open");
    let slices: i64 = conn
        .query_row("SELECT sum(n) FROM conversation_activity", [], |r| r.get(0))
        .expect("slices");
    assert_eq!(slices, 2);
}
