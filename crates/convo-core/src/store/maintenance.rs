//! What operators and probes ask of the database itself: readiness, upkeep, backups.

use crate::error::StoreError;
use async_trait::async_trait;
use std::path::Path;

#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// `Ok` when the database answers and its schema is the one this build expects;
    /// `Refused(SchemaMismatch)` names a mismatch, `Fault` a database that cannot be read.
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Engine upkeep a server does at start (fresh planner statistics after large imports).
    async fn optimize(&self) -> Result<(), StoreError>;

    /// Writes a consistent copy of the database to `dest`, which must not exist; the size in
    /// bytes.
    async fn backup(&self, dest: &Path) -> Result<u64, StoreError>;

    /// A name for the database in messages (a file path; never a password).
    fn describe(&self) -> String;
}
