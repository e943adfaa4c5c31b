//! The SQLite engine: one writer connection, a few readers, WAL, statements cached per connection.

mod backup;
mod checkpoint;
mod conversations;
mod cursors;
mod export;
mod import;
mod inbound;
mod keys;
mod messages;
mod outbox;
mod phones;
mod pool;
mod rows;
mod schema;
mod traits;
mod webhooks;

use backup::FileResult;
use convo_core::{Refusal, StoreError};
use pool::Pool;
use rusqlite::config::DbConfig;
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use rusqlite::{Connection, OpenFlags};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use conversations::hot_statements;

/// A callback given the text of each statement SQLite starts.
pub type TraceFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Knobs that tests and benchmarks need; the defaults suit a server.
#[derive(Clone, Default)]
pub struct SqliteOptions {
    /// Called with the text of every statement SQLite starts running (for statement counting).
    pub trace: Option<TraceFn>,
    /// Read connections; 0 picks a default from the number of cores.
    pub readers: usize,
}

pub(crate) struct Opener {
    path: PathBuf,
    options: SqliteOptions,
    writer: bool,
}

impl Opener {
    pub(crate) fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let mut conn = Connection::open_with_flags(&self.path, flags).db()?;
        conn.busy_timeout(Duration::from_secs(10)).db()?;
        // Plans must not depend on bound values: otherwise SQLite re-compiles a statement on
        // every new binding of, say, `LIMIT ?` (~5 % of a list request's CPU, seen in perf).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .db()?;
        conn.set_prepared_statement_cache_capacity(64);
        // Reads from the file map rather than `pread` into each connection's own 2 MB cache:
        // random pages spent 15 % of the server's CPU copying pages out of the kernel (random
        // pages +15 % at 64 connections). SQLite caps the map at 2 GB; the rest is read as
        // before.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = FILE;
             PRAGMA mmap_size = 2147418112;",
        )
        .db()?;
        if self.writer {
            // Checkpoints are `checkpoint`'s thread's; a restarted WAL is cut back to 64 MB.
            conn.execute_batch(&format!(
                "PRAGMA wal_autocheckpoint = {};
                 PRAGMA journal_size_limit = 67108864;",
                checkpoint::WRITER_FALLBACK_PAGES
            ))
            .db()?;
        } else {
            conn.execute_batch("PRAGMA query_only = ON;").db()?;
        }
        if let Some(trace) = self.options.trace.clone() {
            let callback = move |event: TraceEvent<'_>| {
                if let TraceEvent::Stmt(_, sql) = event {
                    trace(sql);
                }
            };
            conn.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(callback))
                .db()?;
        }
        Ok(conn)
    }
}

/// Refreshes the planner's statistics for the tables whose size changed enough to matter,
/// each sampled (`analysis_limit`) rather than read whole once it has statistics.
pub(crate) const OPTIMIZE_SQL: &str = "PRAGMA analysis_limit = 400; PRAGMA optimize = 0x10002;";

/// The largest read (in rows, `ListQuery::rows_at_most`) run inline on an async worker: a few
/// milliseconds at most, so the worker's other connections wait no longer than that.
const INLINE_ROWS: i64 = 1_000;

/// SQLite behind the `Store` trait.
#[derive(Clone)]
pub struct SqliteStore {
    readers: Arc<Pool>,
    writer: Arc<Pool>,
    path: PathBuf,
    /// Held by the process whose outbox worker owns this database (`register_worker`).
    owner: Arc<Mutex<Option<File>>>,
    _checkpoints: Arc<checkpoint::Checkpointer>,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database file at `path`.
    pub async fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let readers = if options.readers == 0 {
            std::thread::available_parallelism().map_or(4, |n| n.get() * 2)
        } else {
            options.readers
        };
        let opener = |writer| {
            Arc::new(Opener {
                path: path.clone(),
                options: options.clone(),
                writer,
            })
        };
        let writer = Arc::new(Pool::new("write", 1, opener(true)));
        // Migrating on the writer before any reader opens: readers then see the full schema.
        writer.run(|conn| schema::migrate(conn).db()).await?;
        // Its statements are not the store's: they stay out of `trace`.
        let checkpoints = checkpoint::Checkpointer::start(Arc::new(Opener {
            path: path.clone(),
            options: SqliteOptions::default(),
            writer: true,
        }))?;
        Ok(Self {
            readers: Arc::new(Pool::new("read", readers, opener(false))),
            writer,
            path,
            owner: Arc::default(),
            _checkpoints: Arc::new(checkpoints),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.readers.run(f).await
    }

    /// A read bounded small, run on the calling worker (see `pool`).
    pub(crate) async fn read_here<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.readers.run_here(f).await
    }

    /// A read of at most `rows` rows: on the calling worker when that is small, else on a
    /// blocking thread, so a worker's other connections never wait on a big page.
    pub(crate) async fn read_sized<R, F>(&self, rows: i64, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        if rows <= INLINE_ROWS {
            self.read_here(f).await
        } else {
            self.read(f).await
        }
    }

    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.writer.run(f).await
    }

    /// Runs `EXPLAIN QUERY PLAN` for `sql` (with NULL parameters) and returns the plan's lines.
    pub async fn query_plan(&self, sql: &'static str) -> Result<Vec<String>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).db()?;
            let n = stmt.parameter_count();
            let params = vec![rusqlite::types::Null; n];
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })
                .db()?;
            rows.collect::<Result<Vec<_>, _>>().db()
        })
        .await
    }

    /// Takes the database's owner lock for this process, once: the outbox's claims may then be
    /// taken back at start, since no other server can be holding them.
    fn own(&self) -> Result<(), StoreError> {
        let mut owner = self
            .owner
            .lock()
            .map_err(|_| StoreError::broken("the owner lock was poisoned"))?;
        if owner.is_some() {
            return Ok(());
        }
        let file = File::open(&self.path).db_file(&self.path)?;
        match file.try_lock() {
            Ok(()) => {
                *owner = Some(file);
                Ok(())
            }
            Err(TryLockError::WouldBlock) => {
                Err(Refusal::DatabaseInUse(self.path.display().to_string()).into())
            }
            Err(TryLockError::Error(e)) => Err(StoreError::broken(format!(
                "cannot lock {}: {e}",
                self.path.display()
            ))),
        }
    }
}

/// Maps rusqlite's errors into the store's: a unique or primary-key violation is a conflict (a
/// write that lost a race, which the caller may settle by retrying); everything else is a fault
/// that keeps its source for the log.
pub(crate) fn db_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, message) = &e
        && matches!(
            code.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    {
        // "UNIQUE constraint failed: send_keys.api_key_id, send_keys.key": the table names it.
        let what = message
            .as_deref()
            .and_then(|m| m.rsplit(": ").next())
            .and_then(|cols| cols.split('.').next())
            .unwrap_or("a unique key");
        return StoreError::Conflict(what.to_string());
    }
    StoreError::fault(e)
}

/// Runs `f` in one deferred (read) transaction, so all its statements see one snapshot. BEGIN
/// and COMMIT go through the statement cache: rusqlite's `transaction()` parses both anew each
/// time (about 1 % of a list request's CPU in perf). An error rolls back; a panic drops the
/// connection (the pool keeps only connections back in autocommit).
pub(crate) fn snapshot<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    conn.prepare_cached("BEGIN").db()?.execute([]).db()?;
    match f(conn) {
        Ok(out) => {
            conn.prepare_cached("COMMIT").db()?.execute([]).db()?;
            Ok(out)
        }
        Err(e) => {
            let _ = conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut stmt| stmt.execute([]));
            Err(e)
        }
    }
}

/// An IMMEDIATE transaction: the write lock is taken at BEGIN, so every check the write makes
/// holds until its commit (SQLite's one writer; a check-then-insert cannot race).
pub(crate) fn immediate(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .db()
}

pub(crate) trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(db_error)
    }
}
