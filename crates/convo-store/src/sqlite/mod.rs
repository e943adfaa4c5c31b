//! The SQLite engine: one writer connection, a few readers, WAL, statements cached per connection.

mod import;
mod keys;
mod list;
mod migrations;
mod outbox;
mod pool;
mod write;

use async_trait::async_trait;
use convo_core::import::{ImportBatch, ImportError, ImportSummary};
use convo_core::outbox::{Attempt, Delivery, DeliveryRecord, DeliveryStatus, OutboxStats};
use convo_core::write::{InboundOutcome, InboundSms, NewMessage};
use convo_core::{
    ApiKeyInfo, Conversation, ConversationPage, ConversationStore, Denied, ImportSink, KeyStore,
    ListQuery, Maintenance, Message, MessageQuery, Millis, NewApiKey, OutboxStore, Refusal,
    StoreError, TenantCtx,
};
use pool::Pool;
use rusqlite::config::DbConfig;
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use rusqlite::{Connection, OpenFlags};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub use list::hot_statements;

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
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = FILE;",
        )
        .db()?;
        if !self.writer {
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

/// SQLite behind the `Store` trait.
#[derive(Clone)]
pub struct SqliteStore {
    readers: Arc<Pool>,
    writer: Arc<Pool>,
    path: PathBuf,
    /// Held by the process whose outbox worker owns this database (`register_worker`).
    owner: Arc<Mutex<Option<File>>>,
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
        writer.run(|conn| migrations::migrate(conn).db()).await?;
        Ok(Self {
            readers: Arc::new(Pool::new("read", readers, opener(false))),
            writer,
            path,
            owner: Arc::default(),
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

fn backup_to(source: &Path, dest: &Path) -> Result<u64, StoreError> {
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

trait FileResult<T> {
    fn db_file(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> FileResult<T> for std::io::Result<T> {
    fn db_file(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::broken(format!("{}: {e}", path.display())))
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

pub(crate) trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(db_error)
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn key_is_live(&self, key_id: i64) -> Result<bool, StoreError> {
        self.read(move |conn| keys::key_is_live(conn, key_id)).await
    }

    async fn access(
        &self,
        key_id: i64,
        subdomain: &str,
        location_id: i64,
    ) -> Result<Result<TenantCtx, Denied>, StoreError> {
        let subdomain = subdomain.to_string();
        self.read(move |conn| keys::access(conn, key_id, &subdomain, location_id))
            .await
    }

    async fn authenticate_key(&self, raw_key: &str) -> Result<Option<i64>, StoreError> {
        let hash = keys::hash_key(raw_key);
        self.read(move |conn| keys::authenticate(conn, &hash)).await
    }

    async fn jwt_secret(&self) -> Result<Vec<u8>, StoreError> {
        self.write(keys::jwt_secret).await
    }

    async fn create_api_key(&self, subdomains: &[String]) -> Result<NewApiKey, StoreError> {
        let subdomains = subdomains.to_vec();
        self.write(move |conn| keys::create(conn, &subdomains))
            .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.read(keys::list).await
    }

    async fn revoke_api_key(&self, key_id: i64) -> Result<bool, StoreError> {
        self.write(move |conn| keys::revoke(conn, key_id)).await
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn list_conversations(
        &self,
        tenant: &TenantCtx,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.read(move |conn| list::page(conn, &tenant, &query))
            .await
    }

    async fn list_for_key(
        &self,
        key_id: i64,
        scope: (&str, i64),
        query: &ListQuery,
    ) -> Result<Result<(TenantCtx, ConversationPage), Denied>, StoreError> {
        let (subdomain, location_id, query) = (scope.0.to_string(), scope.1, query.clone());
        self.read(move |conn| {
            let tenant = match keys::access(conn, key_id, &subdomain, location_id)? {
                Ok(tenant) => tenant,
                Err(denied) => return Ok(Err(denied)),
            };
            let page = list::page(conn, &tenant, &query)?;
            Ok(Ok((tenant, page)))
        })
        .await
    }

    async fn get_conversation(
        &self,
        tenant: &TenantCtx,
        id: i64,
        messages: Option<&MessageQuery>,
    ) -> Result<Option<Conversation>, StoreError> {
        let (tenant, messages) = (tenant.clone(), messages.cloned());
        self.read(move |conn| write::get_conversation(conn, &tenant, id, messages.as_ref()))
            .await
    }

    async fn send_message(
        &self,
        tenant: &TenantCtx,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        let tenant = tenant.clone();
        self.write(move |conn| write::send(conn, &tenant, message, Millis::now()))
            .await
    }

    async fn mark_seen(
        &self,
        tenant: &TenantCtx,
        message_id: i64,
        user_id: i64,
    ) -> Result<Message, StoreError> {
        let tenant = tenant.clone();
        self.write(move |conn| write::seen(conn, &tenant, message_id, user_id, Millis::now()))
            .await
    }

    async fn receive_sms(&self, sms: InboundSms) -> Result<InboundOutcome, StoreError> {
        self.write(move |conn| write::receive(conn, sms, Millis::now()))
            .await
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn update_delivery(
        &self,
        delivery_id: Option<i64>,
        provider_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        let provider_id = provider_id.to_string();
        self.write(move |conn| {
            outbox::update_status(
                conn,
                delivery_id,
                &provider_id,
                status,
                error,
                Millis::now(),
            )
        })
        .await
    }

    async fn register_worker(&self) -> Result<i64, StoreError> {
        self.own()?;
        self.write(|conn| outbox::register_worker(conn, Millis::now()))
            .await
    }

    async fn heartbeat_worker(&self, worker: i64) -> Result<(), StoreError> {
        self.write(move |conn| outbox::heartbeat(conn, worker, Millis::now()))
            .await
    }

    async fn retire_worker(&self, worker: i64) -> Result<(), StoreError> {
        self.write(move |conn| outbox::retire(conn, worker)).await
    }

    async fn claim_deliveries(
        &self,
        worker: i64,
        now: Millis,
        stale_ms: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.write(move |conn| outbox::claim(conn, worker, now, stale_ms, limit))
            .await
    }

    async fn finish_delivery(
        &self,
        worker: i64,
        id: i64,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        self.write(move |conn| outbox::finish(conn, worker, id, attempt, Millis::now()))
            .await
    }

    async fn next_delivery_at(&self) -> Result<Option<Millis>, StoreError> {
        self.read(outbox::next_due).await
    }

    async fn outbox_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError> {
        self.read(move |conn| outbox::stats(conn, now, stale_ms))
            .await
    }

    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.read(move |conn| outbox::list(conn, status, limit))
            .await
    }

    async fn retry_delivery(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |conn| outbox::retry(conn, id, Millis::now()))
            .await
    }
}

#[async_trait]
impl ImportSink for SqliteStore {
    async fn import(
        &self,
        items: mpsc::Receiver<ImportBatch>,
    ) -> Result<ImportSummary, ImportError> {
        self.write(move |conn| Ok(import::run(conn, items))).await?
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM institutions)", [], |r| {
                r.get(0)
            })
            .db()
        })
        .await
    }
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn check_ready(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            let found: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .db()?;
            // A real read of a real table: a damaged or vanished file fails here.
            conn.query_row("SELECT count(*) FROM settings", [], |r| r.get::<_, i64>(0))
                .db()?;
            let expected = migrations::SCHEMA_VERSION;
            if found == expected {
                Ok(())
            } else {
                Err(Refusal::SchemaMismatch { found, expected }.into())
            }
        })
        .await
    }

    /// Refreshes the planner's statistics (the server does it at start).
    async fn optimize(&self) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute_batch("PRAGMA analysis_limit = 400; PRAGMA optimize = 0x10002;")
                .db()
        })
        .await
    }

    /// Writes a consistent copy of the database to `dest` (which must not exist) while writers
    /// carry on: `VACUUM INTO` reads one snapshot (a WAL read transaction never blocks the
    /// writer), the copy is checked, synced and only then renamed into place, so `dest` is
    /// either absent or complete. Returns the copy's size in bytes.
    async fn backup(&self, dest: &Path) -> Result<u64, StoreError> {
        if dest.exists() {
            return Err(Refusal::BackupExists(dest.display().to_string()).into());
        }
        let source = self.path.clone();
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || backup_to(&source, &dest))
            .await
            .map_err(StoreError::fault)?
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
