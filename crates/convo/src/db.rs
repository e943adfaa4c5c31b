//! `--database-url` to a store: the one place that knows which engines exist.

use convo_core::{Store, StoreError};
use convo_store_sqlite::{SqliteOptions, SqliteStore, sqlite_path};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL names no engine this build has, or no database.
    #[error("{0}")]
    Url(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens (creating and migrating if needed) the database `url` names: `sqlite://PATH`,
/// `sqlite:PATH` or a plain path.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, ConnectError> {
    let Some(path) = sqlite_path(url) else {
        return Err(ConnectError::Url(
            "only SQLite databases are supported so far (sqlite://PATH or a file path)",
        ));
    };
    if path.is_empty() {
        return Err(ConnectError::Url("the database path is empty"));
    }
    Ok(Arc::new(
        SqliteStore::open(path, SqliteOptions::default()).await?,
    ))
}
