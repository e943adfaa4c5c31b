//! A small pool of SQLite connections used from async code.
//!
//! rusqlite calls are synchronous. Most uses check a connection out and run the closure on a
//! blocking thread, so a long job (an export, a page of 100 × 100 messages) never stalls the
//! async workers. Reads bounded small run on the calling worker instead (`run_here`): the
//! hand-off to a blocking thread and back costs two wake-ups and two context switches, which on
//! a list page of ordinary size cost more than the read itself (issue 14: page 1 at 64
//! connections +40 %). A connection lost to a panic is simply not returned; a fresh one is
//! opened next time.

use crate::sqlite::Opener;
use convo_core::StoreError;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, SemaphorePermit};

pub(crate) struct Pool {
    /// `read` or `write`: the label of this pool's metrics.
    name: &'static str,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    opener: Arc<Opener>,
}

impl Pool {
    pub(crate) fn new(name: &'static str, size: usize, opener: Arc<Opener>) -> Self {
        Self {
            name,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            opener,
        }
    }

    /// Runs `f` on a blocking thread with a connection of the pool.
    pub(crate) async fn run<R, F>(self: &Arc<Self>, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let _permit = self.permit().await?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || pool.with_connection(f))
            .await
            .map_err(|e| StoreError::broken(format!("storage task failed: {e}")))?
    }

    /// Runs `f` on the calling thread: only for work bounded small (a key lookup, a list page
    /// of ordinary size), since the worker serves nothing else meanwhile.
    pub(crate) async fn run_here<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError>,
    {
        let _permit = self.permit().await?;
        self.with_connection(f)
    }

    async fn permit(&self) -> Result<SemaphorePermit<'_>, StoreError> {
        // Waits show up in `/metrics`: a pool that is often exhausted wants more connections
        // (readers) or fewer, shorter write transactions.
        let asked = std::time::Instant::now();
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::broken("connection pool closed"))?;
        metrics::histogram!("convo_db_pool_wait_seconds", "pool" => self.name)
            .record(asked.elapsed().as_secs_f64());
        Ok(permit)
    }

    fn with_connection<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut conn = match idle {
            Some(c) => c,
            None => self.opener.open()?,
        };
        let out = f(&mut conn);
        // A connection left inside a transaction by an error path must not be reused as is.
        if conn.is_autocommit()
            && let Ok(mut v) = self.idle.lock()
        {
            v.push(conn);
        }
        out
    }
}
