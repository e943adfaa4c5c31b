//! Message webhooks on PostgreSQL (CONTRACT §8): events frozen in the transaction of the write
//! that causes them, an API key's endpoints and subscriptions, and deliveries claimed across
//! processes as the SMS outbox's are (owners that heartbeat), an endpoint's by the one process
//! that leases it, leasing and claiming one process at a time.

use crate::Db;
use crate::pipeline::pipelined;
use crate::rows::{message_columns, message_from};
use crate::store::plan_for_now;
use convo_core::outbox::{DeliveryStatus, OutboxStats};
use convo_core::webhook::{
    AttemptRecord, Claim, ClaimAsk, Claimed, Endpoint, EndpointPatch, Finished, FrozenEvent,
    Health, Recorded, Subscription, SubscriptionFilter, SubscriptionPatch, WebhookEvent,
    WebhookJob, WebhookStatus, record,
};
use convo_core::{Millis, Refusal, StoreError};
use deadpool_postgres::{GenericClient, Transaction};
use std::collections::HashMap;
use tokio_postgres::Row;

/// The event of message `$2` of institution `$1` as it is now (`$3` the event, `$4` its time),
/// written when an active subscription of an active endpoint wants it, with the ids of those
/// subscriptions queued for the worker to turn into deliveries: one statement, in the caller's
/// transaction, after the write it reports.
const FIRE_SQL: &str = concat!(
    "WITH subs AS (
        SELECT array_agg(s.id ORDER BY s.id) AS ids
          FROM webhook_subscriptions s
          JOIN webhook_endpoints e ON e.id = s.endpoint_id AND e.active
         WHERE s.institution_id = $1 AND s.event = $3::text AND s.active),
     ev AS (
        INSERT INTO webhook_events (event, created_at, institution_id, location_id, patient_id,
            subdomain, tz, message_id, conversation_id, body, message_created_at,
            message_updated_at, sender_type, sender_id, seen_by, has_attachment,
            attachment_file_name, attachment_content_type, attachment_file_size, attachment_url,
            attachment_updated_at, sms_msg_id, is_custom_reminder_response, user_first_name,
            user_last_name, user_image, patient_first_name, patient_middle_name,
            patient_last_name, delivery_status, delivery_error)
        SELECT $3::text, $4::bigint, $1::bigint, c.location_id, c.patient_id, i.subdomain, l.tz, ",
    message_columns!(),
    ", sp.first_name, sp.middle_name, sp.last_name, d.status, d.error
          FROM subs, messages m
          JOIN conversations c ON c.institution_id = m.institution_id AND c.id = m.conversation_id
          JOIN institutions i ON i.id = m.institution_id
          JOIN locations l ON l.institution_id = c.institution_id AND l.id = c.location_id
          LEFT JOIN users u
                 ON m.sender_type = 'User' AND u.institution_id = $1 AND u.id = m.sender_id
          LEFT JOIN patients sp
                 ON m.sender_type = 'Patient' AND sp.institution_id = $1 AND sp.id = m.sender_id
          LEFT JOIN deliveries d
                 ON m.sender_type = 'User' AND d.institution_id = $1 AND d.message_id = m.id
         WHERE m.institution_id = $1 AND m.id = $2 AND subs.ids IS NOT NULL
        RETURNING id)
     INSERT INTO webhook_fanout (event_id, created_at, subscription_ids)
     SELECT ev.id, $4, subs.ids FROM ev, subs"
);

pub(crate) async fn fire(
    tx: &Transaction<'_>,
    inst: i64,
    event: WebhookEvent,
    message_id: i64,
    at: Millis,
) -> Result<(), StoreError> {
    let stmt = tx.prepare_cached(FIRE_SQL).await.db()?;
    tx.execute(&stmt, &[&inst, &message_id, &event.as_str(), &at.0])
        .await
        .db()?;
    Ok(())
}

/// `message_updated` for delivery `id` when its status is no longer `before`.
pub(crate) async fn fire_if_status_moved(
    tx: &Transaction<'_>,
    id: i64,
    before: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("SELECT institution_id, message_id, status FROM deliveries WHERE id = $1")
        .await
        .db()?;
    if let Some(row) = tx.query_opt(&stmt, &[&id]).await.db()? {
        let status: &str = row.get(2);
        if status != before {
            fire(
                tx,
                row.get(0),
                WebhookEvent::MessageUpdated,
                row.get(1),
                now,
            )
            .await?;
        }
    }
    Ok(())
}

const ENDPOINT_COLUMNS: &str = "id, target_url, secret_key, active, created_at, updated_at";

fn endpoint_from(r: &Row) -> Endpoint {
    Endpoint {
        id: r.get(0),
        target_url: r.get(1),
        secret_key: r.get(2),
        active: r.get(3),
        created_at: Millis(r.get(4)),
        updated_at: Millis(r.get(5)),
    }
}

pub(crate) async fn create_endpoint(
    client: &impl GenericClient,
    key_id: i64,
    (target_url, secret_key, active): (&str, &str, bool),
    now: Millis,
) -> Result<Endpoint, StoreError> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO webhook_endpoints (api_key_id, target_url, secret_key, active,
                    created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
                 RETURNING {ENDPOINT_COLUMNS}"
            ),
            &[&key_id, &target_url, &secret_key, &active, &now.0],
        )
        .await
        .db()?;
    Ok(endpoint_from(&row))
}

pub(crate) async fn list_endpoints(
    client: &impl GenericClient,
    key_id: i64,
    active: Option<bool>,
) -> Result<Vec<Endpoint>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                  WHERE api_key_id = $1 AND ($2::boolean IS NULL OR active = $2) ORDER BY id"
            ),
            &[&key_id, &active],
        )
        .await
        .db()?;
    Ok(rows.iter().map(endpoint_from).collect())
}

pub(crate) async fn update_endpoint(
    client: &impl GenericClient,
    (key_id, id): (i64, i64),
    patch: &EndpointPatch,
    now: Millis,
) -> Result<Option<Endpoint>, StoreError> {
    // Re-activating ends the failing state: the 48 hours start again from the next failure.
    let row = client
        .query_opt(
            &format!(
                "UPDATE webhook_endpoints SET
                    target_url = coalesce($3, target_url),
                    active = coalesce($4, active),
                    failing_since = CASE WHEN $4 THEN NULL ELSE failing_since END,
                    updated_at = $5
                  WHERE id = $2 AND api_key_id = $1 RETURNING {ENDPOINT_COLUMNS}"
            ),
            &[&key_id, &id, &patch.target_url, &patch.active, &now.0],
        )
        .await
        .db()?;
    Ok(row.as_ref().map(endpoint_from))
}

/// Whether key `key_id` has endpoint `id`, locking it so that what follows sees it stay.
async fn owns_endpoint(tx: &Transaction<'_>, key_id: i64, id: i64) -> Result<bool, StoreError> {
    let row = tx
        .query_opt(
            "SELECT 1 FROM webhook_endpoints WHERE id = $2 AND api_key_id = $1 FOR UPDATE",
            &[&key_id, &id],
        )
        .await
        .db()?;
    Ok(row.is_some())
}

pub(crate) async fn delete_endpoint(
    tx: &Transaction<'_>,
    key_id: i64,
    id: i64,
) -> Result<bool, StoreError> {
    if !owns_endpoint(tx, key_id, id).await? {
        return Ok(false);
    }
    // Its pending deliveries go; finished ones are left to the retention purge.
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND next_attempt_at IS NOT NULL",
        &[&id],
    )
    .await
    .db()?;
    tx.execute(
        "DELETE FROM webhook_subscriptions WHERE endpoint_id = $1",
        &[&id],
    )
    .await
    .db()?;
    tx.execute("DELETE FROM webhook_endpoints WHERE id = $1", &[&id])
        .await
        .db()?;
    Ok(true)
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, endpoint_id, institution_id, event, active, created_at, updated_at";

fn stored_event(text: &str) -> Result<WebhookEvent, StoreError> {
    WebhookEvent::parse(text)
        .ok_or_else(|| StoreError::broken(format!("unknown webhook event `{text}`")))
}

fn subscription_from(r: &Row) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        id: r.get(0),
        endpoint_id: r.get(1),
        institution_id: r.get(2),
        event: stored_event(r.get(3))?,
        active: r.get(4),
        created_at: Millis(r.get(5)),
        updated_at: Millis(r.get(6)),
    })
}

pub(crate) async fn list_subscriptions(
    tx: &Transaction<'_>,
    (key_id, endpoint_id): (i64, i64),
    filter: &SubscriptionFilter,
) -> Result<Option<Vec<Subscription>>, StoreError> {
    if !owns_endpoint(tx, key_id, endpoint_id).await? {
        return Ok(None);
    }
    let rows = tx
        .query(
            &format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions
                  WHERE endpoint_id = $1 AND ($2::bigint IS NULL OR institution_id = $2)
                    AND ($3::text IS NULL OR event = $3)
                  ORDER BY id"
            ),
            &[
                &endpoint_id,
                &filter.institution_id,
                &filter.event.map(WebhookEvent::as_str),
            ],
        )
        .await
        .db()?;
    rows.iter()
        .map(subscription_from)
        .collect::<Result<_, _>>()
        .map(Some)
}

pub(crate) async fn create_subscription(
    tx: &Transaction<'_>,
    (key_id, endpoint_id): (i64, i64),
    (institution_id, event): (i64, WebhookEvent),
    active: bool,
    now: Millis,
) -> Result<Option<Subscription>, StoreError> {
    if !owns_endpoint(tx, key_id, endpoint_id).await? {
        return Ok(None);
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO webhook_subscriptions (endpoint_id, institution_id, event, active,
                    created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (endpoint_id, institution_id, event)
                 DO UPDATE SET active = excluded.active, updated_at = excluded.updated_at
                 RETURNING {SUBSCRIPTION_COLUMNS}"
            ),
            &[
                &endpoint_id,
                &institution_id,
                &event.as_str(),
                &active,
                &now.0,
            ],
        )
        .await
        .db()?;
    subscription_from(&row).map(Some)
}

pub(crate) async fn update_subscription(
    tx: &Transaction<'_>,
    key_id: i64,
    (endpoint_id, id, institution_id): (i64, i64, i64),
    patch: &SubscriptionPatch,
    now: Millis,
) -> Result<Option<Subscription>, StoreError> {
    if !owns_endpoint(tx, key_id, endpoint_id).await? {
        return Ok(None);
    }
    let target = patch.new_endpoint_id.unwrap_or(endpoint_id);
    if target != endpoint_id {
        if !owns_endpoint(tx, key_id, target).await? {
            return Ok(None);
        }
        let clash = tx
            .query_opt(
                "SELECT t.id FROM webhook_subscriptions s
                   JOIN webhook_subscriptions t ON t.endpoint_id = $2
                    AND t.institution_id = s.institution_id AND t.event = s.event
                  WHERE s.id = $1",
                &[&id, &target],
            )
            .await
            .db()?;
        if let Some(row) = clash {
            return Err(Refusal::SubscriptionExists {
                endpoint_id: target,
                subscription_id: row.get(0),
            }
            .into());
        }
    }
    let row = tx
        .query_opt(
            &format!(
                "UPDATE webhook_subscriptions SET active = coalesce($4, active),
                        endpoint_id = $5, updated_at = $6
                  WHERE id = $2 AND endpoint_id = $1 AND institution_id = $3
                 RETURNING {SUBSCRIPTION_COLUMNS}"
            ),
            &[
                &endpoint_id,
                &id,
                &institution_id,
                &patch.active,
                &target,
                &now.0,
            ],
        )
        .await
        .db()?;
    let Some(row) = row else {
        return Ok(None);
    };
    if target != endpoint_id {
        // Its pending deliveries follow it (signed with the new endpoint's secret).
        tx.execute(
            "UPDATE webhook_deliveries SET endpoint_id = $2, updated_at = $3
              WHERE endpoint_id = $4 AND next_attempt_at IS NOT NULL AND subscription_id = $1",
            &[&id, &target, &now.0, &endpoint_id],
        )
        .await
        .db()?;
    }
    subscription_from(&row).map(Some)
}

pub(crate) async fn delete_subscription(
    tx: &Transaction<'_>,
    key_id: i64,
    (endpoint_id, id): (i64, i64),
) -> Result<bool, StoreError> {
    if !owns_endpoint(tx, key_id, endpoint_id).await? {
        return Ok(false);
    }
    let gone = tx
        .execute(
            "DELETE FROM webhook_subscriptions WHERE id = $1 AND endpoint_id = $2",
            &[&id, &endpoint_id],
        )
        .await
        .db()?;
    if gone > 0 {
        // Its pending deliveries stop; finished ones are left to the retention purge.
        tx.execute(
            "DELETE FROM webhook_deliveries
              WHERE endpoint_id = $2 AND next_attempt_at IS NOT NULL AND subscription_id = $1",
            &[&id, &endpoint_id],
        )
        .await
        .db()?;
    }
    Ok(gone > 0)
}

/// Deliveries a worker may claim: due, of an active subscription of an active endpoint, and
/// free or held by an owner that stopped heartbeating (`$1` now, `$2` the oldest live
/// heartbeat).
macro_rules! claimable_from {
    () => {
        "FROM webhook_deliveries d
           JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.active
           JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
          WHERE d.next_attempt_at IS NOT NULL AND d.next_attempt_at <= $1::bigint
            AND (d.claimed_by IS NULL
                 OR d.claimed_by NOT IN (SELECT id FROM workers WHERE heartbeat_at >= $2::bigint))"
    };
}

/// The advisory lock that makes leasing and claiming one process at a time ("convo" + "hook").
const CLAIM_LOCK: i64 = 0x636f_6e76_686f_6f6b;

/// How many queued events one trip turns into deliveries at most: after a long stop, the
/// backlog is worked through a slice per trip instead of in one long write.
const FANOUT_PER_TRIP: i64 = 2_000;

/// Turns the oldest `$1` queued events into one pending delivery per subscription each matched
/// at commit that still exists, at its endpoint now, due at the event's time. Run under the
/// claim lock, so one process at a time takes the queue's head.
const FAN_OUT_SQL: &str = "
WITH f AS (
    DELETE FROM webhook_fanout
     WHERE event_id IN (SELECT event_id FROM webhook_fanout ORDER BY event_id LIMIT $1)
    RETURNING event_id, created_at, subscription_ids)
INSERT INTO webhook_deliveries (event_id, endpoint_id, subscription_id, status, next_attempt_at,
    created_at, updated_at)
SELECT f.event_id, s.endpoint_id, s.id, 'pending', f.created_at, f.created_at, f.created_at
  FROM f
 CROSS JOIN LATERAL unnest(f.subscription_ids) AS u(id)
  JOIN webhook_subscriptions s ON s.id = u.id
 ORDER BY f.event_id, s.id";

/// Worker `$1` leases every active endpoint with something due at `$2` whose lease is free or
/// held by an owner that stopped heartbeating (`$3` the oldest live heartbeat).
const LEASE_SQL: &str = "
UPDATE webhook_endpoints e SET leased_by = $1
 WHERE e.active
   AND (e.leased_by IS NULL
        OR (e.leased_by <> $1
            AND e.leased_by NOT IN (SELECT id FROM workers WHERE heartbeat_at >= $3::bigint)))
   AND EXISTS (SELECT 1 FROM webhook_deliveries d
                WHERE d.endpoint_id = e.id AND d.next_attempt_at IS NOT NULL
                  AND d.next_attempt_at <= $2::bigint)";

/// Per endpoint worker `$3` leases, its oldest due deliveries up to `$5` held by it (an index
/// range each), and of those the oldest overall up to `$4`. What it holds is counted from the
/// claimed index (the few claimed rows).
const CLAIM_SQL: &str = "
WITH held AS (
    SELECT endpoint_id, count(*) AS n FROM webhook_deliveries
     WHERE claimed_by IS NOT NULL AND claimed_by = $3
     GROUP BY endpoint_id),
picked AS (
    SELECT x.id, x.next_attempt_at
      FROM webhook_endpoints e
      LEFT JOIN held h ON h.endpoint_id = e.id
     CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
          JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
         WHERE d.endpoint_id = e.id AND d.next_attempt_at IS NOT NULL
           AND d.next_attempt_at <= $1::bigint
           AND (d.claimed_by IS NULL
                OR d.claimed_by NOT IN (SELECT id FROM workers WHERE heartbeat_at >= $2::bigint))
         ORDER BY d.next_attempt_at, d.id
         LIMIT greatest($5::bigint - coalesce(h.n, 0), 0)) x
     WHERE e.active AND e.leased_by = $3
     ORDER BY x.next_attempt_at, x.id LIMIT $4)
UPDATE webhook_deliveries d SET claimed_by = $3, claimed_at = $1
  FROM picked
 WHERE d.id = picked.id
RETURNING d.id, d.event_id";

/// Worker `$1` gives back the leases of endpoints where it holds no claim.
const RELEASE_LEASES_SQL: &str = "
UPDATE webhook_endpoints e SET leased_by = NULL
 WHERE e.leased_by = $1
   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                    WHERE d.claimed_by IS NOT NULL AND d.claimed_by = $1
                      AND d.endpoint_id = e.id)";

/// Which of claims `$1` worker `$2` holds may still go (pending, of an active subscription of
/// an active endpoint); the others it holds are given back.
const RECHECK_SQL: &str = "
WITH live AS (
    SELECT d.id FROM webhook_deliveries d
      JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.active
      JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
     WHERE d.id = ANY($1) AND d.claimed_by = $2 AND d.next_attempt_at IS NOT NULL),
back AS (
    UPDATE webhook_deliveries SET claimed_by = NULL, claimed_at = NULL
     WHERE id = ANY($1) AND claimed_by = $2 AND id NOT IN (SELECT id FROM live))
SELECT id FROM live ORDER BY id";

/// The events `$1`: the frozen message first, in `message_from`'s order. Read once each, though
/// every subscribed endpoint has a delivery of it.
const EVENTS_SQL: &str = "
SELECT ev.message_id, ev.conversation_id, ev.body, ev.message_created_at, ev.message_updated_at,
       ev.sender_type, ev.sender_id, ev.seen_by, ev.has_attachment, ev.attachment_file_name,
       ev.attachment_content_type, ev.attachment_file_size, ev.attachment_url,
       ev.attachment_updated_at, ev.sms_msg_id, ev.is_custom_reminder_response,
       ev.user_first_name, ev.user_last_name, ev.user_image, ev.patient_first_name,
       ev.patient_middle_name, ev.patient_last_name,
       ev.id, ev.event, ev.created_at, ev.subdomain, ev.institution_id, ev.location_id,
       ev.patient_id, ev.tz, ev.delivery_status, ev.delivery_error
  FROM webhook_events ev
 WHERE ev.id = ANY($1)";

/// The claimed deliveries `$1`, with their endpoints' target and secret.
const JOBS_SQL: &str = "
SELECT d.id, d.endpoint_id, e.target_url, e.secret_key, d.attempts + 1, d.first_attempt_at,
       d.errors, d.event_id
  FROM webhook_deliveries d
  JOIN webhook_endpoints e ON e.id = d.endpoint_id
 WHERE d.id = ANY($1)
 ORDER BY d.id";

fn event_from(r: &Row) -> Result<FrozenEvent, StoreError> {
    let message = message_from(r, 0, None)?
        .ok_or_else(|| StoreError::broken("a webhook event without its message"))?;
    let delivery = match r.get::<_, Option<&str>>(30) {
        None => None,
        Some(text) => Some((
            DeliveryStatus::parse(text)
                .ok_or_else(|| StoreError::broken(format!("unknown delivery status `{text}`")))?,
            r.get(31),
        )),
    };
    Ok(FrozenEvent {
        id: r.get(22),
        name: stored_event(r.get(23))?,
        time: Millis(r.get(24)),
        subdomain: r.get(25),
        institution_id: r.get(26),
        location_id: r.get(27),
        patient_id: r.get(28),
        zone: r.get(29),
        message,
        delivery,
    })
}

/// A claimed delivery's job, its event taken from `events`.
fn job_from(r: &Row, events: &HashMap<i64, FrozenEvent>) -> Result<WebhookJob, StoreError> {
    let errors: Vec<String> = serde_json::from_str(r.get(6)).map_err(StoreError::fault)?;
    let event = events
        .get(&r.get::<_, i64>(7))
        .cloned()
        .ok_or_else(|| StoreError::broken("a webhook delivery without its event"))?;
    Ok(WebhookJob {
        id: r.get(0),
        endpoint_id: r.get(1),
        target_url: r.get(2),
        secret_key: r.get(3),
        attempts: r.get(4),
        first_attempt_at: r.get::<_, Option<i64>>(5).map(Millis),
        errors,
        event,
    })
}

/// One trip of the worker's (`WebhookStore::claim_webhooks`; `finish_webhooks` asks for no
/// claim), in three round trips: what the finished deliveries and their endpoints are now
/// (locked: deliveries, then endpoints, each in id order), then the batch's writes (one
/// statement per table, the fold shared with every engine in `webhook::record`) pipelined
/// with the recheck, the lease, the claim and the leases given back, then the jobs.
pub(crate) async fn record_and_claim(
    tx: &Transaction<'_>,
    worker: i64,
    ask: ClaimAsk<'_>,
    now: Millis,
    stale_ms: i64,
) -> Result<Claim, StoreError> {
    // Sent first, with the reads: the trip's statements are planned for the queue as it is.
    let (_, recorded) = pipelined!(plan_for_now(tx), async {
        if ask.finished.is_empty() {
            Ok(Recorded::default())
        } else {
            read_for_record(tx, worker, ask.finished, now).await
        }
    })?;
    let statements = [
        RECORD_ATTEMPTS_SQL,
        RELEASE_SQL,
        ENDPOINTS_SQL,
        RECHECK_SQL,
        "SELECT pg_advisory_xact_lock($1)",
        FAN_OUT_SQL,
        LEASE_SQL,
        CLAIM_SQL,
        RELEASE_LEASES_SQL,
    ];
    let mut prepared = Vec::with_capacity(statements.len());
    for sql in statements {
        prepared.push(tx.prepare_cached(sql).await.db()?);
    }
    let [
        attempts,
        releases,
        endpoints,
        recheck,
        lock,
        fan_out,
        lease,
        take,
        give_back,
    ] = <[_; 9]>::try_from(prepared).map_err(|_| StoreError::broken("nine statements prepared"))?;
    let a = AttemptColumns::of(&recorded);
    let d = ReleaseColumns::of(&recorded);
    let e = EndpointColumns::of(&recorded);
    let alive_since = now.0.saturating_sub(stale_ms);
    let claiming = ask.limit > 0;
    let recheck_ids = ask.recheck.to_vec();
    // Sent in this order on one connection: the claim counts the slots just released and the
    // leases just taken, and the leases given back see the claims just made.
    let writes = async {
        pipelined!(
            async {
                if a.delivery.is_empty() {
                    return Ok(0);
                }
                tx.execute(
                    &attempts,
                    &[
                        &now.0,
                        &a.delivery,
                        &a.event_id,
                        &a.endpoint,
                        &a.event,
                        &a.outcome,
                        &a.status,
                        &a.error,
                        &a.took,
                    ],
                )
                .await
                .db()
            },
            async {
                if d.id.is_empty() {
                    return Ok(0);
                }
                tx.execute(
                    &releases,
                    &[&now.0, &d.id, &d.status, &d.next, &d.errors, &d.first],
                )
                .await
                .db()
            },
            async {
                if e.id.is_empty() {
                    return Ok(0);
                }
                tx.execute(&endpoints, &[&now.0, &e.id, &e.failing, &e.ok, &e.off])
                    .await
                    .db()
            },
        )
    };
    let claims = async {
        pipelined!(
            async {
                if recheck_ids.is_empty() {
                    return Ok(Vec::new());
                }
                tx.query(&recheck, &[&recheck_ids, &worker]).await.db()
            },
            async {
                if !claiming {
                    return Ok(0);
                }
                tx.execute(&lock, &[&CLAIM_LOCK]).await.db()
            },
            async {
                if !claiming {
                    return Ok(0);
                }
                tx.execute(&fan_out, &[&FANOUT_PER_TRIP]).await.db()
            },
            async {
                if !claiming {
                    return Ok(0);
                }
                tx.execute(&lease, &[&worker, &now.0, &alive_since])
                    .await
                    .db()
            },
            async {
                if !claiming {
                    return Ok(Vec::new());
                }
                tx.query(
                    &take,
                    &[&now.0, &alive_since, &worker, &ask.limit, &ask.ahead],
                )
                .await
                .db()
            },
            async { tx.execute(&give_back, &[&worker]).await.db() },
        )
    };
    let (_, (kept, _, _, _, taken, _)) = pipelined!(writes, claims)?;
    for change in &recorded.endpoints {
        if change.deactivate {
            tracing::warn!(
                endpoint_id = change.id,
                "webhooks: endpoint deactivated after failing"
            );
        }
    }
    let kept = kept.iter().map(|r| r.get(0)).collect();
    let ids: Vec<i64> = taken.iter().map(|r| r.get(0)).collect();
    if ids.is_empty() {
        return Ok(Claim {
            jobs: Vec::new(),
            kept,
        });
    }
    let mut event_ids: Vec<i64> = taken.iter().map(|r| r.get(1)).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let (jobs, events) = (
        tx.prepare_cached(JOBS_SQL).await.db()?,
        tx.prepare_cached(EVENTS_SQL).await.db()?,
    );
    let (jobs, events) = pipelined!(async { tx.query(&jobs, &[&ids]).await.db() }, async {
        tx.query(&events, &[&event_ids]).await.db()
    })?;
    let events: HashMap<i64, FrozenEvent> = events
        .iter()
        .map(|r| event_from(r).map(|e| (e.id, e)))
        .collect::<Result<_, _>>()?;
    let jobs = jobs
        .iter()
        .map(|r| job_from(r, &events))
        .collect::<Result<_, _>>()?;
    Ok(Claim { jobs, kept })
}

/// The deliveries of `results` and their endpoints as they are now, locked, and what
/// recording the batch writes.
async fn read_for_record<'a>(
    tx: &Transaction<'_>,
    worker: i64,
    results: &'a [Finished],
    now: Millis,
) -> Result<Recorded<'a>, StoreError> {
    let ids: Vec<i64> = results.iter().map(|f| f.delivery_id).collect();
    let (deliveries, endpoints) = (
        tx.prepare_cached(
            "SELECT d.id, d.endpoint_id, d.event_id, ev.event, d.claimed_by, d.first_attempt_at,
                    d.errors
               FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
              WHERE d.id = ANY($1)
              ORDER BY d.id
                FOR NO KEY UPDATE OF d",
        )
        .await
        .db()?,
        tx.prepare_cached(
            "SELECT id, failing_since, last_success_at FROM webhook_endpoints
              WHERE id IN (SELECT endpoint_id FROM webhook_deliveries WHERE id = ANY($1))
              ORDER BY id
                FOR NO KEY UPDATE",
        )
        .await
        .db()?,
    );
    let (found, health) = pipelined!(async { tx.query(&deliveries, &[&ids]).await.db() }, async {
        tx.query(&endpoints, &[&ids]).await.db()
    },)?;
    // Deleted meanwhile (its subscription or endpoint went): nothing is left to record.
    let found: HashMap<i64, Claimed> = found
        .iter()
        .map(|r| {
            Ok((
                r.get(0),
                Claimed {
                    endpoint_id: r.get(1),
                    event_id: r.get(2),
                    event: stored_event(r.get(3))?,
                    claimed_by: r.get(4),
                    first_attempt_at: r.get::<_, Option<i64>>(5).map(Millis),
                    errors: r.get(6),
                },
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    let health: HashMap<i64, Health> = health
        .iter()
        .map(|r| {
            (
                r.get(0),
                Health {
                    failing_since: r.get::<_, Option<i64>>(1).map(Millis),
                    last_success_at: r.get::<_, Option<i64>>(2).map(Millis),
                },
            )
        })
        .collect();
    record(worker, results, &found, &health, now).map_err(StoreError::fault)
}

/// A batch's attempt rows (`$1` their time), in the order the attempts ended.
const RECORD_ATTEMPTS_SQL: &str = "
INSERT INTO webhook_attempts (delivery_id, event_id, endpoint_id, event, at, outcome,
    http_status, error, took_ms)
SELECT u.delivery, u.event_id, u.endpoint, u.event, $1, u.outcome, u.status, u.error, u.took
  FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::int[],
              $8::text[], $9::bigint[])
       WITH ORDINALITY AS u(delivery, event_id, endpoint, event, outcome, status, error, took, n)
 ORDER BY u.n";

/// The batch's deliveries after their attempts (`$1` now): one that settled (delivered, or
/// given up) is deleted, its history being its attempt rows; one to retry counts one attempt
/// more and is released. Settled rows left in the queue's table made every claim step over
/// them in the due index until a vacuum, and at 5,000 deliveries a second that is most of the
/// index within a minute.
const RELEASE_SQL: &str = "
WITH u AS (
    SELECT * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])
        AS u(id, status, next, errors, first)),
settled AS (
    DELETE FROM webhook_deliveries d USING u WHERE d.id = u.id AND u.status <> 'pending')
UPDATE webhook_deliveries d SET next_attempt_at = u.next, errors = u.errors,
       claimed_by = NULL, claimed_at = NULL, updated_at = $1, attempts = d.attempts + 1,
       first_attempt_at = u.first
  FROM u
 WHERE d.id = u.id AND u.status = 'pending'";

/// The batch's endpoints after it, once each (`$1` now).
const ENDPOINTS_SQL: &str = "
UPDATE webhook_endpoints e SET failing_since = u.failing, last_success_at = u.ok,
       active = CASE WHEN u.off THEN false ELSE e.active END,
       updated_at = CASE WHEN u.off AND e.active THEN $1 ELSE e.updated_at END
  FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bool[]) AS u(id, failing, ok, off)
 WHERE e.id = u.id";

/// `RECORD_ATTEMPTS_SQL`'s arrays.
struct AttemptColumns<'a> {
    delivery: Vec<i64>,
    event_id: Vec<i64>,
    endpoint: Vec<i64>,
    event: Vec<&'static str>,
    outcome: Vec<&'static str>,
    status: Vec<Option<i32>>,
    error: Vec<Option<&'a str>>,
    took: Vec<i64>,
}

impl<'a> AttemptColumns<'a> {
    fn of(r: &Recorded<'a>) -> Self {
        let a = &r.attempts;
        Self {
            delivery: a.iter().map(|x| x.delivery_id).collect(),
            event_id: a.iter().map(|x| x.event_id).collect(),
            endpoint: a.iter().map(|x| x.endpoint_id).collect(),
            event: a.iter().map(|x| x.event.as_str()).collect(),
            outcome: a.iter().map(|x| x.outcome.as_str()).collect(),
            status: a.iter().map(|x| http_status(x.http_status)).collect(),
            error: a.iter().map(|x| x.error).collect(),
            took: a.iter().map(|x| x.took_ms).collect(),
        }
    }
}

/// `RELEASE_SQL`'s arrays.
struct ReleaseColumns<'a> {
    id: Vec<i64>,
    first: Vec<i64>,
    status: Vec<&'static str>,
    next: Vec<Option<i64>>,
    errors: Vec<&'a str>,
}

impl<'a> ReleaseColumns<'a> {
    fn of(r: &'a Recorded<'_>) -> Self {
        let d = &r.deliveries;
        Self {
            id: d.iter().map(|x| x.id).collect(),
            first: d.iter().map(|x| x.first_attempt_at.0).collect(),
            status: d.iter().map(|x| x.status.as_str()).collect(),
            next: d.iter().map(|x| x.next_attempt_at.map(|at| at.0)).collect(),
            errors: d.iter().map(|x| x.errors.as_str()).collect(),
        }
    }
}

/// `ENDPOINTS_SQL`'s arrays.
struct EndpointColumns {
    id: Vec<i64>,
    failing: Vec<Option<i64>>,
    ok: Vec<Option<i64>>,
    off: Vec<bool>,
}

impl EndpointColumns {
    fn of(r: &Recorded<'_>) -> Self {
        let e = &r.endpoints;
        Self {
            id: e.iter().map(|x| x.id).collect(),
            failing: e
                .iter()
                .map(|x| x.health.failing_since.map(|at| at.0))
                .collect(),
            ok: e
                .iter()
                .map(|x| x.health.last_success_at.map(|at| at.0))
                .collect(),
            off: e.iter().map(|x| x.deactivate).collect(),
        }
    }
}

fn http_status(status: Option<u16>) -> Option<i32> {
    status.map(i32::from)
}

/// The earliest of each active endpoint's first due delivery (an index range each): as one
/// `min` over the table, PostgreSQL without statistics of the table's pending rows reads it all.
pub(crate) async fn next_due(client: &impl GenericClient) -> Result<Option<Millis>, StoreError> {
    let stmt = client
        .prepare_cached(
            "/* planned per run */
             SELECT least(
                 (SELECT min(x.at) FROM webhook_endpoints e
                   CROSS JOIN LATERAL (
                      SELECT d.next_attempt_at AS at FROM webhook_deliveries d
                        JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
                       WHERE d.endpoint_id = e.id AND d.next_attempt_at IS NOT NULL
                         AND d.claimed_by IS NULL
                       ORDER BY d.next_attempt_at LIMIT 1) x
                   WHERE e.active),
                 (SELECT created_at FROM webhook_fanout ORDER BY event_id LIMIT 1))",
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
    let totals = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE claimed_by IS NOT NULL)
               FROM webhook_deliveries WHERE next_attempt_at IS NOT NULL",
            &[],
        )
        .await
        .db()?;
    let due = client
        .query_one(
            concat!(
                "SELECT count(*), min(d.next_attempt_at) ",
                claimable_from!()
            ),
            &[&now.0, &now.0.saturating_sub(stale_ms)],
        )
        .await
        .db()?;
    // Events not yet fanned out are due deliveries too, one per subscription they matched.
    let queued = client
        .query_one(
            "SELECT coalesce(sum(cardinality(subscription_ids)), 0)::bigint, min(created_at)
               FROM webhook_fanout",
            &[],
        )
        .await
        .db()?;
    let (queued_n, queued_since): (i64, Option<i64>) = (queued.get(0), queued.get(1));
    let oldest = [due.get::<_, Option<i64>>(1), queued_since]
        .into_iter()
        .flatten()
        .min();
    Ok(OutboxStats {
        pending: totals.get::<_, i64>(0) + queued_n,
        due: due.get::<_, i64>(0) + queued_n,
        claimed: totals.get(1),
        oldest_due_ms: oldest.map_or(0, |at| now.0.saturating_sub(at)),
    })
}

pub(crate) async fn attempts(
    client: &impl GenericClient,
    endpoint_id: Option<i64>,
    outcome: Option<WebhookStatus>,
    limit: i64,
) -> Result<Vec<AttemptRecord>, StoreError> {
    let rows = client
        .query(
            "SELECT id, delivery_id, event_id, endpoint_id, event, at, outcome, http_status,
                    error, took_ms
               FROM webhook_attempts
              WHERE ($1::bigint IS NULL OR endpoint_id = $1)
                AND ($2::text IS NULL OR outcome = $2)
              ORDER BY id DESC LIMIT $3",
            &[&endpoint_id, &outcome.map(WebhookStatus::as_str), &limit],
        )
        .await
        .db()?;
    rows.iter()
        .map(|r| {
            let text: &str = r.get(6);
            let outcome = WebhookStatus::parse(text)
                .ok_or_else(|| StoreError::broken(format!("unknown attempt outcome `{text}`")))?;
            Ok(AttemptRecord {
                id: r.get(0),
                delivery_id: r.get(1),
                event_id: r.get(2),
                endpoint_id: r.get(3),
                event: stored_event(r.get(4))?,
                at: Millis(r.get(5)),
                outcome,
                http_status: r
                    .get::<_, Option<i32>>(7)
                    .and_then(|s| u16::try_from(s).ok()),
                error: r.get(8),
                took_ms: r.get(9),
            })
        })
        .collect()
}

pub(crate) async fn replay(
    tx: &Transaction<'_>,
    endpoint_id: i64,
    since: Millis,
    now: Millis,
) -> Result<Option<i64>, StoreError> {
    let exists = tx
        .query_opt(
            "SELECT 1 FROM webhook_endpoints WHERE id = $1 FOR UPDATE",
            &[&endpoint_id],
        )
        .await
        .db()?;
    if exists.is_none() {
        return Ok(None);
    }
    // What is still queued becomes deliveries first, so an event is not queued twice.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
        .await
        .db()?;
    tx.execute(FAN_OUT_SQL, &[&i64::MAX]).await.db()?;
    let queued = tx
        .execute(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, subscription_id, status,
                next_attempt_at, created_at, updated_at)
             SELECT ev.id, s.endpoint_id, s.id, 'pending', $3, $3, $3
               FROM webhook_subscriptions s
               JOIN webhook_events ev ON ev.institution_id = s.institution_id
                                     AND ev.event = s.event AND ev.created_at >= $2
              WHERE s.endpoint_id = $1
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                 WHERE d.event_id = ev.id AND d.endpoint_id = $1
                                   AND d.status = 'pending')
              ORDER BY ev.id",
            &[&endpoint_id, &since.0, &now.0],
        )
        .await
        .db()?;
    Ok(Some(i64::try_from(queued).unwrap_or(i64::MAX)))
}

pub(crate) async fn purge(tx: &Transaction<'_>, before: Millis) -> Result<i64, StoreError> {
    tx.execute("DELETE FROM webhook_attempts WHERE at < $1", &[&before.0])
        .await
        .db()?;
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1",
        &[&before.0],
    )
    .await
    .db()?;
    let events = tx
        .execute(
            "DELETE FROM webhook_events ev WHERE created_at < $1
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = ev.id)
                AND NOT EXISTS (SELECT 1 FROM webhook_fanout f WHERE f.event_id = ev.id)",
            &[&before.0],
        )
        .await
        .db()?;
    Ok(i64::try_from(events).unwrap_or(i64::MAX))
}
