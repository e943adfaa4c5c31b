//! `--database-url` to a store: the one place that knows which engines exist.

use crate::CliError;
use convo_core::Store;
use convo_store::{SqliteOptions, SqliteStore, sqlite_path};
use std::sync::Arc;

/// Opens (creating and migrating if needed) the database `url` names: `sqlite://PATH`,
/// `sqlite:PATH` or a plain path.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, CliError> {
    let Some(path) = sqlite_path(url) else {
        return Err(CliError::Usage(
            "only SQLite databases are supported so far (sqlite://PATH or a file path)".into(),
        ));
    };
    if path.is_empty() {
        return Err(CliError::Usage("the database path is empty".into()));
    }
    Ok(Arc::new(
        SqliteStore::open(path, SqliteOptions::default()).await?,
    ))
}
