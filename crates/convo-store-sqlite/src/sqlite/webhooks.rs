//! Message webhooks on SQLite (CONTRACT §8): events frozen in the transaction of the write that
//! causes them, an API key's endpoints and subscriptions, and the deliveries the worker claims.

use super::rows::message_from;
use super::{Db, immediate};
use convo_core::outbox::{DeliveryStatus, OutboxStats};
use convo_core::webhook::{
    AttemptRecord, Claim, Claimed, Endpoint, EndpointPatch, Finished, FrozenEvent, Health,
    Subscription, SubscriptionFilter, SubscriptionPatch, WebhookEvent, WebhookJob, WebhookStatus,
    record,
};
use convo_core::{Denied, Millis, Refusal, StoreError};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use std::collections::HashMap;

/// The event of `message_id` as it is now, written when an active subscription of an active
/// endpoint of its institution wants `event`, with one delivery per such subscription. In the
/// caller's transaction: the event commits with the change or not at all.
pub(crate) fn fire(
    tx: &Transaction,
    event: WebhookEvent,
    message_id: i64,
    now: Millis,
) -> Result<(), StoreError> {
    let written = tx
        .prepare_cached(
            "INSERT INTO webhook_events (event, created_at, institution_id, location_id,
                patient_id, subdomain, tz, message_id, conversation_id, body,
                message_created_at, message_updated_at, sender_type, sender_id, seen_by,
                has_attachment, attachment_file_name, attachment_content_type,
                attachment_file_size, attachment_url, attachment_updated_at, sms_msg_id,
                is_custom_reminder_response, user_first_name, user_last_name, user_image,
                patient_first_name, patient_middle_name, patient_last_name, delivery_status,
                delivery_error)
             SELECT ?2, ?3, c.institution_id, c.location_id, c.patient_id, i.subdomain, l.tz,
                    m.id, m.conversation_id, m.body, m.created_at, m.updated_at, m.sender_type,
                    m.sender_id, m.seen_by, m.has_attachment, m.attachment_file_name,
                    m.attachment_content_type, m.attachment_file_size, m.attachment_url,
                    m.attachment_updated_at, m.sms_msg_id, m.is_custom_reminder_response,
                    u.first_name, u.last_name, u.image, sp.first_name, sp.middle_name,
                    sp.last_name, d.status, d.error
               FROM messages m INDEXED BY messages_id
               JOIN conversations c ON c.id = m.conversation_id
               JOIN institutions i ON i.id = c.institution_id
               JOIN locations l ON l.id = c.location_id
               LEFT JOIN users u ON m.sender_type = 'User' AND u.id = m.sender_id
               LEFT JOIN patients sp ON m.sender_type = 'Patient' AND sp.id = m.sender_id
               LEFT JOIN deliveries d ON m.sender_type = 'User' AND d.message_id = m.id
              WHERE m.id = ?1
                AND EXISTS (SELECT 1 FROM webhook_subscriptions s
                              JOIN webhook_endpoints e ON e.id = s.endpoint_id
                             WHERE s.institution_id = c.institution_id AND s.event = ?2
                               AND s.active AND e.active)",
        )
        .db()?
        .execute(params![message_id, event.as_str(), now.0])
        .db()?;
    if written == 0 {
        return Ok(());
    }
    let event_id = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, subscription_id, status,
            next_attempt_at, created_at, updated_at)
         SELECT ev.id, s.endpoint_id, s.id, 'pending', ?2, ?2, ?2
           FROM webhook_events ev
           JOIN webhook_subscriptions s ON s.institution_id = ev.institution_id
                                       AND s.event = ev.event AND s.active
           JOIN webhook_endpoints e ON e.id = s.endpoint_id AND e.active
          WHERE ev.id = ?1",
    )
    .db()?
    .execute(params![event_id, now.0])
    .db()?;
    Ok(())
}

/// `message_updated` for a staff message whose delivery status moved from `before`.
pub(crate) fn fire_if_status_moved(
    tx: &Transaction,
    delivery_id: i64,
    before: Option<&str>,
    now: Millis,
) -> Result<(), StoreError> {
    let after: Option<(i64, String)> = tx
        .prepare_cached("SELECT message_id, status FROM deliveries WHERE id = ?1")
        .db()?
        .query_row([delivery_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    match after {
        Some((message_id, status)) if before != Some(status.as_str()) => {
            fire(tx, WebhookEvent::MessageUpdated, message_id, now)
        }
        _ => Ok(()),
    }
}

pub(crate) fn institution_for_key(
    conn: &Connection,
    key_id: i64,
    subdomain: &str,
) -> Result<Result<i64, Denied>, StoreError> {
    let row: Option<(Option<i64>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT k.revoked_at, i.id FROM api_keys k
               LEFT JOIN institutions i
                      ON i.subdomain = ?2 COLLATE NOCASE
                     AND EXISTS (SELECT 1 FROM api_key_institutions ki
                                  WHERE ki.key_id = k.id AND ki.institution_id = i.id)
              WHERE k.id = ?1",
        )
        .db()?
        .query_row(params![key_id, subdomain], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    Ok(match row {
        Some((None, Some(institution))) => Ok(institution),
        Some((None, None)) => Err(Denied::Forbidden {
            subdomain: subdomain.to_string(),
        }),
        _ => Err(Denied::Revoked),
    })
}

const ENDPOINT_COLUMNS: &str = "id, target_url, secret_key, active, created_at, updated_at";

fn endpoint_from(r: &Row) -> rusqlite::Result<Endpoint> {
    Ok(Endpoint {
        id: r.get(0)?,
        target_url: r.get(1)?,
        secret_key: r.get(2)?,
        active: r.get(3)?,
        created_at: Millis(r.get(4)?),
        updated_at: Millis(r.get(5)?),
    })
}

pub(crate) fn create_endpoint(
    conn: &mut Connection,
    key_id: i64,
    target_url: &str,
    secret_key: &str,
    active: bool,
    now: Millis,
) -> Result<Endpoint, StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO webhook_endpoints (api_key_id, target_url, secret_key, active, created_at,
            updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING {ENDPOINT_COLUMNS}"
    ))
    .db()?
    .query_row(
        params![key_id, target_url, secret_key, active, now.0],
        endpoint_from,
    )
    .db()
}

pub(crate) fn list_endpoints(
    conn: &Connection,
    key_id: i64,
    active: Option<bool>,
) -> Result<Vec<Endpoint>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
          WHERE api_key_id = ?1 AND (?2 IS NULL OR active = ?2) ORDER BY id"
    ))
    .db()?
    .query_map(params![key_id, active], endpoint_from)
    .db()?
    .collect::<Result<_, _>>()
    .db()
}

pub(crate) fn update_endpoint(
    conn: &mut Connection,
    key_id: i64,
    id: i64,
    patch: &EndpointPatch,
    now: Millis,
) -> Result<Option<Endpoint>, StoreError> {
    // Re-activating ends the failing state: the 48 hours start again from the next failure.
    conn.prepare_cached(&format!(
        "UPDATE webhook_endpoints SET
            target_url = coalesce(?3, target_url),
            active = coalesce(?4, active),
            failing_since = CASE WHEN ?4 THEN NULL ELSE failing_since END,
            updated_at = ?5
          WHERE id = ?2 AND api_key_id = ?1 RETURNING {ENDPOINT_COLUMNS}"
    ))
    .db()?
    .query_row(
        params![key_id, id, patch.target_url, patch.active, now.0],
        endpoint_from,
    )
    .optional()
    .db()
}

fn owns_endpoint(tx: &Connection, key_id: i64, id: i64) -> Result<bool, StoreError> {
    tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = ?2 AND api_key_id = ?1)",
    )
    .db()?
    .query_row(params![key_id, id], |r| r.get(0))
    .db()
}

pub(crate) fn delete_endpoint(
    conn: &mut Connection,
    key_id: i64,
    id: i64,
) -> Result<bool, StoreError> {
    let tx = immediate(conn)?;
    if !owns_endpoint(&tx, key_id, id)? {
        return Ok(false);
    }
    // Its pending deliveries go; finished ones are left to the retention purge.
    tx.execute(
        "DELETE FROM webhook_deliveries INDEXED BY webhook_deliveries_endpoint_due
          WHERE endpoint_id = ?1 AND next_attempt_at IS NOT NULL",
        [id],
    )
    .db()?;
    tx.execute(
        "DELETE FROM webhook_subscriptions WHERE endpoint_id = ?1",
        [id],
    )
    .db()?;
    tx.execute("DELETE FROM webhook_endpoints WHERE id = ?1", [id])
        .db()?;
    tx.commit().db()?;
    Ok(true)
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, endpoint_id, institution_id, event, active, created_at, updated_at";

fn subscription_from(r: &Row) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        id: r.get(0)?,
        endpoint_id: r.get(1)?,
        institution_id: r.get(2)?,
        event: stored_event(r, 3)?,
        active: r.get(4)?,
        created_at: Millis(r.get(5)?),
        updated_at: Millis(r.get(6)?),
    })
}

/// A stored event name back to its type; anything else is a damaged row.
fn stored_event(r: &Row, i: usize) -> rusqlite::Result<WebhookEvent> {
    let text = r.get_ref(i)?.as_str()?;
    WebhookEvent::parse(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            Type::Text,
            format!("unknown webhook event `{text}`").into(),
        )
    })
}

pub(crate) fn list_subscriptions(
    conn: &Connection,
    key_id: i64,
    endpoint_id: i64,
    filter: &SubscriptionFilter,
) -> Result<Option<Vec<Subscription>>, StoreError> {
    if !owns_endpoint(conn, key_id, endpoint_id)? {
        return Ok(None);
    }
    conn.prepare_cached(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions
          WHERE endpoint_id = ?1 AND (?2 IS NULL OR institution_id = ?2)
            AND (?3 IS NULL OR event = ?3)
          ORDER BY id"
    ))
    .db()?
    .query_map(
        params![
            endpoint_id,
            filter.institution_id,
            filter.event.map(WebhookEvent::as_str)
        ],
        subscription_from,
    )
    .db()?
    .collect::<Result<_, _>>()
    .db()
    .map(Some)
}

pub(crate) fn create_subscription(
    conn: &mut Connection,
    key_id: i64,
    endpoint_id: i64,
    (institution_id, event): (i64, WebhookEvent),
    active: bool,
    now: Millis,
) -> Result<Option<Subscription>, StoreError> {
    let tx = immediate(conn)?;
    if !owns_endpoint(&tx, key_id, endpoint_id)? {
        return Ok(None);
    }
    let sub = tx
        .prepare_cached(&format!(
            "INSERT INTO webhook_subscriptions (endpoint_id, institution_id, event, active,
                created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (endpoint_id, institution_id, event)
             DO UPDATE SET active = excluded.active, updated_at = excluded.updated_at
             RETURNING {SUBSCRIPTION_COLUMNS}"
        ))
        .db()?
        .query_row(
            params![endpoint_id, institution_id, event.as_str(), active, now.0],
            subscription_from,
        )
        .db()?;
    tx.commit().db()?;
    Ok(Some(sub))
}

pub(crate) fn update_subscription(
    conn: &mut Connection,
    key_id: i64,
    (endpoint_id, id, institution_id): (i64, i64, i64),
    patch: &SubscriptionPatch,
    now: Millis,
) -> Result<Option<Subscription>, StoreError> {
    let tx = immediate(conn)?;
    if !owns_endpoint(&tx, key_id, endpoint_id)? {
        return Ok(None);
    }
    let target = patch.new_endpoint_id.unwrap_or(endpoint_id);
    if target != endpoint_id {
        if !owns_endpoint(&tx, key_id, target)? {
            return Ok(None);
        }
        let clash: Option<i64> = tx
            .prepare_cached(
                "SELECT t.id FROM webhook_subscriptions s
                   JOIN webhook_subscriptions t ON t.endpoint_id = ?2
                    AND t.institution_id = s.institution_id AND t.event = s.event
                  WHERE s.id = ?1",
            )
            .db()?
            .query_row(params![id, target], |r| r.get(0))
            .optional()
            .db()?;
        if let Some(subscription_id) = clash {
            return Err(Refusal::SubscriptionExists {
                endpoint_id: target,
                subscription_id,
            }
            .into());
        }
    }
    let sub = tx
        .prepare_cached(&format!(
            "UPDATE webhook_subscriptions SET active = coalesce(?4, active), endpoint_id = ?5,
                    updated_at = ?6
              WHERE id = ?2 AND endpoint_id = ?1 AND institution_id = ?3
             RETURNING {SUBSCRIPTION_COLUMNS}"
        ))
        .db()?
        .query_row(
            params![endpoint_id, id, institution_id, patch.active, target, now.0],
            subscription_from,
        )
        .optional()
        .db()?;
    if sub.is_some() && target != endpoint_id {
        // Its pending deliveries follow it (signed with the new endpoint's secret).
        tx.prepare_cached(
            "UPDATE webhook_deliveries INDEXED BY webhook_deliveries_endpoint_due
                SET endpoint_id = ?2, updated_at = ?3
              WHERE endpoint_id = ?4 AND next_attempt_at IS NOT NULL AND subscription_id = ?1",
        )
        .db()?
        .execute(params![id, target, now.0, endpoint_id])
        .db()?;
    }
    tx.commit().db()?;
    Ok(sub)
}

pub(crate) fn delete_subscription(
    conn: &mut Connection,
    key_id: i64,
    endpoint_id: i64,
    id: i64,
) -> Result<bool, StoreError> {
    let tx = immediate(conn)?;
    if !owns_endpoint(&tx, key_id, endpoint_id)? {
        return Ok(false);
    }
    let gone = tx
        .execute(
            "DELETE FROM webhook_subscriptions WHERE id = ?1 AND endpoint_id = ?2",
            params![id, endpoint_id],
        )
        .db()?;
    if gone > 0 {
        // Its pending deliveries stop; finished ones are left to the retention purge.
        tx.execute(
            "DELETE FROM webhook_deliveries INDEXED BY webhook_deliveries_endpoint_due
              WHERE endpoint_id = ?2 AND next_attempt_at IS NOT NULL AND subscription_id = ?1",
            params![id, endpoint_id],
        )
        .db()?;
    }
    tx.commit().db()?;
    Ok(gone > 0)
}

/// Deliveries a worker may claim: due, of an active subscription of an active endpoint, and
/// free or held by an owner that stopped heartbeating (`?1` now, `?3` the oldest live
/// heartbeat).
macro_rules! claimable_from {
    () => {
        "FROM webhook_deliveries d
           JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.active
           JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
          WHERE d.next_attempt_at IS NOT NULL AND d.next_attempt_at <= ?1
            AND (d.claimed_by IS NULL
                 OR d.claimed_by NOT IN (SELECT id FROM workers WHERE heartbeat_at >= ?3))"
    };
}

/// The job of a claimed delivery: the frozen message first, in `message_from`'s order.
const JOB_SQL: &str = "
SELECT ev.message_id, ev.conversation_id, ev.body, ev.message_created_at, ev.message_updated_at,
       ev.sender_type, ev.sender_id, ev.seen_by, ev.has_attachment, ev.attachment_file_name,
       ev.attachment_content_type, ev.attachment_file_size, ev.attachment_url,
       ev.attachment_updated_at, ev.sms_msg_id, ev.is_custom_reminder_response,
       ev.user_first_name, ev.user_last_name, ev.user_image, ev.patient_first_name,
       ev.patient_middle_name, ev.patient_last_name,
       ev.id, ev.event, ev.created_at, ev.subdomain, ev.institution_id, ev.location_id,
       ev.patient_id, ev.tz, ev.delivery_status, ev.delivery_error,
       d.id, d.endpoint_id, e.target_url, e.secret_key, d.attempts + 1, d.first_attempt_at,
       d.errors
  FROM webhook_deliveries d
  JOIN webhook_endpoints e ON e.id = d.endpoint_id
  JOIN webhook_events ev ON ev.id = d.event_id
 WHERE d.id = ?1";

fn job_from(r: &Row) -> rusqlite::Result<WebhookJob> {
    let message = message_from(r)?;
    let delivery = match r.get_ref(30)?.as_str_or_null()? {
        None => None,
        Some(text) => Some((
            DeliveryStatus::parse(text).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    30,
                    Type::Text,
                    format!("unknown delivery status `{text}`").into(),
                )
            })?,
            r.get(31)?,
        )),
    };
    let errors_text: String = r.get(38)?;
    let errors = serde_json::from_str(&errors_text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(38, Type::Text, Box::new(e)))?;
    Ok(WebhookJob {
        id: r.get(32)?,
        endpoint_id: r.get(33)?,
        target_url: r.get(34)?,
        secret_key: r.get(35)?,
        attempts: r.get(36)?,
        first_attempt_at: r.get::<_, Option<i64>>(37)?.map(Millis),
        errors,
        event: FrozenEvent {
            id: r.get(22)?,
            name: stored_event(r, 23)?,
            time: Millis(r.get(24)?),
            subdomain: r.get(25)?,
            institution_id: r.get(26)?,
            location_id: r.get(27)?,
            patient_id: r.get(28)?,
            zone: r.get(29)?,
            message,
            delivery,
        },
    })
}

/// One trip of the worker's (`WebhookStore::claim_webhooks`): record, recheck, lease and
/// claim, give back idle leases.
pub(crate) fn claim(
    conn: &mut Connection,
    worker: i64,
    ask: &OwnedAsk,
    now: Millis,
    stale_ms: i64,
) -> Result<Claim, StoreError> {
    let tx = immediate(conn)?;
    finish_batch(&tx, worker, &ask.finished, now)?;
    let kept = recheck(&tx, worker, &ask.recheck)?;
    let alive_since = now.0.saturating_sub(stale_ms);
    let jobs = if ask.limit > 0 {
        take(&tx, worker, now, alive_since, (ask.limit, ask.ahead))?
    } else {
        Vec::new()
    };
    release_idle_leases(&tx, worker)?;
    tx.commit().db()?;
    Ok(Claim { jobs, kept })
}

/// `ClaimAsk` with its slices owned, to cross to the writer's thread.
pub(crate) struct OwnedAsk {
    pub finished: Vec<Finished>,
    pub recheck: Vec<i64>,
    pub limit: i64,
    pub ahead: i64,
}

/// Which of `ids` may still go: pending, claimed by `worker`, of an active subscription of an
/// active endpoint. The others `worker` still holds are given back.
fn recheck(tx: &Transaction, worker: i64, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let mut kept = Vec::with_capacity(ids.len());
    let mut live = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries d
                  JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.active
                  JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
                 WHERE d.id = ?1 AND d.claimed_by = ?2 AND d.next_attempt_at IS NOT NULL)",
        )
        .db()?;
    let mut give_back = tx
        .prepare_cached(
            "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_at = NULL
              WHERE id = ?1 AND claimed_by = ?2",
        )
        .db()?;
    for &id in ids {
        if live.query_row(params![id, worker], |r| r.get(0)).db()? {
            kept.push(id);
        } else {
            give_back.execute(params![id, worker]).db()?;
        }
    }
    Ok(kept)
}

/// Leases what is free and due, then claims per leased endpoint its oldest due deliveries up
/// to `ahead` held (an index range each), and of those the oldest overall up to `limit`.
fn take(
    tx: &Transaction,
    worker: i64,
    now: Millis,
    alive_since: i64,
    (limit, ahead): (i64, i64),
) -> Result<Vec<WebhookJob>, StoreError> {
    tx.prepare_cached(
        "UPDATE webhook_endpoints SET leased_by = ?1
          WHERE active
            AND (leased_by IS NULL
                 OR (leased_by != ?1
                     AND leased_by NOT IN (SELECT id FROM workers WHERE heartbeat_at >= ?3)))
            AND EXISTS (SELECT 1 FROM webhook_deliveries d
                          INDEXED BY webhook_deliveries_endpoint_due
                         WHERE d.endpoint_id = webhook_endpoints.id
                           AND d.next_attempt_at IS NOT NULL AND d.next_attempt_at <= ?2)",
    )
    .db()?
    .execute(params![worker, now.0, alive_since])
    .db()?;
    let held: HashMap<i64, i64> = tx
        .prepare_cached(
            "SELECT endpoint_id, count(*) FROM webhook_deliveries INDEXED BY webhook_deliveries_claimed
              WHERE claimed_by IS NOT NULL AND claimed_by = ?1
              GROUP BY endpoint_id",
        )
        .db()?
        .query_map([worker], |r| Ok((r.get(0)?, r.get(1)?)))
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let leased: Vec<i64> = tx
        .prepare_cached(
            "SELECT id FROM webhook_endpoints WHERE leased_by = ?1 AND active ORDER BY id",
        )
        .db()?
        .query_map([worker], |r| r.get(0))
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let mut due: Vec<(i64, i64)> = Vec::new();
    {
        let mut oldest = tx
            .prepare_cached(
                "SELECT d.next_attempt_at, d.id FROM webhook_deliveries d
                   INDEXED BY webhook_deliveries_endpoint_due
                   JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
                  WHERE d.endpoint_id = ?1 AND d.next_attempt_at IS NOT NULL
                    AND d.next_attempt_at <= ?2
                    AND (d.claimed_by IS NULL
                         OR d.claimed_by NOT IN (SELECT id FROM workers WHERE heartbeat_at >= ?3))
                  ORDER BY d.next_attempt_at, d.id LIMIT ?4",
            )
            .db()?;
        for endpoint in leased {
            let free = ahead - held.get(&endpoint).copied().unwrap_or(0);
            if free <= 0 {
                continue;
            }
            let rows = oldest
                .query_map(params![endpoint, now.0, alive_since, free], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .db()?;
            for row in rows {
                due.push(row.db()?);
            }
        }
    }
    due.sort_unstable();
    due.truncate(usize::try_from(limit).unwrap_or(0));
    let mut jobs = Vec::with_capacity(due.len());
    let mut claim = tx
        .prepare_cached(
            "UPDATE webhook_deliveries SET claimed_by = ?2, claimed_at = ?3 WHERE id = ?1",
        )
        .db()?;
    let mut job = tx.prepare_cached(JOB_SQL).db()?;
    for (_, id) in due {
        claim.execute(params![id, worker, now.0]).db()?;
        jobs.push(job.query_row([id], job_from).db()?);
    }
    Ok(jobs)
}

/// Gives back the leases of endpoints where `worker` holds no claim: an endpoint with nothing
/// to deliver is anyone's again.
fn release_idle_leases(tx: &Transaction, worker: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE webhook_endpoints SET leased_by = NULL
          WHERE leased_by = ?1
            AND id NOT IN (SELECT endpoint_id FROM webhook_deliveries
                             INDEXED BY webhook_deliveries_claimed
                            WHERE claimed_by IS NOT NULL AND claimed_by = ?1)",
    )
    .db()?
    .execute([worker])
    .db()?;
    Ok(())
}

pub(crate) fn finish(
    conn: &mut Connection,
    worker: i64,
    results: &[Finished],
    now: Millis,
) -> Result<(), StoreError> {
    let tx = immediate(conn)?;
    finish_batch(&tx, worker, results, now)?;
    release_idle_leases(&tx, worker)?;
    tx.commit().db()
}

/// Records a batch of attempts: what each found delivery and its endpoint are now, the same
/// fold on every engine (`webhook::record`), then its rows; each endpoint is written once.
fn finish_batch(
    tx: &Transaction,
    worker: i64,
    results: &[Finished],
    now: Millis,
) -> Result<(), StoreError> {
    if results.is_empty() {
        return Ok(());
    }
    let mut found: HashMap<i64, Claimed> = HashMap::with_capacity(results.len());
    let mut health: HashMap<i64, Health> = HashMap::new();
    {
        let mut delivery = tx
            .prepare_cached(
                "SELECT d.endpoint_id, d.event_id, ev.event, d.claimed_by, d.first_attempt_at,
                        d.errors
                   FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
                  WHERE d.id = ?1",
            )
            .db()?;
        let mut endpoint = tx
            .prepare_cached(
                "SELECT failing_since, last_success_at FROM webhook_endpoints WHERE id = ?1",
            )
            .db()?;
        for Finished {
            delivery_id: id, ..
        } in results
        {
            // Deleted meanwhile (its subscription or endpoint went): nothing is left to record.
            let Some(claimed) = delivery
                .query_row([id], |r| {
                    Ok(Claimed {
                        endpoint_id: r.get(0)?,
                        event_id: r.get(1)?,
                        event: stored_event(r, 2)?,
                        claimed_by: r.get(3)?,
                        first_attempt_at: r.get::<_, Option<i64>>(4)?.map(Millis),
                        errors: r.get(5)?,
                    })
                })
                .optional()
                .db()?
            else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(slot) =
                health.entry(claimed.endpoint_id)
            {
                let h = endpoint
                    .query_row([claimed.endpoint_id], |r| {
                        Ok(Health {
                            failing_since: r.get::<_, Option<i64>>(0)?.map(Millis),
                            last_success_at: r.get::<_, Option<i64>>(1)?.map(Millis),
                        })
                    })
                    .optional()
                    .db()?
                    .unwrap_or_default();
                slot.insert(h);
            }
            found.insert(*id, claimed);
        }
    }
    let recorded = record(worker, results, &found, &health, now).map_err(StoreError::fault)?;
    let mut attempt = tx
        .prepare_cached(
            "INSERT INTO webhook_attempts (delivery_id, event_id, endpoint_id, event, at, outcome,
                http_status, error, took_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .db()?;
    for a in &recorded.attempts {
        attempt
            .execute(params![
                a.delivery_id,
                a.event_id,
                a.endpoint_id,
                a.event.as_str(),
                now.0,
                a.outcome.as_str(),
                a.http_status,
                a.error,
                a.took_ms
            ])
            .db()?;
    }
    // A delivery to retry stays pending, one attempt more, its claim released.
    let mut release = tx
        .prepare_cached(
            "UPDATE webhook_deliveries SET next_attempt_at = ?2, errors = ?3,
                    claimed_by = NULL, claimed_at = NULL, updated_at = ?4,
                    attempts = attempts + 1, first_attempt_at = ?5
              WHERE id = ?1",
        )
        .db()?;
    // A settled delivery (delivered, or given up) goes: its attempt rows are its history, and
    // the table holds what is still to be sent (as on PostgreSQL, where settled rows left in
    // the queue slowed every claim until a vacuum).
    let mut settle = tx
        .prepare_cached("DELETE FROM webhook_deliveries WHERE id = ?1")
        .db()?;
    for d in &recorded.deliveries {
        if d.status != WebhookStatus::Pending {
            settle.execute([d.id]).db()?;
            continue;
        }
        release
            .execute(params![
                d.id,
                d.next_attempt_at.map(|at| at.0),
                d.errors,
                now.0,
                d.first_attempt_at.0
            ])
            .db()?;
    }
    let mut endpoint = tx
        .prepare_cached(
            "UPDATE webhook_endpoints SET failing_since = ?2, last_success_at = ?3,
                    active = CASE WHEN ?4 THEN 0 ELSE active END,
                    updated_at = CASE WHEN ?4 AND active THEN ?5 ELSE updated_at END
              WHERE id = ?1",
        )
        .db()?;
    for e in &recorded.endpoints {
        endpoint
            .execute(params![
                e.id,
                e.health.failing_since.map(|at| at.0),
                e.health.last_success_at.map(|at| at.0),
                e.deactivate,
                now.0
            ])
            .db()?;
        if e.deactivate {
            tracing::warn!(
                endpoint_id = e.id,
                "webhooks: endpoint deactivated after failing"
            );
        }
    }
    Ok(())
}

pub(crate) fn next_due(conn: &Connection) -> Result<Option<Millis>, StoreError> {
    let at: Option<i64> = conn
        .prepare_cached(
            "SELECT min((SELECT d.next_attempt_at FROM webhook_deliveries d
                            INDEXED BY webhook_deliveries_endpoint_due
                            JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
                           WHERE d.endpoint_id = e.id AND d.next_attempt_at IS NOT NULL
                             AND d.claimed_by IS NULL
                           ORDER BY d.next_attempt_at LIMIT 1))
               FROM webhook_endpoints e WHERE e.active",
        )
        .db()?
        .query_row([], |r| r.get(0))
        .db()?;
    Ok(at.map(Millis))
}

pub(crate) fn stats(
    conn: &Connection,
    now: Millis,
    stale_ms: i64,
) -> Result<OutboxStats, StoreError> {
    let alive_since = now.0.saturating_sub(stale_ms);
    let (pending, claimed): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(claimed_by IS NOT NULL), 0)
               FROM webhook_deliveries WHERE next_attempt_at IS NOT NULL",
        )
        .db()?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .db()?;
    let (due, oldest): (i64, Option<i64>) = conn
        .prepare_cached(concat!(
            "SELECT count(*), min(d.next_attempt_at) ",
            claimable_from!()
        ))
        .db()?
        // `?2` is unused: `claimable_from!` numbers now and the heartbeat bound `?1` and `?3`.
        .query_row(params![now.0, 0, alive_since], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .db()?;
    Ok(OutboxStats {
        pending,
        due,
        claimed,
        oldest_due_ms: oldest.map_or(0, |at| now.0.saturating_sub(at)),
    })
}

pub(crate) fn attempts(
    conn: &Connection,
    endpoint_id: Option<i64>,
    outcome: Option<WebhookStatus>,
    limit: i64,
) -> Result<Vec<AttemptRecord>, StoreError> {
    conn.prepare_cached(
        "SELECT id, delivery_id, event_id, endpoint_id, event, at, outcome, http_status, error,
                took_ms
           FROM webhook_attempts
          WHERE (?1 IS NULL OR endpoint_id = ?1) AND (?2 IS NULL OR outcome = ?2)
          ORDER BY id DESC LIMIT ?3",
    )
    .db()?
    .query_map(
        params![endpoint_id, outcome.map(WebhookStatus::as_str), limit],
        |r| {
            let text = r.get_ref(6)?.as_str()?;
            let outcome = WebhookStatus::parse(text).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    6,
                    Type::Text,
                    format!("unknown attempt outcome `{text}`").into(),
                )
            })?;
            Ok(AttemptRecord {
                id: r.get(0)?,
                delivery_id: r.get(1)?,
                event_id: r.get(2)?,
                endpoint_id: r.get(3)?,
                event: stored_event(r, 4)?,
                at: Millis(r.get(5)?),
                outcome,
                http_status: r.get(7)?,
                error: r.get(8)?,
                took_ms: r.get(9)?,
            })
        },
    )
    .db()?
    .collect::<Result<_, _>>()
    .db()
}

pub(crate) fn replay(
    conn: &mut Connection,
    endpoint_id: i64,
    since: Millis,
    now: Millis,
) -> Result<Option<i64>, StoreError> {
    let tx = immediate(conn)?;
    let exists: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = ?1)")
        .db()?
        .query_row([endpoint_id], |r| r.get(0))
        .db()?;
    if !exists {
        return Ok(None);
    }
    let queued = tx
        .prepare_cached(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, subscription_id, status,
                next_attempt_at, created_at, updated_at)
             SELECT ev.id, s.endpoint_id, s.id, 'pending', ?3, ?3, ?3
               FROM webhook_subscriptions s
               JOIN webhook_events ev ON ev.institution_id = s.institution_id
                                     AND ev.event = s.event AND ev.created_at >= ?2
              WHERE s.endpoint_id = ?1
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                 WHERE d.event_id = ev.id AND d.endpoint_id = ?1
                                   AND d.status = 'pending')
              ORDER BY ev.id",
        )
        .db()?
        .execute(params![endpoint_id, since.0, now.0])
        .db()?;
    tx.commit().db()?;
    Ok(Some(i64::try_from(queued).unwrap_or(i64::MAX)))
}

pub(crate) fn purge(conn: &mut Connection, before: Millis) -> Result<i64, StoreError> {
    let tx = immediate(conn)?;
    tx.execute("DELETE FROM webhook_attempts WHERE at < ?1", [before.0])
        .db()?;
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE status != 'pending' AND created_at < ?1",
        [before.0],
    )
    .db()?;
    let events = tx
        .execute(
            "DELETE FROM webhook_events WHERE created_at < ?1
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                 WHERE d.event_id = webhook_events.id)",
            [before.0],
        )
        .db()?;
    tx.commit().db()?;
    Ok(i64::try_from(events).unwrap_or(i64::MAX))
}
