//! `--database-url` to a store: the one place that knows which engines exist.

use convo_core::{Store, StoreError};
use convo_store_postgres::{PgOptions, PgStore, is_postgres_url};
use convo_store_sqlite::{SqliteOptions, SqliteStore, sqlite_path};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL names no engine this build has, or no database.
    #[error("{0}")]
    Url(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The database flags (PostgreSQL's pool; SQLite ignores them).
#[derive(Clone, Debug)]
pub struct DbOptions {
    pub pool_size: usize,
    pub acquire_timeout: Duration,
    pub statement_timeout: Option<Duration>,
}

impl Default for DbOptions {
    fn default() -> Self {
        let pg = PgOptions::default();
        Self {
            pool_size: pg.pool_size,
            acquire_timeout: pg.acquire_timeout,
            statement_timeout: pg.statement_timeout,
        }
    }
}

/// `connect_with` and the default options.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, ConnectError> {
    connect_with(url, &DbOptions::default()).await
}

/// Opens (creating and migrating if needed) the database `url` names: `postgres://…` or
/// `postgresql://…`; `sqlite://PATH`, `sqlite:PATH` or a plain path.
pub async fn connect_with(url: &str, options: &DbOptions) -> Result<Arc<dyn Store>, ConnectError> {
    if is_postgres_url(url) {
        let options = PgOptions {
            pool_size: options.pool_size,
            acquire_timeout: options.acquire_timeout,
            statement_timeout: options.statement_timeout,
            ..PgOptions::default()
        };
        return Ok(Arc::new(PgStore::open(url, options).await?));
    }
    let Some(path) = sqlite_path(url) else {
        return Err(ConnectError::Url(
            "the database URL names no engine this build has \
             (postgres://…, postgresql://…, sqlite://PATH or a file path)",
        ));
    };
    if path.is_empty() {
        return Err(ConnectError::Url("the database path is empty"));
    }
    Ok(Arc::new(
        SqliteStore::open(path, SqliteOptions::default()).await?,
    ))
}
