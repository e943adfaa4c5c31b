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

/// Migration 7 scopes idempotency keys by institution: a key a version 6 database kept still
/// answers with its message.
#[tokio::test]
async fn a_version_6_databases_idempotency_keys_still_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v6.db");
    {
        let conn = Connection::open(&path).expect("open");
        for sql in [
            include_str!("../src/sqlite/schema/0001_init.sql"),
            include_str!("../src/sqlite/schema/0002_activity_buckets.sql"),
            include_str!("../src/sqlite/schema/0003_messages_by_thread.sql"),
            include_str!("../src/sqlite/schema/0004_write_side.sql"),
            include_str!("../src/sqlite/schema/0005_send_keys.sql"),
            include_str!("../src/sqlite/schema/0006_claim_owners.sql"),
        ] {
            conn.execute_batch(sql).expect("schema");
        }
        conn.execute_batch(
            "INSERT INTO institutions VALUES (1, 'acme', 'Acme');
             INSERT INTO locations (id, institution_id, name, tz) VALUES (10, 1, 'A', 'UTC');
             INSERT INTO users (id, institution_id, first_name) VALUES (5, 1, 'Sam');
             INSERT INTO patients (id, institution_id, first_name, created_at, updated_at)
                 VALUES (100, 1, 'Ana', 0, 0);
             INSERT INTO conversations VALUES (1000, 1, 10, 100, 1000, 2000);
             INSERT INTO messages (id, conversation_id, body, created_at, updated_at, sender_type,
                                   sender_id)
                 VALUES (1, 1000, 'hi', 2000, 2000, 'User', 5);
             INSERT INTO send_keys VALUES (7, 'key-1', 1, 2000);
             PRAGMA user_version = 6;",
        )
        .expect("v6 data");
    }
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect("migrate");
    let tenant = TenantCtx::resolved(1, 10, Zone::utc());
    let again = store
        .send_message(
            &tenant,
            convo_core::write::NewMessage {
                patient_id: 100,
                user_id: 5,
                body: "hi".into(),
                attachment: None,
                idempotency: Some(convo_core::write::IdempotencyKey {
                    api_key_id: 7,
                    key: "key-1".into(),
                }),
            },
        )
        .await
        .expect("replay");
    assert_eq!(again.id, 1);
}
