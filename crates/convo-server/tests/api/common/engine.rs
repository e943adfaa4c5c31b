//! The engine the suite runs on: `CONVO_TEST_ENGINE` names it (`sqlite`, the default, or
//! `postgres`). The one place in the HTTP suite that knows which engines exist.

use convo_store_postgres::scratch::ScratchDb;
use convo_store_sqlite::{SqliteOptions, SqliteStore};
use convo_store_tests::{Db, Engine};
use std::sync::Arc;

/// SQLite on a file in a temp directory of its own.
struct TempSqlite;

#[async_trait::async_trait]
impl Engine for TempSqlite {
    async fn fresh(&self) -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SqliteOptions {
            readers: 2,
            ..SqliteOptions::default()
        };
        let path = dir.path().join("test.db");
        let store = SqliteStore::open(path, options).await.expect("open store");
        Db::new(Arc::new(store), dir)
    }
}

/// A PostgreSQL database of its own, cloned from a migrated template, dropped at the end.
/// Fails, never skips, when PostgreSQL is not reachable.
struct ScratchPostgres;

#[async_trait::async_trait]
impl Engine for ScratchPostgres {
    async fn fresh(&self) -> Db {
        let scratch = ScratchDb::create().await.expect("scratch database");
        let store = scratch.open().await.expect("open store");
        Db::new(Arc::new(store), scratch)
    }
}

pub fn engine() -> Box<dyn Engine> {
    match std::env::var("CONVO_TEST_ENGINE").as_deref() {
        Ok("sqlite") | Err(_) => Box::new(TempSqlite),
        Ok("postgres") => Box::new(ScratchPostgres),
        Ok(other) => {
            panic!("CONVO_TEST_ENGINE={other}: this build's engines are: sqlite, postgres")
        }
    }
}

/// Whether several claim owners (server processes) may work one database at once. PostgreSQL:
/// yes. SQLite: one process owns the file, and a new owner takes every earlier one's claims.
pub fn owners_share_the_database() -> bool {
    std::env::var("CONVO_TEST_ENGINE").as_deref() == Ok("postgres")
}
