//! SQLite's own readiness and fault detection: a schema from another build, a file that lost
//! its data under a running server. (What the server answers then is the HTTP suite's.)

use convo_core::store::prelude::*;
use convo_core::{Refusal, StoreError};
use convo_store_sqlite::{SqliteOptions, SqliteStore};

async fn open() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("test.db"), SqliteOptions::default())
        .await
        .expect("open");
    (store, dir)
}

#[tokio::test]
async fn a_schema_from_another_build_is_not_ready() {
    let (store, dir) = open().await;
    store.check_ready().await.expect("ready");
    rusqlite::Connection::open(dir.path().join("test.db"))
        .expect("open")
        .pragma_update(None, "user_version", 999)
        .expect("pragma");
    let e = store.check_ready().await.expect_err("not ready");
    assert!(
        matches!(
            e,
            StoreError::Refused(Refusal::SchemaMismatch {
                found: 999,
                expected
            }) if expected < 999
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_file_that_lost_its_data_is_a_fault() {
    let (store, dir) = open().await;
    store.check_ready().await.expect("ready");
    // The file and its log emptied, and its shared index zeroed (it is mapped into memory:
    // shortening it would fault), under the running store: what a disk that lost the data
    // looks like to SQLite.
    let db = dir.path().join("test.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if suffix == "-shm" {
            let len = f.metadata().expect("metadata").len();
            std::fs::write(&path, vec![0u8; usize::try_from(len).expect("size")]).expect("zero");
        } else {
            f.set_len(0).expect("truncate");
        }
    }
    let e = store.check_ready().await.expect_err("not ready");
    assert!(matches!(e, StoreError::Fault(_)), "{e:?}");
}

/// `convo api-key create` beside a running server: its check of the subdomain and its insert
/// are one write transaction from the start. As a deferred one, the insert found the snapshot
/// of its check stale once another process had committed meanwhile (the server's worker, say),
/// and SQLite answered `database is locked` at once instead of waiting: the command printed
/// no key (seen once in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_created_while_another_process_writes() {
    let (store, dir) = open().await;
    convo_store_tests::fixture::practice(&store).await;
    let other = rusqlite::Connection::open(dir.path().join("test.db")).expect("open");
    other
        .execute_batch("BEGIN IMMEDIATE; UPDATE institutions SET name = name WHERE id = 1;")
        .expect("the other writer");
    let store = std::sync::Arc::new(store);
    let creating = {
        let store = store.clone();
        tokio::spawn(async move { store.create_api_key(&["acme".to_string()]).await })
    };
    // The key's transaction begins while the other one holds the write lock, which it then
    // commits.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    other.execute_batch("COMMIT").expect("commit");
    let key = creating.await.expect("task").expect("key created");
    assert!(
        store
            .authenticate_key(&key.raw)
            .await
            .expect("auth")
            .is_some()
    );
}
