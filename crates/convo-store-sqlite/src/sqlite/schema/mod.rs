//! The schema: embedded, numbered migrations, applied in order and tracked in
//! `PRAGMA user_version`.
//! A released migration is never edited: add the next one.

use super::phones;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

const MIGRATIONS: &[&str] = &[
    include_str!("0001_init.sql"),
    include_str!("0002_activity_buckets.sql"),
    include_str!("0003_messages_by_thread.sql"),
    include_str!("0004_write_side.sql"),
    include_str!("0005_send_keys.sql"),
    include_str!("0006_claim_owners.sql"),
    include_str!("0007_send_keys_by_institution.sql"),
    include_str!("0008_activity_stretches.sql"),
    include_str!("0009_activity_fine.sql"),
    include_str!("0010_webhooks.sql"),
    include_str!("0011_webhook_indexes.sql"),
    include_str!("0012_webhook_leases.sql"),
    include_str!("0013_webhook_ids.sql"),
];

/// The schema version this build writes and expects (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    // IMMEDIATE takes the write lock before reading the version, so two processes starting on
    // the same new file cannot both apply the same migration.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let done = usize::try_from(current).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
    }
    let backfill: Option<String> = tx
        .query_row(
            "SELECT value FROM settings WHERE key = 'backfill_phones'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if backfill.is_some() {
        backfill_phones(&tx)?;
        tx.execute("DELETE FROM settings WHERE key = 'backfill_phones'", [])?;
    }
    tx.commit()
}

/// Normalised numbers for the locations and patients written before migration 4.
fn backfill_phones(tx: &Transaction) -> rusqlite::Result<()> {
    let locations: Vec<(i64, String)> = tx
        .prepare("SELECT id, phone_number FROM locations WHERE phone_number IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, phone) in locations {
        phones::set_location_phone(tx, id, Some(&phone))?;
    }
    let mut stmt = tx.prepare("SELECT id, institution_id, bio FROM patients")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let bio: String = row.get(2)?;
        phones::set_patient_phones(tx, row.get(0)?, row.get(1)?, &bio)?;
    }
    Ok(())
}
