//! The conformance suite (`convo-store-tests`) on SQLite: each case on its own database file.

use convo_store_sqlite::{SqliteOptions, SqliteStore};
use convo_store_tests::{Db, Engine, run_all};
use std::sync::Arc;

struct Sqlite;

#[async_trait::async_trait]
impl Engine for Sqlite {
    async fn fresh(&self) -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SqliteOptions {
            readers: 2,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(dir.path().join("conformance.db"), options)
            .await
            .expect("open");
        Db::new(Arc::new(store), dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    run_all(Sqlite).await;
}
