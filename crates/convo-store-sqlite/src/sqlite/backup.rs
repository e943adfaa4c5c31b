//! `convo backup`: a consistent copy of a live database, checked and synced before it is named.

use super::Db;
use convo_core::{Refusal, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) fn backup_to(source: &Path, dest: &Path) -> Result<u64, StoreError> {
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    // Left by a backup that was interrupted: never a finished copy.
    let _ = std::fs::remove_file(&partial);
    let conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_WRITE).db()?;
    conn.busy_timeout(Duration::from_secs(30)).db()?;
    let target = partial.to_str().ok_or(Refusal::BackupPathNotUtf8)?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        Refusal::BackupFailed(e.to_string())
    })?;
    drop(conn);
    let copy = Connection::open_with_flags(&partial, OpenFlags::SQLITE_OPEN_READ_ONLY).db()?;
    let check: String = copy
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .db()?;
    drop(copy);
    if check != "ok" {
        let _ = std::fs::remove_file(&partial);
        return Err(StoreError::broken(format!(
            "the backup failed its integrity check: {check}"
        )));
    }
    let file = File::open(&partial).db_file(&partial)?;
    file.sync_all().db_file(&partial)?;
    let size = file.metadata().db_file(&partial)?.len();
    std::fs::rename(&partial, dest).db_file(dest)?;
    // The rename itself is durable once the directory is synced.
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(size)
}

pub(crate) trait FileResult<T> {
    fn db_file(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> FileResult<T> for std::io::Result<T> {
    fn db_file(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::broken(format!("{}: {e}", path.display())))
    }
}
