//! Phone numbers kept normalised beside the rows that hold them (`locations.phone_e164`,
//! `patient_phones`), so an inbound SMS finds its location and patient by index. Every writer of
//! a location's number or a patient's bio calls these in the same transaction.

use convo_core::phone::{bio_phones, e164};
use rusqlite::{Connection, params};

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
