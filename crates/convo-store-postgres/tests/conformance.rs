//! The conformance suite (`convo-store-tests`) on PostgreSQL: each case on a database of its
//! own, cloned from a migrated template. Fails, never skips, when PostgreSQL is not reachable.

use convo_store_postgres::scratch::ScratchDb;
use convo_store_tests::{Db, Engine, run_all};
use std::sync::Arc;

struct Postgres;

#[async_trait::async_trait]
impl Engine for Postgres {
    async fn fresh(&self) -> Db {
        let scratch = ScratchDb::create().await.expect("scratch database");
        let store = scratch.open().await.expect("open");
        Db::new(Arc::new(store), scratch)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    run_all(Postgres).await;
}
