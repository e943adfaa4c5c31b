//! The outbox: deliveries the worker claims, attempts, and provider status callbacks.

use super::Db;
use convo_core::write::{Attempt, Delivery, DeliveryRecord};
use convo_core::{Millis, StoreError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub(crate) fn claim(
    conn: &mut Connection,
    now: Millis,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    // A patient who texted STOP while a send waited (a provider outage, a backoff) must not
    // get it: carriers and the law treat a text after an opt-out as a violation.
    tx.prepare_cached(
        "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, updated_at = ?1,
                error = 'the patient unsubscribed from SMS before it was sent'
          WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?1
            AND EXISTS (SELECT 1 FROM messages m INDEXED BY messages_id
                          JOIN conversations c ON c.id = m.conversation_id
                          JOIN patients p ON p.id = c.patient_id
                         WHERE m.id = deliveries.message_id AND p.unsubscribe_sms)",
    )
    .db()?
    .execute([now.0])
    .db()?;
    let due: Vec<Delivery> = tx
        .prepare_cached(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2, updated_at = ?1
              WHERE id IN (SELECT id FROM deliveries
                            WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?1
                            ORDER BY next_attempt_at, id LIMIT ?3)
             RETURNING id, message_id, to_number, from_number, body, media_url, attempts",
        )
        .db()?
        .query_map(params![now.0, now.0.saturating_add(lease_ms), limit], |r| {
            Ok(Delivery {
                id: r.get(0)?,
                message_id: r.get(1)?,
                to: r.get(2)?,
                from: r.get(3)?,
                body: r.get(4)?,
                media_url: r.get(5)?,
                attempts: r.get(6)?,
            })
        })
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    tx.commit().db()?;
    Ok(due)
}

pub(crate) fn finish(
    conn: &mut Connection,
    id: i64,
    attempt: Attempt,
    now: Millis,
) -> Result<(), StoreError> {
    let (status, next, provider_id, error) = match attempt {
        Attempt::Accepted { provider_id } => ("sent", None, Some(provider_id), None),
        Attempt::Retry { error, at } => ("queued", Some(at.0), None, Some(error)),
        Attempt::Failed { error } => ("failed", None, None, Some(error)),
    };
    // A status callback may already have moved the record past `sent`: keep the later status.
    // Once a callback has named the provider's id, the provider holds the message: a timeout or
    // error seen by this attempt must not schedule a second send.
    conn.prepare_cached(
        "UPDATE deliveries SET
            status = CASE WHEN status IN ('delivered', 'undelivered', 'failed') THEN status
                          ELSE ?2 END,
            next_attempt_at = ?3, provider_id = coalesce(?4, provider_id), error = ?5,
            updated_at = ?6
          WHERE id = ?1 AND (?4 IS NOT NULL OR provider_id IS NULL)",
    )
    .db()?
    .execute(params![id, status, next, provider_id, error, now.0])
    .db()?;
    Ok(())
}

/// Status callbacks can arrive out of order, and before the worker has recorded the provider's
/// answer: a final status is never replaced by `sent`, and a callback ends any pending resend
/// (the provider has the message).
pub(crate) fn update_status(
    conn: &mut Connection,
    delivery_id: Option<i64>,
    provider_id: &str,
    status: &str,
    error: Option<String>,
    now: Millis,
) -> Result<bool, StoreError> {
    // The delivery the callback names, else the one with that provider id; none: no row.
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET
                status = CASE WHEN ?2 != 'sent' OR status = 'queued' THEN ?2 ELSE status END,
                error = coalesce(?3, error), updated_at = ?4,
                provider_id = coalesce(provider_id, (SELECT ?5 WHERE NOT EXISTS
                                   (SELECT 1 FROM deliveries WHERE provider_id = ?5))),
                next_attempt_at = NULL
              WHERE id = coalesce(?1, (SELECT id FROM deliveries WHERE provider_id = ?5))",
        )
        .db()?
        .execute(params![delivery_id, status, error, now.0, provider_id])
        .db()?;
    Ok(changed > 0)
}

pub(crate) fn next_due(conn: &mut Connection) -> Result<Option<Millis>, StoreError> {
    let at: Option<i64> = conn
        .prepare_cached(
            "SELECT min(next_attempt_at) FROM deliveries WHERE next_attempt_at IS NOT NULL",
        )
        .db()?
        .query_row([], |r| r.get(0))
        .db()?;
    Ok(at.map(Millis))
}

pub(crate) fn list(
    conn: &mut Connection,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    conn.prepare_cached(
        "SELECT id, message_id, institution_id, location_id, status, attempts, next_attempt_at,
                provider_id, error, updated_at
           FROM deliveries WHERE ?1 IS NULL OR status = ?1
          ORDER BY id DESC LIMIT ?2",
    )
    .db()?
    .query_map(params![status, limit], |r| {
        Ok(DeliveryRecord {
            id: r.get(0)?,
            message_id: r.get(1)?,
            institution_id: r.get(2)?,
            location_id: r.get(3)?,
            status: r.get(4)?,
            attempts: r.get(5)?,
            next_attempt_at: r.get::<_, Option<i64>>(6)?.map(Millis),
            provider_id: r.get(7)?,
            error: r.get(8)?,
            updated_at: Millis(r.get(9)?),
        })
    })
    .db()?
    .collect::<Result<_, _>>()
    .db()
}

pub(crate) fn retry(conn: &mut Connection, id: i64, now: Millis) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    let found: Option<(String, bool)> = tx
        .prepare_cached(
            "SELECT d.status, p.unsubscribe_sms FROM deliveries d
               JOIN messages m INDEXED BY messages_id ON m.id = d.message_id
               JOIN conversations c ON c.id = m.conversation_id
               JOIN patients p ON p.id = c.patient_id
              WHERE d.id = ?1",
        )
        .db()?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    let Some((status, unsubscribed)) = found else {
        return Err(StoreError::NotFound(format!("no delivery has id {id}")));
    };
    if status != "failed" && status != "undelivered" {
        return Err(StoreError::Invalid(format!(
            "delivery {id} is {status}: only failed or undelivered deliveries can be retried"
        )));
    }
    if unsubscribed {
        return Err(StoreError::Invalid(format!(
            "delivery {id} is to a patient who has unsubscribed from SMS"
        )));
    }
    // A fresh start: the old provider id belongs to the attempt that failed.
    tx.prepare_cached(
        "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = ?2,
                provider_id = NULL, error = NULL, updated_at = ?2
          WHERE id = ?1",
    )
    .db()?
    .execute(params![id, now.0])
    .db()?;
    tx.commit().db()?;
    Ok(())
}
