//! The outbox: deliveries the worker claims, attempts, and provider status callbacks.

use super::{Db, immediate, webhooks};
use convo_core::outbox::{Attempt, Delivery, DeliveryRecord, DeliveryStatus, OutboxStats};
use convo_core::webhook::WebhookEvent;
use convo_core::{Millis, Missing, Refusal, StoreError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Rows a worker may claim: due, and free or held by an owner that stopped heartbeating.
/// (`?1` now, `?3` the oldest heartbeat still alive.)
macro_rules! claimable {
    () => {
        "next_attempt_at IS NOT NULL AND next_attempt_at <= ?1
         AND (claimed_by IS NULL
              OR claimed_by NOT IN (SELECT id FROM workers WHERE heartbeat_at >= ?3))"
    };
}

/// Whether the patient of the `deliveries` row at hand has opted out of SMS.
macro_rules! unsubscribed {
    () => {
        "EXISTS (SELECT 1 FROM messages m INDEXED BY messages_id
                   JOIN conversations c ON c.id = m.conversation_id
                   JOIN patients p ON p.id = c.patient_id
                  WHERE m.id = deliveries.message_id AND p.unsubscribe_sms)"
    };
}

/// A new claim owner. One process owns a SQLite database (the caller holds the file's lock),
/// so every claim of an earlier owner is its to take back: a restart resends at once.
pub(crate) fn register_worker(conn: &mut Connection, now: Millis) -> Result<i64, StoreError> {
    let tx = immediate(conn)?;
    let taken = tx
        .execute(
            "UPDATE deliveries SET claimed_by = NULL, claimed_at = NULL
              WHERE claimed_by IS NOT NULL",
            [],
        )
        .db()?;
    let hooks = tx
        .execute(
            "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_at = NULL
              WHERE claimed_by IS NOT NULL",
            [],
        )
        .db()?;
    tx.execute(
        "UPDATE webhook_endpoints SET leased_by = NULL WHERE leased_by IS NOT NULL",
        [],
    )
    .db()?;
    if taken + hooks > 0 {
        tracing::info!(
            deliveries = taken,
            webhook_deliveries = hooks,
            "outbox: took back the claims of a worker that did not stop cleanly"
        );
    }
    // A new id above every earlier owner's, so a claim of one can never pass for another's.
    let id: i64 = tx
        .query_row(
            "INSERT INTO workers (id, started_at, heartbeat_at, pid)
             VALUES ((SELECT coalesce(max(id), 0) + 1 FROM workers), ?1, ?1, ?2)
             RETURNING id",
            params![now.0, std::process::id()],
            |r| r.get(0),
        )
        .db()?;
    tx.execute("DELETE FROM workers WHERE id != ?1", [id])
        .db()?;
    tx.commit().db()?;
    Ok(id)
}

pub(crate) fn heartbeat(conn: &mut Connection, worker: i64, now: Millis) -> Result<(), StoreError> {
    // A row removed behind the worker's back (a restore, an operator) comes back: the claims
    // it holds are still being worked on.
    conn.prepare_cached(
        "INSERT INTO workers (id, started_at, heartbeat_at, pid) VALUES (?1, ?2, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
    )
    .db()?
    .execute(params![worker, now.0, std::process::id()])
    .db()?;
    Ok(())
}

pub(crate) fn retire(conn: &mut Connection, worker: i64) -> Result<(), StoreError> {
    let tx = immediate(conn)?;
    tx.execute(
        "UPDATE deliveries SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = ?1",
        [worker],
    )
    .db()?;
    tx.execute(
        "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = ?1",
        [worker],
    )
    .db()?;
    tx.execute(
        "UPDATE webhook_endpoints SET leased_by = NULL WHERE leased_by = ?1",
        [worker],
    )
    .db()?;
    tx.execute("DELETE FROM workers WHERE id = ?1", [worker])
        .db()?;
    tx.commit().db()
}

pub(crate) fn claim(
    conn: &mut Connection,
    worker: i64,
    now: Millis,
    stale_ms: i64,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let tx = immediate(conn)?;
    let alive_since = now.0.saturating_sub(stale_ms);
    // A patient who texted STOP while a send waited (a provider outage, a backoff) must not
    // get it: carriers and the law treat a text after an opt-out as a violation. The claim
    // below passes over such sends; this fails those among the ones it would take (only
    // those: a backlog is not scanned on every claim), so they leave the queue as they reach
    // its head.
    let stopped: Vec<i64> = tx
        .prepare_cached(concat!(
            "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, updated_at = ?1,
                claimed_by = NULL, claimed_at = NULL,
                error = 'the patient unsubscribed from SMS before it was sent'
          WHERE id IN (SELECT id FROM deliveries WHERE ",
            claimable!(),
            " ORDER BY next_attempt_at, id LIMIT ?4)
            AND ",
            unsubscribed!(),
            " RETURNING message_id"
        ))
        .db()?
        // `?2` is unused here; the numbering matches the claim below, which shares `claimable!`.
        .query_map(params![now.0, worker, alive_since, limit], |r| r.get(0))
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    for message_id in stopped {
        webhooks::fire(&tx, WebhookEvent::MessageUpdated, message_id, now)?;
    }
    let due: Vec<Delivery> = tx
        .prepare_cached(concat!(
            "UPDATE deliveries SET attempts = attempts + 1, claimed_by = ?2, claimed_at = ?1,
                    updated_at = ?1
              WHERE id IN (SELECT id FROM deliveries WHERE ",
            claimable!(),
            " AND NOT ",
            unsubscribed!(),
            " ORDER BY next_attempt_at, id LIMIT ?4)
             RETURNING id, message_id, to_number, from_number, body, media_url, attempts"
        ))
        .db()?
        .query_map(params![now.0, worker, alive_since, limit], |r| {
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
    worker: i64,
    id: i64,
    attempt: Attempt,
    now: Millis,
) -> Result<(), StoreError> {
    use DeliveryStatus::{Failed, Queued, Sent};
    let (status, next, provider_id, error) = match attempt {
        Attempt::Accepted { provider_id } => (Sent, None, Some(provider_id), None),
        Attempt::Retry { error, at } => (Queued, Some(at.0), None, Some(error)),
        Attempt::Failed { error } => (Failed, None, None, Some(error)),
    };
    // A status callback may already have moved the record past `sent`: keep the later status.
    // Once a callback has named the provider's id, the provider holds the message: a timeout or
    // error seen by this attempt must not schedule a second send (`kept` below). The claim is
    // released either way, but only by its owner: a worker that was taken over (it stopped
    // heartbeating, then came back) records what it saw and leaves the new claim alone.
    let tx = immediate(conn)?;
    let before = status_of(&tx, id)?;
    tx.prepare_cached(
        "UPDATE deliveries SET
            status = CASE WHEN ?4 IS NULL AND provider_id IS NOT NULL THEN status
                          WHEN status IN ('delivered', 'undelivered', 'failed') THEN status
                          ELSE ?2 END,
            next_attempt_at = CASE WHEN ?4 IS NULL AND provider_id IS NOT NULL
                                   THEN next_attempt_at ELSE ?3 END,
            error = CASE WHEN ?4 IS NULL AND provider_id IS NOT NULL THEN error ELSE ?5 END,
            provider_id = coalesce(?4, provider_id),
            updated_at = ?6,
            claimed_at = CASE WHEN claimed_by = ?7 THEN NULL ELSE claimed_at END,
            claimed_by = CASE WHEN claimed_by = ?7 THEN NULL ELSE claimed_by END
          WHERE id = ?1",
    )
    .db()?
    .execute(params![
        id,
        status.as_str(),
        next,
        provider_id,
        error,
        now.0,
        worker
    ])
    .db()?;
    webhooks::fire_if_status_moved(&tx, id, before.as_deref(), now)?;
    tx.commit().db()
}

/// A delivery's stored status now, to tell whether a write moved it (`message_updated`).
fn status_of(tx: &Transaction, id: i64) -> Result<Option<String>, StoreError> {
    tx.prepare_cached("SELECT status FROM deliveries WHERE id = ?1")
        .db()?
        .query_row([id], |r| r.get(0))
        .optional()
        .db()
}

/// Status callbacks can arrive out of order, and before the worker has recorded the provider's
/// answer: a final status is never replaced by `sent`, and a callback ends any pending resend
/// (the provider has the message).
pub(crate) fn update_status(
    conn: &mut Connection,
    delivery_id: Option<i64>,
    provider_id: &str,
    status: DeliveryStatus,
    error: Option<String>,
    now: Millis,
) -> Result<bool, StoreError> {
    let tx = immediate(conn)?;
    // The delivery the callback names, else the one with that provider id; none: no row.
    let target: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT id, status FROM deliveries
              WHERE id = coalesce(?1, (SELECT id FROM deliveries WHERE provider_id = ?2))",
        )
        .db()?
        .query_row(params![delivery_id, provider_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .db()?;
    let Some((id, before)) = target else {
        return Ok(false);
    };
    tx.prepare_cached(
        "UPDATE deliveries SET
                status = CASE WHEN ?2 != 'sent' OR status = 'queued' THEN ?2 ELSE status END,
                error = coalesce(?3, error), updated_at = ?4,
                provider_id = coalesce(provider_id, (SELECT ?5 WHERE NOT EXISTS
                                   (SELECT 1 FROM deliveries WHERE provider_id = ?5))),
                next_attempt_at = NULL
              WHERE id = ?1",
    )
    .db()?
    .execute(params![id, status.as_str(), error, now.0, provider_id])
    .db()?;
    webhooks::fire_if_status_moved(&tx, id, Some(&before), now)?;
    tx.commit().db()?;
    Ok(true)
}

pub(crate) fn next_due(conn: &mut Connection) -> Result<Option<Millis>, StoreError> {
    let at: Option<i64> = conn
        .prepare_cached(
            "SELECT min(next_attempt_at) FROM deliveries
              WHERE next_attempt_at IS NOT NULL AND claimed_by IS NULL",
        )
        .db()?
        .query_row([], |r| r.get(0))
        .db()?;
    Ok(at.map(Millis))
}

pub(crate) fn stats(
    conn: &mut Connection,
    now: Millis,
    stale_ms: i64,
) -> Result<OutboxStats, StoreError> {
    conn.prepare_cached(concat!(
        "SELECT count(*),
                coalesce(sum(",
        claimable!(),
        "), 0),
                coalesce(sum(claimed_by IS NOT NULL), 0),
                coalesce(?1 - min(CASE WHEN ",
        claimable!(),
        " THEN next_attempt_at END), 0)
           FROM deliveries WHERE next_attempt_at IS NOT NULL"
    ))
    .db()?
    // `?2` is unused: `claimable!` numbers now and the heartbeat bound `?1` and `?3`.
    .query_row(params![now.0, 0, now.0.saturating_sub(stale_ms)], |r| {
        Ok(OutboxStats {
            pending: r.get(0)?,
            due: r.get(1)?,
            claimed: r.get(2)?,
            oldest_due_ms: r.get(3)?,
        })
    })
    .db()
}

pub(crate) fn list(
    conn: &mut Connection,
    status: Option<DeliveryStatus>,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    conn.prepare_cached(
        "SELECT id, message_id, institution_id, location_id, status, attempts, next_attempt_at,
                provider_id, error, updated_at, claimed_by
           FROM deliveries WHERE ?1 IS NULL OR status = ?1
          ORDER BY id DESC LIMIT ?2",
    )
    .db()?
    .query_map(params![status.map(DeliveryStatus::as_str), limit], |r| {
        Ok(DeliveryRecord {
            id: r.get(0)?,
            message_id: r.get(1)?,
            institution_id: r.get(2)?,
            location_id: r.get(3)?,
            status: stored_status(r.get_ref(4)?.as_str()?)?,
            attempts: r.get(5)?,
            next_attempt_at: r.get::<_, Option<i64>>(6)?.map(Millis),
            provider_id: r.get(7)?,
            error: r.get(8)?,
            updated_at: Millis(r.get(9)?),
            claimed_by: r.get(10)?,
        })
    })
    .db()?
    .collect::<Result<_, _>>()
    .db()
}

pub(crate) fn retry(conn: &mut Connection, id: i64, now: Millis) -> Result<(), StoreError> {
    let tx = immediate(conn)?;
    let found: Option<(String, bool, i64)> = tx
        .prepare_cached(
            "SELECT d.status, p.unsubscribe_sms, d.message_id FROM deliveries d
               JOIN messages m INDEXED BY messages_id ON m.id = d.message_id
               JOIN conversations c ON c.id = m.conversation_id
               JOIN patients p ON p.id = c.patient_id
              WHERE d.id = ?1",
        )
        .db()?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .db()?;
    let Some((status, unsubscribed, message_id)) = found else {
        return Err(Missing::Delivery(id).into());
    };
    let status = DeliveryStatus::parse(&status)
        .ok_or_else(|| StoreError::broken(format!("delivery {id} has status `{status}`")))?;
    if !status.is_retryable() {
        return Err(Refusal::NotRetryable { id, status }.into());
    }
    if unsubscribed {
        return Err(Refusal::RetryUnsubscribed(id).into());
    }
    // A fresh start: the old provider id belongs to the attempt that failed.
    tx.prepare_cached(
        "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = ?2,
                provider_id = NULL, error = NULL, updated_at = ?2,
                claimed_by = NULL, claimed_at = NULL
          WHERE id = ?1",
    )
    .db()?
    .execute(params![id, now.0])
    .db()?;
    webhooks::fire(&tx, WebhookEvent::MessageUpdated, message_id, now)?;
    tx.commit().db()?;
    Ok(())
}

/// A stored status back to its type; anything else is a damaged row, not a client's problem.
fn stored_status(text: &str) -> rusqlite::Result<DeliveryStatus> {
    DeliveryStatus::parse(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            4,
            rusqlite::types::Type::Text,
            format!("unknown delivery status `{text}`").into(),
        )
    })
}
