//! Phone numbers kept normalised beside the rows that hold them (`locations.phone_e164` and
//! `location_numbers`, `patient_phones`), so an inbound SMS finds its location and patient by
//! index. Every writer of a location's number or a patient's bio calls these in the same
//! transaction.

use crate::Db;
use convo_core::StoreError;
use convo_core::phone::{bio_phones, e164};
use deadpool_postgres::Transaction;

/// Keeps `locations.phone_e164` and the routing table in step with `phone_number`.
pub(crate) async fn set_location_phone(
    tx: &Transaction<'_>,
    institution_id: i64,
    id: i64,
    phone: Option<&str>,
) -> Result<(), StoreError> {
    let normal = phone.and_then(e164);
    let update = tx
        .prepare_cached(
            "UPDATE locations SET phone_e164 = $3 WHERE institution_id = $1 AND id = $2",
        )
        .await
        .db()?;
    tx.execute(&update, &[&institution_id, &id, &normal])
        .await
        .db()?;
    let clear = tx
        .prepare_cached(
            "DELETE FROM location_numbers WHERE institution_id = $1 AND location_id = $2",
        )
        .await
        .db()?;
    tx.execute(&clear, &[&institution_id, &id]).await.db()?;
    if let Some(number) = normal {
        let insert = tx
            .prepare_cached(
                "INSERT INTO location_numbers (phone_e164, institution_id, location_id)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .await
            .db()?;
        tx.execute(&insert, &[&number, &institution_id, &id])
            .await
            .db()?;
    }
    Ok(())
}

/// Keeps a patient's rows of `patient_phones` in step with their `bio`.
pub(crate) async fn set_patient_phones(
    tx: &Transaction<'_>,
    id: i64,
    institution_id: i64,
    bio: &str,
) -> Result<(), StoreError> {
    let clear = tx
        .prepare_cached("DELETE FROM patient_phones WHERE institution_id = $1 AND patient_id = $2")
        .await
        .db()?;
    tx.execute(&clear, &[&institution_id, &id]).await.db()?;
    let phones = bio_phones(bio);
    if phones.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO patient_phones (institution_id, phone, patient_id)
             SELECT $1, phone, $3 FROM unnest($2::text[]) AS phone
             ON CONFLICT DO NOTHING",
        )
        .await
        .db()?;
    tx.execute(&insert, &[&institution_id, &phones, &id])
        .await
        .db()?;
    Ok(())
}
