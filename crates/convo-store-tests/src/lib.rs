//! The conformance suite: what every storage engine must do, written once against the store
//! traits (atuin's `tests-database` is the pattern). An engine's own test calls
//! `run_all(engine)`; each case gets a fresh, empty database from the engine, and its expected
//! answers come from the records it wrote, modelled in memory (`oracle`), never from SQL.
//!
//! `CONVO_CONFORMANCE=part` runs only the cases whose name contains `part`.

mod cases;
pub mod fixture;
pub mod oracle;
pub mod property;

use async_trait::async_trait;
use convo_core::Store;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A fresh database of the engine under test, and whatever must live as long as it (a temp
/// directory, a dropped-at-end schema).
pub struct Db {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Db {
    pub fn new(store: Arc<dyn Store>, keep: impl Any + Send + Sync) -> Self {
        Self {
            store,
            _keep: Box::new(keep),
        }
    }
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// A new, empty, migrated database, used by one case only.
    async fn fresh(&self) -> Db;
}

pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// One behaviour: `concern/name` and the check.
pub type Case = (&'static str, fn(Db) -> CaseFuture);

/// Every case, by concern.
pub fn cases() -> Vec<Case> {
    cases::all()
}

/// How many cases run at once: each holds its own database, and the concurrency cases start
/// their own tasks.
const PARALLEL: usize = 4;

/// Runs every case (or those `CONVO_CONFORMANCE` names) against fresh databases of `engine`,
/// a few at a time, and fails with the name and message of every case that failed.
pub async fn run_all(engine: impl Engine) {
    let engine = Arc::new(engine);
    let filter = std::env::var("CONVO_CONFORMANCE").unwrap_or_default();
    let selected: Vec<Case> = cases()
        .into_iter()
        .filter(|(name, _)| name.contains(filter.as_str()))
        .collect();
    assert!(!selected.is_empty(), "no case matches `{filter}`");
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut running = Vec::new();
    for (name, case) in selected {
        let (engine, limit) = (engine.clone(), limit.clone());
        running.push((
            name,
            tokio::spawn(async move {
                let _slot = limit.acquire_owned().await;
                let db = engine.fresh().await;
                case(db).await;
            }),
        ));
    }
    let mut failed = Vec::new();
    let total = running.len();
    for (name, task) in running {
        match task.await {
            Ok(()) => eprintln!("conformance {name} ... ok"),
            Err(e) => {
                let why = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into()),
                    Err(e) => e.to_string(),
                };
                eprintln!("conformance {name} ... FAILED: {why}");
                failed.push(format!("{name}: {why}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} conformance cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
