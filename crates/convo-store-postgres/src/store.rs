//! Opening the database (migrating it first), the pool, and transactions that are rerun when
//! PostgreSQL aborts them to keep concurrent ones apart.

use crate::{Db, schema};
use convo_core::StoreError;
use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// Pool and session settings; the defaults suit a server.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Connections per process; 0 picks 4 per core. Every process of a deployment opens its
    /// own pool: processes × pool size must stay below the server's `max_connections`.
    pub pool_size: usize,
    /// How long a request waits for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// The longest any one statement may run (`statement_timeout`); `None` leaves the
    /// server's setting.
    pub statement_timeout: Option<Duration>,
    /// A connection this old is closed when it comes back to the pool, and a new one opened in
    /// its place. Its statements were planned (generic plans, made once per connection) on the
    /// tables as they were then: a database that started empty and grew is planned again.
    pub connection_lifetime: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 0,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Some(Duration::from_secs(30)),
            connection_lifetime: Duration::from_secs(600),
        }
    }
}

/// PostgreSQL behind the store traits.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The URL without its password, for messages.
    described: String,
    /// Transactions PostgreSQL aborted and this store ran again (serialization failures and
    /// deadlocks): a healthy write path keeps this near zero.
    retries: Arc<AtomicU64>,
}

/// How many times a transaction PostgreSQL aborted (serialization failure, deadlock) is run
/// again before the fault reaches the caller.
pub(crate) const RETRIES: u32 = 6;

impl PgStore {
    /// Connects, creates or migrates the schema (once, however many processes start together),
    /// and opens the pool.
    pub async fn open(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::broken(format!("the database URL is not valid: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("convo");
        }
        config.options(session_options(config.get_options(), &options));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let described = describe(&config);
        let (mut client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| StoreError::broken(format!("cannot connect to {described}: {e}")))?;
        let driver = tokio::spawn(connection);
        let migrated = schema::migrate(&mut client).await;
        drop(client);
        let _ = driver.await;
        migrated?;
        let size = if options.pool_size == 0 {
            std::thread::available_parallelism().map_or(8, |n| n.get() * 4)
        } else {
            options.pool_size
        };
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let lifetime = options.connection_lifetime;
        let pool = Pool::builder(manager)
            .max_size(size)
            .pre_recycle(Hook::sync_fn(move |_, metrics| {
                if metrics.age() >= lifetime {
                    Err(HookError::Message("past the connection lifetime".into()))
                } else {
                    Ok(())
                }
            }))
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::broken(format!("cannot build the connection pool: {e}")))?;
        Ok(Self {
            pool,
            described,
            retries: Arc::default(),
        })
    }

    /// The database, as `postgres://user@host:port/db` (never the password).
    pub fn described(&self) -> &str {
        &self.described
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<Object, StoreError> {
        let asked = Instant::now();
        let client = self.pool.get().await.map_err(|e| {
            // Pool errors name the cause (timeout, refused connection) but never the URL.
            StoreError::broken(format!("no database connection: {e}"))
        })?;
        metrics::histogram!("convo_db_pool_wait_seconds", "pool" => "postgres")
            .record(asked.elapsed().as_secs_f64());
        Ok(client)
    }

    /// How many transactions were run again since the store opened.
    pub fn transaction_retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("convo_db_transaction_retries_total").increment(1);
    }

    /// The statements this store has prepared on one of its connections, with their parameter
    /// types: with a pool of one connection, every statement it has run through the statement
    /// cache (the hot ones). For plan and routing checks.
    pub async fn prepared_statements(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT statement, parameter_types::text[] FROM pg_prepared_statements
                  WHERE from_sql = false",
                &[],
            )
            .await
            .map_err(crate::db_error)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// The pause before run `attempt` (1-based) of a transaction PostgreSQL aborted: short, growing
/// and jittered, so that two transactions that collided do not collide again.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 2u64.saturating_pow(attempt.min(6));
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    );
    Duration::from_micros(base * 500 + nanos % (base * 500))
}

/// Runs `$body` (an expression using the transaction `$tx`, which may use `?`) in a
/// transaction on a pooled connection, committing at the end; a transaction PostgreSQL aborted
/// to keep others apart is run again from the start, with a fresh connection.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            let mut client = $store.client().await?;
            let result: Result<_, convo_core::StoreError> = async {
                let $tx = client.transaction().await.db()?;
                let out = $body;
                $tx.commit().await.db()?;
                Ok(out)
            }
            .await;
            match result {
                Err(e) if crate::is_transient(&e) && attempt < crate::store::RETRIES => {
                    attempt += 1;
                    $store.count_retry();
                    drop(client);
                    tokio::time::sleep(crate::store::backoff(attempt)).await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use in_transaction;

/// Makes the rest of `tx` plan each statement for the tables as they are now (custom plans),
/// for the queues' worker: a queue table starts empty and grows by thousands of rows a second,
/// and a generic plan made on a connection's first run while it was empty stays, reading all of
/// it every time (with autovacuum off nothing invalidates it: the webhook claim took 2 s at
/// 50,000 deliveries, the SMS outbox's claim 30 s). A statement planned per run costs a little
/// planning on these few statements, not on the API's. (`tests/plans.rs` explains statements
/// marked `/* planned per run */` so; those it would flag under a generic plan must be.)
pub(crate) async fn plan_for_now(
    tx: &deadpool_postgres::Transaction<'_>,
) -> Result<(), StoreError> {
    tx.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan")
        .await
        .db()
}

/// Session settings for every connection: generic plans, then the caller's `options` (which
/// may set them otherwise), then a bound on each statement and on transactions left open (a
/// stuck client must not hold locks for long).
///
/// Generic plans from the first execution: every prepared statement is checked to stay on its
/// indexes under one (`tests/plans.rs`). Left to choose, PostgreSQL planned the list afresh on
/// every execution at 1,000,000 conversations (0.8 ms of planning against 0.5 ms of running),
/// because its estimate for the generic plan came out higher than for the custom ones.
fn session_options(existing: Option<&str>, options: &PgOptions) -> String {
    let mut out = String::from("-c plan_cache_mode=force_generic_plan");
    if let Some(e) = existing.filter(|e| !e.is_empty()) {
        out.push(' ');
        out.push_str(e);
    }
    let mut set = |setting: String| {
        out.push_str(" -c ");
        out.push_str(&setting);
    };
    if let Some(t) = options.statement_timeout {
        set(format!("statement_timeout={}", t.as_millis()));
    }
    set("idle_in_transaction_session_timeout=60000".into());
    out
}

/// `postgres://user@host:port/db`: what messages may say about the database.
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    let at = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!("postgres://{at}{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::{PgOptions, backoff, describe, session_options};

    #[test]
    fn the_description_never_holds_the_password() {
        let config: tokio_postgres::Config = "postgres://convo:s3cret@db.internal:5433/practice"
            .parse()
            .expect("url");
        let text = describe(&config);
        assert_eq!(text, "postgres://convo@db.internal:5433/practice");
        assert!(!text.contains("s3cret"));
    }

    #[test]
    fn session_options_keep_the_callers() {
        let o = PgOptions::default();
        assert_eq!(
            session_options(Some("-c search_path=convo"), &o),
            "-c plan_cache_mode=force_generic_plan -c search_path=convo \
             -c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
        );
        let none = PgOptions {
            statement_timeout: None,
            ..o
        };
        assert_eq!(
            session_options(None, &none),
            "-c plan_cache_mode=force_generic_plan -c idle_in_transaction_session_timeout=60000"
        );
    }

    #[test]
    fn backoff_grows_and_stays_small() {
        for attempt in 1..10 {
            let d = backoff(attempt);
            assert!(d >= std::time::Duration::from_micros(1000));
            assert!(d <= std::time::Duration::from_millis(64));
        }
    }
}
