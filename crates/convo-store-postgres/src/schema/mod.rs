//! The schema: embedded, numbered migrations, each applied in its own transaction with its
//! row in `convo_schema`, all under one advisory lock so that several processes starting
//! together on a new database apply each migration once (the others wait, then find it done).
//! A released migration is never edited: add the next one.

use crate::Db;
use convo_core::{Refusal, StoreError};
use tokio_postgres::Client;

pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("0001_init.sql"),
    include_str!("0002_worker_home.sql"),
    include_str!("0003_striped_counts.sql"),
    include_str!("0004_activity_levels.sql"),
    include_str!("0005_webhooks.sql"),
    include_str!("0006_webhook_leases.sql"),
    include_str!("0007_webhook_indexes.sql"),
    include_str!("0008_webhook_fanout.sql"),
    include_str!("0009_webhook_claims_by_endpoint.sql"),
    include_str!("0010_webhook_queue_vacuum.sql"),
];

/// The schema version this build writes and expects.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock key of migrations ("convo" + "mig" in ASCII). Advisory locks are scoped to
/// the current database, so other databases on the server are not affected.
const MIGRATION_LOCK: i64 = 0x636f_6e76_6f6d_6967;

/// Applies what is missing. Runs on a connection of its own: the session lock is released when
/// it closes, whatever happened.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .db()?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS convo_schema (
                version    bigint PRIMARY KEY,
                applied_at bigint NOT NULL
             )",
        )
        .await
        .db()?;
    let done = version(client).await?;
    if done > SCHEMA_VERSION {
        // A newer build migrated this database: serving it with this one could corrupt it.
        return Err(Refusal::SchemaMismatch {
            found: done,
            expected: SCHEMA_VERSION,
        }
        .into());
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(done).unwrap_or(0))
    {
        let number = i64::try_from(i + 1).unwrap_or(i64::MAX);
        let tx = client.transaction().await.db()?;
        tx.batch_execute(sql).await.db()?;
        tx.execute(
            "INSERT INTO convo_schema (version, applied_at) VALUES ($1, $2)",
            &[&number, &convo_core::Millis::now().0],
        )
        .await
        .db()?;
        tx.commit().await.db()?;
        tracing::info!(version = number, "database migrated");
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .db()?;
    Ok(())
}

/// The version the database is at (0: new).
pub(crate) async fn version(client: &Client) -> Result<i64, StoreError> {
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM convo_schema", &[])
        .await
        .db()?;
    Ok(row.get(0))
}
