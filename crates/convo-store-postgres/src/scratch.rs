//! Throwaway databases for tests and benchmarks: each a copy of a template migrated once per
//! schema (`CREATE DATABASE … TEMPLATE`, ~50 ms against ~120 ms for create + migrate), dropped
//! when its guard goes. The server named by `CONVO_TEST_PG_URL` (default: the local one with
//! trust auth) must be up: a test that needs it fails rather than skips.

use crate::{PgOptions, PgStore, schema};
use convo_core::StoreError;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

/// The maintenance database of the server tests use.
pub fn admin_url() -> String {
    std::env::var("CONVO_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `admin` with its database name replaced by `db`.
fn url_of(admin: &str, db: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// The template's name: one per schema, so a changed migration gets a fresh template.
fn template_name() -> String {
    // FNV-1a over the migrations' text: stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for sql in schema::MIGRATIONS {
        for b in sql.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("convo_tpl_{hash:016x}")
}

async fn admin() -> Result<tokio_postgres::Client, StoreError> {
    let url = admin_url();
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.map_err(|e| {
        StoreError::broken(format!(
            "PostgreSQL is not reachable at {} ({e}); start it (pg_ctlcluster \
             --skip-systemctl-redirect 15 main start) or set CONVO_TEST_PG_URL",
            url_of(&url, "…")
        ))
    })?;
    tokio::spawn(connection);
    Ok(client)
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// Creates the template once (per process; an advisory lock keeps processes apart), migrated
/// and with no connection left open, as `CREATE DATABASE … TEMPLATE` requires.
async fn template() -> Result<&'static str, StoreError> {
    TEMPLATE
        .get_or_try_init(|| async {
            let name = template_name();
            let client = admin().await?;
            client
                .execute("SELECT pg_advisory_lock(7337)", &[])
                .await
                .map_err(StoreError::fault)?;
            let exists = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .map_err(StoreError::fault)?
                .is_some();
            // Databases left by test processes that died before dropping theirs.
            let stale = client
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'convo\\_t\\_%'",
                    &[],
                )
                .await
                .map_err(StoreError::fault)?;
            for row in stale {
                let db: String = row.get(0);
                let pid = db.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .await;
                }
            }
            if !exists {
                let building = format!("{name}_building");
                let q = |sql: String| {
                    let client = &client;
                    async move { client.batch_execute(&sql).await.map_err(StoreError::fault) }
                };
                q(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).await?;
                q(format!("CREATE DATABASE {building}")).await?;
                // Migrates on a connection it closes; the pool opens none until used.
                drop(PgStore::open(&url_of(&admin_url(), &building), PgOptions::default()).await?);
                q(format!("ALTER DATABASE {building} RENAME TO {name}")).await?;
            }
            client
                .execute("SELECT pg_advisory_unlock(7337)", &[])
                .await
                .map_err(StoreError::fault)?;
            Ok(name)
        })
        .await
        .map(String::as_str)
}

/// A fresh, migrated database, dropped with the guard.
pub struct ScratchDb {
    name: String,
    url: String,
}

impl ScratchDb {
    pub async fn create() -> Result<Self, StoreError> {
        let template = template().await?;
        Self::make(&format!("TEMPLATE {template}")).await
    }

    /// An empty database, not even migrated: what a first deployment starts from.
    pub async fn create_empty() -> Result<Self, StoreError> {
        Self::make("").await
    }

    async fn make(options: &str) -> Result<Self, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "convo_t_{}_{}_{}",
            std::process::id(),
            convo_core::Millis::now().0,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin()
            .await?
            .batch_execute(&format!("CREATE DATABASE {name} {options}"))
            .await
            .map_err(StoreError::fault)?;
        Ok(Self {
            url: url_of(&admin_url(), &name),
            name,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store on it, with a small pool (tests open many databases at once).
    pub async fn open(&self) -> Result<PgStore, StoreError> {
        PgStore::open(
            &self.url,
            PgOptions {
                pool_size: 4,
                ..PgOptions::default()
            },
        )
        .await
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop cannot await, and may run inside a runtime: a thread of its own does it.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(client) = admin().await {
                    let _ = client.batch_execute(&sql).await;
                }
            });
        });
        // Waiting here must not hold up the runtime's other tasks: PostgreSQL's DROP DATABASE
        // waits until every backend has released its files, and a backend in `COPY FROM
        // STDIN` does so only when its client sends more. When that client is a task of this
        // runtime and both of its threads wait here, neither ever moves (seen: the
        // conformance suite hung with two drops waiting on a third case's import).
        let wait = move || {
            let _ = done.join();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait);
            }
            _ => wait(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::url_of;

    #[test]
    fn database_names_replace_the_admin_ones() {
        assert_eq!(
            url_of("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            url_of("postgresql://u:p@h/db?sslmode=disable", "t2"),
            "postgresql://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(url_of("postgres://h", "t3"), "postgres://h/t3");
    }
}
