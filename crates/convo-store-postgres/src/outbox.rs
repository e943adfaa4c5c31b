//! The outbox across processes: every process runs a worker; a claim is a row lock taken with
//! `FOR UPDATE SKIP LOCKED` and then an owner written on the row, so two workers never claim
//! one delivery (the SQLite statement ported as is double-claims: the notes measured 4,380 of
//! 4,620 rows claimed twice by 8 claimers). An owner keeps its claims while it heartbeats; the
//! claims of one that stopped (a killed process) are taken over by the others.

use crate::{Db, webhooks};
use convo_core::outbox::{Attempt, Delivery, DeliveryRecord, DeliveryStatus, OutboxStats};
use convo_core::webhook::WebhookEvent;
use convo_core::{Millis, Missing, Refusal, StoreError};
use deadpool_postgres::{GenericClient, Transaction};

/// Rows a worker may claim: due, and free or held by an owner that stopped heartbeating.
/// (`$1` now, `$2` the oldest heartbeat still alive, in every statement that uses it.)
macro_rules! claimable {
    () => {
        "next_attempt_at IS NOT NULL AND next_attempt_at <= $1::bigint
         AND (claimed_by IS NULL
              OR claimed_by NOT IN (SELECT id FROM workers WHERE heartbeat_at >= $2::bigint))"
    };
}

/// Whether the patient of the delivery row `$d` (an alias, with `institution_id` and
/// `message_id`) has opted out of SMS. A scalar subquery, so that it runs per row as three key
/// lookups whatever the statistics were when the generic plan was made: as `EXISTS` it became a
/// semi-join planned on empty tables that read all of an institution's messages for each row
/// (24 s per claim with a backlog of 20,000 sends, seen with auto_explain).
macro_rules! unsubscribed {
    ($d:literal) => {
        concat!(
            "coalesce((SELECT p.unsubscribe_sms FROM messages m
                        JOIN conversations c
                          ON c.institution_id = m.institution_id AND c.id = m.conversation_id
                        JOIN patients p
                          ON p.institution_id = c.institution_id AND p.id = c.patient_id
                       WHERE m.institution_id = ",
            $d,
            ".institution_id
                         AND m.id = ",
            $d,
            ".message_id), false)"
        )
    };
}

/// Where this process runs, as far as pids mean anything: the kernel's boot id and the PID
/// namespace (`None` where there is no /proc). Two workers with the same home see the same
/// pids, so one can tell whether the other's process is still alive.
fn home() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), namespace.display()))
}

fn alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A new claim owner. Several processes share the database, so only the claims of workers
/// that ran here and whose process is gone are taken back at once (a restart after a crash
/// resends at once); a dead worker elsewhere loses its claims when its heartbeat goes stale.
/// Rows of owners gone for a day are removed (their claims, if any, are claimable already).
pub(crate) async fn register_worker(tx: &Transaction<'_>, now: Millis) -> Result<i64, StoreError> {
    let day = 86_400_000;
    tx.execute(
        "DELETE FROM workers WHERE heartbeat_at < $1",
        &[&(now.0 - day)],
    )
    .await
    .db()?;
    let pid = i64::from(std::process::id());
    let home = home();
    if let Some(home) = &home {
        let dead: Vec<i64> = tx
            .query(
                "SELECT id, pid FROM workers WHERE home = $1 AND pid <> $2",
                &[home, &pid],
            )
            .await
            .db()?
            .iter()
            .filter(|r| !alive(r.get(1)))
            .map(|r| r.get(0))
            .collect();
        if !dead.is_empty() {
            let taken = release(tx, &dead).await?;
            if taken > 0 {
                tracing::info!(
                    deliveries = taken,
                    "outbox: took back the claims of a worker that did not stop cleanly"
                );
            }
        }
    }
    let row = tx
        .query_one(
            "INSERT INTO workers (started_at, heartbeat_at, pid, home) VALUES ($1, $1, $2, $3)
             RETURNING id",
            &[&now.0, &pid, &home],
        )
        .await
        .db()?;
    Ok(row.get(0))
}

pub(crate) async fn heartbeat(
    client: &impl GenericClient,
    worker: i64,
    now: Millis,
) -> Result<(), StoreError> {
    // A row removed behind the worker's back (a restore, an operator) comes back: the claims
    // it holds are still being worked on.
    let stmt = client
        .prepare_cached(
            "INSERT INTO workers (id, started_at, heartbeat_at, pid, home)
             VALUES ($1, $2, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .await
        .db()?;
    let pid = i64::from(std::process::id());
    client
        .execute(&stmt, &[&worker, &now.0, &pid, &home()])
        .await
        .db()?;
    Ok(())
}

pub(crate) async fn retire(tx: &Transaction<'_>, worker: i64) -> Result<(), StoreError> {
    release(tx, &[worker]).await.map(|_| ())
}

/// Gives the claims of `workers` back to the queue and removes the workers; how many
/// deliveries went back.
async fn release(tx: &Transaction<'_>, workers: &[i64]) -> Result<u64, StoreError> {
    let taken = tx
        .execute(
            "UPDATE deliveries SET claimed_by = NULL, claimed_at = NULL
              WHERE claimed_by = ANY($1)",
            &[&workers],
        )
        .await
        .db()?;
    tx.execute(
        "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_at = NULL
          WHERE claimed_by = ANY($1)",
        &[&workers],
    )
    .await
    .db()?;
    tx.execute(
        "UPDATE webhook_endpoints SET leased_by = NULL WHERE leased_by = ANY($1)",
        &[&workers],
    )
    .await
    .db()?;
    tx.execute("DELETE FROM workers WHERE id = ANY($1)", &[&workers])
        .await
        .db()?;
    Ok(taken)
}

pub(crate) async fn claim(
    tx: &Transaction<'_>,
    worker: i64,
    now: Millis,
    stale_ms: i64,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let alive_since = now.0.saturating_sub(stale_ms);
    // A patient who texted STOP while a send waited (a provider outage, a backoff) must not
    // get it: carriers and the law treat a text after an opt-out as a violation. The claim
    // below passes over such sends; this fails those among the ones it would take (only
    // those: a backlog is not scanned on every claim), so they leave the queue as they reach
    // its head. Rows another worker is claiming right now are skipped, as below.
    let stop = tx
        .prepare_cached(concat!(
            "WITH due AS (
                SELECT d.institution_id, d.id, d.message_id FROM deliveries d
                 WHERE ",
            claimable!(),
            "  ORDER BY next_attempt_at, id LIMIT $3
                   FOR NO KEY UPDATE OF d SKIP LOCKED),
             stopped AS (
                SELECT due.institution_id, due.id FROM due
                 WHERE ",
            unsubscribed!("due"),
            ")
             UPDATE deliveries d SET status = 'failed', next_attempt_at = NULL, updated_at = $1,
                    claimed_by = NULL, claimed_at = NULL,
                    error = 'the patient unsubscribed from SMS before it was sent'
               FROM stopped
              WHERE d.institution_id = stopped.institution_id AND d.id = stopped.id
             RETURNING d.institution_id, d.message_id"
        ))
        .await
        .db()?;
    for row in tx
        .query(&stop, &[&now.0, &alive_since, &limit])
        .await
        .db()?
    {
        webhooks::fire(
            tx,
            row.get(0),
            WebhookEvent::MessageUpdated,
            row.get(1),
            now,
        )
        .await?;
    }
    let take = tx
        .prepare_cached(concat!(
            "WITH due AS (
                SELECT institution_id, id FROM deliveries WHERE ",
            claimable!(),
            " AND NOT ",
            unsubscribed!("deliveries"),
            " ORDER BY next_attempt_at, id LIMIT $4
                FOR NO KEY UPDATE SKIP LOCKED)
             UPDATE deliveries d SET attempts = d.attempts + 1, claimed_by = $3, claimed_at = $1,
                    updated_at = $1
               FROM due
              WHERE d.institution_id = due.institution_id AND d.id = due.id
             RETURNING d.id, d.message_id, d.to_number, d.from_number, d.body, d.media_url,
                       d.attempts, d.next_attempt_at"
        ))
        .await
        .db()?;
    let mut rows = tx
        .query(&take, &[&now.0, &alive_since, &worker, &limit])
        .await
        .db()?;
    // RETURNING gives no order: the queue's.
    rows.sort_by_key(|r| (r.get::<_, Option<i64>>(7), r.get::<_, i64>(0)));
    Ok(rows
        .iter()
        .map(|r| Delivery {
            id: r.get(0),
            message_id: r.get(1),
            to: r.get(2),
            from: r.get(3),
            body: r.get(4),
            media_url: r.get(5),
            attempts: r.get(6),
        })
        .collect())
}

/// The status of delivery `id`, locked until the transaction ends (`None`: no such delivery).
async fn locked_status(tx: &Transaction<'_>, id: i64) -> Result<Option<String>, StoreError> {
    let stmt = tx
        .prepare_cached("SELECT status FROM deliveries WHERE id = $1 FOR NO KEY UPDATE")
        .await
        .db()?;
    Ok(tx.query_opt(&stmt, &[&id]).await.db()?.map(|r| r.get(0)))
}

pub(crate) async fn finish(
    tx: &Transaction<'_>,
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
    // As on SQLite: a later status from a callback is kept; once a callback has named the
    // provider's id, a timeout seen by this attempt schedules no second send; the claim is
    // released only by its owner.
    let Some(before) = locked_status(tx, id).await? else {
        return Ok(());
    };
    let stmt = tx
        .prepare_cached(
            "UPDATE deliveries SET
                status = CASE WHEN $4::text IS NULL AND provider_id IS NOT NULL THEN status
                              WHEN status IN ('delivered', 'undelivered', 'failed') THEN status
                              ELSE $2::text END,
                next_attempt_at = CASE WHEN $4::text IS NULL AND provider_id IS NOT NULL
                                       THEN next_attempt_at ELSE $3::bigint END,
                error = CASE WHEN $4::text IS NULL AND provider_id IS NOT NULL THEN error
                             ELSE $5::text END,
                provider_id = coalesce($4::text, provider_id),
                updated_at = $6,
                claimed_at = CASE WHEN claimed_by = $7 THEN NULL ELSE claimed_at END,
                claimed_by = CASE WHEN claimed_by = $7 THEN NULL ELSE claimed_by END
              WHERE id = $1",
        )
        .await
        .db()?;
    tx.execute(
        &stmt,
        &[
            &id,
            &status.as_str(),
            &next,
            &provider_id,
            &error,
            &now.0,
            &worker,
        ],
    )
    .await
    .db()?;
    webhooks::fire_if_status_moved(tx, id, &before, now).await
}

/// Status callbacks can arrive out of order, and before the worker has recorded the provider's
/// answer: a final status is never replaced by `sent`, and a callback ends any pending resend.
pub(crate) async fn update_status(
    tx: &Transaction<'_>,
    delivery_id: Option<i64>,
    provider_id: &str,
    status: DeliveryStatus,
    error: Option<String>,
    now: Millis,
) -> Result<bool, StoreError> {
    // The delivery the callback names, else the one with that provider id; none: no row.
    let target = tx
        .prepare_cached(
            "SELECT id, status FROM deliveries
              WHERE id = coalesce($1::bigint, (SELECT id FROM deliveries
                                                 WHERE provider_id = $2::text
                                                 ORDER BY id LIMIT 1))
                FOR NO KEY UPDATE",
        )
        .await
        .db()?;
    let Some(found) = tx
        .query_opt(&target, &[&delivery_id, &provider_id])
        .await
        .db()?
    else {
        return Ok(false);
    };
    let (id, before): (i64, String) = (found.get(0), found.get(1));
    let stmt = tx
        .prepare_cached(
            "UPDATE deliveries SET
                status = CASE WHEN $2::text <> 'sent' OR status = 'queued' THEN $2::text
                              ELSE status END,
                error = coalesce($3::text, error), updated_at = $4,
                provider_id = coalesce(provider_id, (SELECT $5::text WHERE NOT EXISTS
                                   (SELECT 1 FROM deliveries WHERE provider_id = $5::text))),
                next_attempt_at = NULL
              WHERE id = $1",
        )
        .await
        .db()?;
    tx.execute(
        &stmt,
        &[&id, &status.as_str(), &error, &now.0, &provider_id],
    )
    .await
    .db()?;
    webhooks::fire_if_status_moved(tx, id, &before, now).await?;
    Ok(true)
}

pub(crate) async fn next_due(client: &impl GenericClient) -> Result<Option<Millis>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT min(next_attempt_at) FROM deliveries
              WHERE next_attempt_at IS NOT NULL AND claimed_by IS NULL",
        )
        .await
        .db()?;
    let at: Option<i64> = client.query_one(&stmt, &[]).await.db()?.get(0);
    Ok(at.map(Millis))
}

pub(crate) async fn stats(
    client: &impl GenericClient,
    now: Millis,
    stale_ms: i64,
) -> Result<OutboxStats, StoreError> {
    let stmt = client
        .prepare_cached(concat!(
            "/* planned per run */
             SELECT count(*),
                    count(*) FILTER (WHERE ",
            claimable!(),
            "),
                    count(*) FILTER (WHERE claimed_by IS NOT NULL),
                    coalesce($1::bigint - min(next_attempt_at) FILTER (WHERE ",
            claimable!(),
            "), 0)
               FROM deliveries WHERE next_attempt_at IS NOT NULL"
        ))
        .await
        .db()?;
    let r = client
        .query_one(&stmt, &[&now.0, &now.0.saturating_sub(stale_ms)])
        .await
        .db()?;
    Ok(OutboxStats {
        pending: r.get(0),
        due: r.get(1),
        claimed: r.get(2),
        oldest_due_ms: r.get(3),
    })
}

pub(crate) async fn list(
    client: &impl GenericClient,
    status: Option<DeliveryStatus>,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let rows = client
        .query(
            "SELECT id, message_id, institution_id, location_id, status, attempts,
                    next_attempt_at, provider_id, error, updated_at, claimed_by
               FROM deliveries WHERE $1::text IS NULL OR status = $1::text
              ORDER BY id DESC LIMIT $2",
            &[&status.map(DeliveryStatus::as_str), &limit],
        )
        .await
        .db()?;
    rows.iter()
        .map(|r| {
            let text: &str = r.get(4);
            let status = DeliveryStatus::parse(text)
                .ok_or_else(|| StoreError::broken(format!("unknown delivery status `{text}`")))?;
            Ok(DeliveryRecord {
                id: r.get(0),
                message_id: r.get(1),
                institution_id: r.get(2),
                location_id: r.get(3),
                status,
                attempts: r.get(5),
                next_attempt_at: r.get::<_, Option<i64>>(6).map(Millis),
                provider_id: r.get(7),
                error: r.get(8),
                updated_at: Millis(r.get(9)),
                claimed_by: r.get(10),
            })
        })
        .collect()
}

pub(crate) async fn retry(tx: &Transaction<'_>, id: i64, now: Millis) -> Result<(), StoreError> {
    let found = tx
        .query_opt(
            "SELECT d.status, p.unsubscribe_sms, d.institution_id, d.message_id
               FROM deliveries d
               JOIN messages m ON m.institution_id = d.institution_id AND m.id = d.message_id
               JOIN conversations c
                 ON c.institution_id = m.institution_id AND c.id = m.conversation_id
               JOIN patients p ON p.institution_id = c.institution_id AND p.id = c.patient_id
              WHERE d.id = $1
                FOR NO KEY UPDATE OF d",
            &[&id],
        )
        .await
        .db()?;
    let Some(found) = found else {
        return Err(Missing::Delivery(id).into());
    };
    let (text, unsubscribed): (String, bool) = (found.get(0), found.get(1));
    let status = DeliveryStatus::parse(&text)
        .ok_or_else(|| StoreError::broken(format!("delivery {id} has status `{text}`")))?;
    if !status.is_retryable() {
        return Err(Refusal::NotRetryable { id, status }.into());
    }
    if unsubscribed {
        return Err(Refusal::RetryUnsubscribed(id).into());
    }
    // A fresh start: the old provider id belongs to the attempt that failed.
    tx.execute(
        "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = $2,
                provider_id = NULL, error = NULL, updated_at = $2,
                claimed_by = NULL, claimed_at = NULL
          WHERE id = $1",
        &[&id, &now.0],
    )
    .await
    .db()?;
    webhooks::fire(
        tx,
        found.get(2),
        WebhookEvent::MessageUpdated,
        found.get(3),
        now,
    )
    .await
}
