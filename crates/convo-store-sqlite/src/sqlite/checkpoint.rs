//! Checkpoints the WAL from a thread of its own, so no request pays for one.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold: that one
//! write copies a thousand pages into the database and syncs it. At 500 staff sends a second
//! those commits were the sends' p99 (3.9 ms with them, 1.4 ms without any checkpoint; issue
//! 15's bench). Here a thread copies what the WAL holds every `INTERVAL`, beside the writer
//! (`PASSIVE` never blocks it), and the writer's own checkpoint stays only as a last resort at
//! `WRITER_FALLBACK_PAGES`. A WAL that will not start over because some write is always under way
//! is restarted at `RESTART_PAGES`, waiting at most `RESTART_WAIT` for readers before trying later.

use super::Opener;
use convo_core::StoreError;
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);
/// A WAL this long (4 KB pages) is made to start over.
const RESTART_PAGES: i64 = 8_192;
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// The writer checkpoints itself only past this many pages: when the thread cannot keep up.
pub(crate) const WRITER_FALLBACK_PAGES: i64 = 16_384;

/// Stops the thread when the last handle of the store goes.
pub(crate) struct Checkpointer {
    _stop: Sender<()>,
}

impl Checkpointer {
    pub(crate) fn start(opener: Arc<Opener>) -> Result<Self, StoreError> {
        let conn = opener.open()?;
        conn.busy_timeout(RESTART_WAIT)
            .map_err(|e| StoreError::broken(format!("checkpoint connection: {e}")))?;
        let (stop, stopped) = channel();
        std::thread::Builder::new()
            .name("convo-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| StoreError::broken(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self { _stop: stop })
    }
}

fn run(conn: &Connection, stopped: &Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
        if let Err(e) = checkpoint(conn) {
            tracing::warn!(error = %e, "sqlite: background checkpoint failed; will retry");
        }
    }
    // The last handle went: one more pass, so a clean shutdown leaves little in the WAL.
    let _ = checkpoint(conn);
}

/// One pass: copy what no reader still needs; restart a WAL grown past `RESTART_PAGES`.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    let (_busy, log, _copied) = pass(conn, "PASSIVE")?;
    if log >= RESTART_PAGES {
        let (busy, log, copied) = pass(conn, "RESTART")?;
        if busy != 0 {
            tracing::debug!(
                log,
                copied,
                "sqlite: WAL restart put off (readers or a writer)"
            );
        }
    }
    Ok(())
}

fn pass(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteOptions;
    use std::path::PathBuf;

    fn bytes(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn the_thread_copies_what_the_writer_leaves_in_the_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path: PathBuf = dir.path().join("c.db");
        let opener = Arc::new(Opener {
            path: path.clone(),
            options: SqliteOptions::default(),
            writer: true,
        });
        let writer = opener.open().expect("open");
        writer
            .execute_batch("CREATE TABLE t (x BLOB)")
            .expect("table");
        let write = |n: usize| {
            for _ in 0..n {
                writer
                    .execute("INSERT INTO t VALUES (zeroblob(8000))", [])
                    .expect("insert");
            }
        };
        // Far past SQLite's own threshold (1,000 pages): the writer leaves it to the thread, so
        // the rows are still only in the WAL (a checkpoint copies them into the file).
        write(1_500);
        let written = 1_500 * 8_000;
        assert!(
            bytes(&path) < written,
            "the writer checkpointed itself: the file holds {} bytes",
            bytes(&path)
        );
        let _thread = Checkpointer::start(opener.clone()).expect("start");
        let copied = (0..50).any(|_| {
            std::thread::sleep(INTERVAL);
            bytes(&path) >= written
        });
        assert!(copied, "the thread copied nothing: {} bytes", bytes(&path));
    }
}
