//! Embedded, numbered migrations, applied in order and tracked in `PRAGMA user_version`.
//! A released migration is never edited: add the next one.

use convo_core::phone::{bio_phones, e164};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_activity_buckets.sql"),
    include_str!("migrations/0003_messages_by_thread.sql"),
    include_str!("migrations/0004_write_side.sql"),
    include_str!("migrations/0005_send_keys.sql"),
    include_str!("migrations/0006_claim_owners.sql"),
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
        set_location_phone(tx, id, Some(&phone))?;
    }
    let mut stmt = tx.prepare("SELECT id, institution_id, bio FROM patients")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let bio: String = row.get(2)?;
        set_patient_phones(tx, row.get(0)?, row.get(1)?, &bio)?;
    }
    Ok(())
}

/// Keeps `locations.phone_e164` in step with `phone_number`.
pub(crate) fn set_location_phone(
    conn: &Connection,
    id: i64,
    phone: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE locations SET phone_e164 = ?2 WHERE id = ?1")?
        .execute(params![id, phone.and_then(e164)])?;
    Ok(())
}

/// Keeps a patient's rows of `patient_phones` in step with their `bio`.
pub(crate) fn set_patient_phones(
    conn: &Connection,
    id: i64,
    institution_id: i64,
    bio: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM patient_phones WHERE patient_id = ?1")?
        .execute([id])?;
    for phone in bio_phones(bio) {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO patient_phones (institution_id, phone, patient_id)
             VALUES (?1, ?2, ?3)",
        )?
        .execute(params![institution_id, phone, id])?;
    }
    Ok(())
}
