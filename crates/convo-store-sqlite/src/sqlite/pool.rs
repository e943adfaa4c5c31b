//! A small pool of SQLite connections used from async code on tokio's blocking threads.
//!
//! rusqlite calls are synchronous; each use checks a connection out, runs the closure on a
//! blocking thread (so a slow query never stalls the async workers) and puts it back. A
//! connection lost to a panic is simply not returned; a fresh one is opened next time.

use crate::sqlite::Opener;
use convo_core::StoreError;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

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

    pub(crate) async fn run<R, F>(self: &Arc<Self>, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        // Waits show up in `/metrics`: a pool that is often exhausted wants more connections
        // (readers) or fewer, shorter write transactions.
        let asked = std::time::Instant::now();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::broken("connection pool closed"))?;
        metrics::histogram!("convo_db_pool_wait_seconds", "pool" => self.name)
            .record(asked.elapsed().as_secs_f64());
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let idle = pool.idle.lock().ok().and_then(|mut v| v.pop());
            let mut conn = match idle {
                Some(c) => c,
                None => pool.opener.open()?,
            };
            let out = f(&mut conn);
            // A connection left inside a transaction by an error path must not be reused as is.
            if conn.is_autocommit()
                && let Ok(mut v) = pool.idle.lock()
            {
                v.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::broken(format!("storage task failed: {e}")))?
    }
}
