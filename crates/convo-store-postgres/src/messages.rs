//! Staff sends and seen (CONTRACT §6), and the steps every message write shares. Each write is
//! one transaction that also moves the conversation's `updated_at`, its activity slice and the
//! location's count (in the store's own statements: no triggers), so a polling client sees the
//! write at once. Nothing here relies on being the only writer: find-or-create is
//! `INSERT … ON CONFLICT`, read-modify-write locks its row first.

use crate::Db;
use crate::conversations::activity_levels;
use crate::pipeline::pipelined;
use crate::rows::{ONE_MESSAGE_SQL, message_from, message_table_columns};
use crate::webhooks;
use convo_core::phone::bio_phones;
use convo_core::webhook::WebhookEvent;
use convo_core::write::{IdempotencyKey, NewAttachment, NewMessage};
use convo_core::{Message, Millis, Missing, Refusal, StoreError, TenantCtx};
use deadpool_postgres::Transaction;

fn refuse<T>(refusal: Refusal) -> Result<T, StoreError> {
    Err(StoreError::Refused(refusal))
}

pub(crate) async fn load_message(
    tx: &Transaction<'_>,
    inst: i64,
    id: i64,
) -> Result<Message, StoreError> {
    let stmt = tx.prepare_cached(ONE_MESSAGE_SQL).await.db()?;
    let row = tx.query_one(&stmt, &[&inst, &id]).await.db()?;
    message_from(&row, 0, None)?.ok_or_else(|| StoreError::broken(format!("message {id} vanished")))
}

/// The next id of a table's identity sequence (ids are taken before the row is written when
/// another row must name it first).
pub(crate) async fn next_id(tx: &Transaction<'_>, table: &str) -> Result<i64, StoreError> {
    let sql = match table {
        "patients" => "SELECT nextval(pg_get_serial_sequence('patients', 'id'))",
        _ => return Err(StoreError::broken(format!("no id sequence for {table}"))),
    };
    let stmt = tx.prepare_cached(sql).await.db()?;
    Ok(tx.query_one(&stmt, &[]).await.db()?.get(0))
}

/// The id and the time of a message about to join a conversation that the transaction has
/// locked: the time is the database's clock, one for every process.
const STAMP_SQL: &str = "SELECT nextval(pg_get_serial_sequence('messages', 'id')),
                                (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Locks the conversation a message is about to join, then takes the message's id and time:
/// in that order, so that within a thread ids and times follow the order writers got the
/// lock, whichever process they run in. The two statements are pipelined: one round trip,
/// run in order.
async fn lock_and_stamp(
    tx: &Transaction<'_>,
    inst: i64,
    conversation_id: i64,
) -> Result<(i64, Millis), StoreError> {
    let lock = tx
        .prepare_cached(
            "SELECT 1 FROM conversations WHERE institution_id = $1 AND id = $2
                FOR NO KEY UPDATE",
        )
        .await
        .db()?;
    let stamp = tx.prepare_cached(STAMP_SQL).await.db()?;
    let (_, row) = pipelined!(
        async { tx.query_one(&lock, &[&inst, &conversation_id]).await.db() },
        async { tx.query_one(&stamp, &[]).await.db() },
    )?;
    Ok((row.get(0), Millis(row.get(1))))
}

/// A conversation a message joins, locked, with the message's id and time.
pub(crate) struct Joined {
    pub conversation_id: i64,
    pub id: i64,
    pub at: Millis,
}

/// The existing conversation of (location, patient), found and locked, then the message's id
/// and time (in that order, as `lock_and_stamp`), in one round trip; `None` when there is none
/// yet (the id taken is then a gap in the sequence, as a rolled-back send leaves one).
pub(crate) async fn existing_locked(
    tx: &Transaction<'_>,
    (inst, loc): (i64, i64),
    patient_id: i64,
) -> Result<Option<Joined>, StoreError> {
    let lookup = tx
        .prepare_cached(
            "SELECT id FROM conversations
              WHERE institution_id = $1 AND location_id = $2 AND patient_id = $3
                FOR NO KEY UPDATE",
        )
        .await
        .db()?;
    let stamp = tx.prepare_cached(STAMP_SQL).await.db()?;
    let (found, row) = pipelined!(
        async {
            tx.query_opt(&lookup, &[&inst, &loc, &patient_id])
                .await
                .db()
        },
        async { tx.query_one(&stamp, &[]).await.db() },
    )?;
    Ok(found.map(|f| Joined {
        conversation_id: f.get(0),
        id: row.get(0),
        at: Millis(row.get(1)),
    }))
}

/// The conversation of (location, patient) created (or found, when a concurrent writer made
/// it first), then locked and stamped.
pub(crate) async fn created_locked(
    tx: &Transaction<'_>,
    scope: (i64, i64),
    patient_id: i64,
    now: Millis,
) -> Result<Joined, StoreError> {
    let conversation_id = conversation_for(tx, scope, patient_id, now).await?;
    let (id, at) = lock_and_stamp(tx, scope.0, conversation_id).await?;
    Ok(Joined {
        conversation_id,
        id,
        at,
    })
}

/// The conversation a message of (location, patient) joins: one round trip when it exists.
pub(crate) async fn conversation_locked(
    tx: &Transaction<'_>,
    scope: (i64, i64),
    patient_id: i64,
    now: Millis,
) -> Result<Joined, StoreError> {
    match existing_locked(tx, scope, patient_id).await? {
        Some(joined) => Ok(joined),
        None => created_locked(tx, scope, patient_id, now).await,
    }
}

/// The stripe of the kept counts this connection writes (migration 3): its backend's, so
/// that concurrent writers, each on its own connection, mostly add to rows of their own.
macro_rules! stripe {
    () => {
        "(pg_backend_pid() % 16)::smallint"
    };
}

/// Creates the conversation of (location, patient) when there is none, counting it in its
/// location and activity slice in the same statement; the id either way. A concurrent creator
/// of the same conversation makes the insert wait for it, then find its row.
const NEW_CONVERSATION_SQL: &str = concat!(
    "
WITH ins AS (
    INSERT INTO conversations (institution_id, location_id, patient_id, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $4)
    ON CONFLICT (institution_id, location_id, patient_id) DO NOTHING
    RETURNING id, updated_at),
act AS (
    INSERT INTO conversation_activity (institution_id, location_id, shift, slice, stripe, n)
    SELECT $1, $2, l.shift, updated_at >> l.shift, ",
    stripe!(),
    ", 1 FROM ins, ",
    activity_levels!(),
    "
     ORDER BY l.shift
    ON CONFLICT (institution_id, location_id, shift, slice, stripe)
    DO UPDATE SET n = conversation_activity.n + 1
    RETURNING 1),
cnt AS (
    INSERT INTO conversation_counts (institution_id, location_id, stripe, n)
    SELECT $1, $2, ",
    stripe!(),
    ", 1 FROM ins
    ON CONFLICT (institution_id, location_id, stripe)
    DO UPDATE SET n = conversation_counts.n + 1
    RETURNING 1)
SELECT id FROM ins"
);

async fn conversation_for(
    tx: &Transaction<'_>,
    (inst, loc): (i64, i64),
    patient_id: i64,
    now: Millis,
) -> Result<i64, StoreError> {
    let stmt = tx.prepare_cached(NEW_CONVERSATION_SQL).await.db()?;
    if let Some(row) = tx
        .query_opt(&stmt, &[&inst, &loc, &patient_id, &now.0])
        .await
        .db()?
    {
        return Ok(row.get(0));
    }
    let existing = tx
        .prepare_cached(
            "SELECT id FROM conversations
              WHERE institution_id = $1 AND location_id = $2 AND patient_id = $3",
        )
        .await
        .db()?;
    Ok(tx
        .query_one(&existing, &[&inst, &loc, &patient_id])
        .await
        .db()?
        .get(0))
}

/// Moves a conversation's last activity forward (never back: an out-of-order write never hides
/// newer activity), and at each activity level its count from the old bucket to the new one
/// when it crosses one. `old` reads the row before the update (every part of one statement
/// sees one snapshot), locked, so two touches of one conversation queue rather than both move it. The lock is
/// `NO KEY UPDATE`, as the update's own: `FOR UPDATE` would conflict with the key-share locks
/// that inserting a message (its foreign key) takes on the conversation, and two writers of
/// one thread deadlocked on each other's (a second each, until the detector broke it). The
/// -1 and the +1 go to this connection's stripe, the older slice's row locked first.
const TOUCH_SQL: &str = concat!(
    "
WITH old AS (
    SELECT location_id, updated_at FROM conversations
     WHERE institution_id = $1 AND id = $2 FOR NO KEY UPDATE),
upd AS (
    UPDATE conversations c SET updated_at = greatest(c.updated_at, $3)
      FROM old
     WHERE c.institution_id = $1 AND c.id = $2
    RETURNING c.location_id, old.updated_at AS was, c.updated_at AS now),
moved AS (
    INSERT INTO conversation_activity (institution_id, location_id, shift, slice, stripe, n)
    SELECT $1, upd.location_id, l.shift, d.slice, ",
    stripe!(),
    ", d.n
      FROM upd, ",
    activity_levels!(),
    ",
           LATERAL (VALUES (upd.was >> l.shift, -1), (upd.now >> l.shift, 1)) d (slice, n)
     WHERE (upd.was >> l.shift) <> (upd.now >> l.shift)
     ORDER BY l.shift, d.slice
    ON CONFLICT (institution_id, location_id, shift, slice, stripe)
    DO UPDATE SET n = conversation_activity.n + excluded.n
    RETURNING 1)
SELECT count(*) FROM moved"
);

pub(crate) async fn touch(
    tx: &Transaction<'_>,
    inst: i64,
    conversation_id: i64,
    at: Millis,
) -> Result<(), StoreError> {
    let stmt = tx.prepare_cached(TOUCH_SQL).await.db()?;
    tx.query_one(&stmt, &[&inst, &conversation_id, &at.0])
        .await
        .db()?;
    Ok(())
}

/// A new message row: what a send or an inbound SMS writes.
pub(crate) struct MessageRow<'a> {
    pub institution_id: i64,
    pub id: i64,
    pub conversation_id: i64,
    pub body: &'a str,
    pub at: Millis,
    /// `sender_type` and `sender_id`.
    pub sender: (&'static str, Option<i64>),
    pub attachment: Option<&'a NewAttachment>,
    pub sms_msg_id: Option<i64>,
    pub is_custom_reminder_response: bool,
}

/// The start of an insert of a new message.
macro_rules! message_insert_columns {
    () => {
        concat!("INSERT INTO messages (", message_table_columns!(), ")")
    };
}

/// A staff send's delivery (the outbox row: `$1` institution, `$2` message id, `$3` location,
/// `$4` to, `$5` from, `$6` body, `$7` media URL, `$8` time) and its message (`$9`
/// conversation, `$10` user, `$11`–`$15` the attachment), which names the delivery: one
/// statement.
const SEND_SQL: &str = concat!(
    "WITH d AS (
        INSERT INTO deliveries (institution_id, message_id, location_id, to_number,
            from_number, body, media_url, status, attempts, next_attempt_at, created_at,
            updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, $8, $8) RETURNING id) ",
    message_insert_columns!(),
    " SELECT $1, $2, $9, $6, $8, $8, 'User', $10, '[]', $11, $12, $13, $14, $7, $15, d.id, false
        FROM d"
);

pub(crate) async fn insert_message(
    tx: &Transaction<'_>,
    m: &MessageRow<'_>,
) -> Result<(), StoreError> {
    let a = m.attachment;
    let stmt = tx
        .prepare_cached(concat!(
            message_insert_columns!(),
            " VALUES ($1, $2, $3, $4, $5, $5, $6, $7, '[]', $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .await
        .db()?;
    let attached_at = a.map(|_| m.at.0);
    tx.execute(
        &stmt,
        &[
            &m.institution_id,
            &m.id,
            &m.conversation_id,
            &m.body,
            &m.at.0,
            &m.sender.0,
            &m.sender.1,
            &a.is_some(),
            &a.and_then(|a| a.file_name.as_deref()),
            &a.and_then(|a| a.content_type.as_deref()),
            &a.and_then(|a| a.file_size),
            &a.and_then(|a| a.url.as_deref()),
            &attached_at,
            &m.sms_msg_id,
            &m.is_custom_reminder_response,
        ],
    )
    .await
    .db()?;
    Ok(())
}

async fn user_of(tx: &Transaction<'_>, inst: i64, user_id: i64) -> Result<bool, StoreError> {
    let stmt = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE institution_id = $1 AND id = $2)")
        .await
        .db()?;
    Ok(tx.query_one(&stmt, &[&inst, &user_id]).await.db()?.get(0))
}

pub(crate) async fn send(
    tx: &Transaction<'_>,
    tenant: &TenantCtx,
    m: &NewMessage,
    now: Millis,
) -> Result<Message, StoreError> {
    let (inst, loc) = (tenant.institution_id(), tenant.location_id());
    // The key is claimed first: a retry racing the first send waits here for it to commit,
    // then answers with its message instead of texting twice.
    if let Some(key) = &m.idempotency
        && let Some(first) = claim_key(tx, (inst, loc), m, key, now).await?
    {
        return Ok(first);
    }
    // Independent reads, and the conversation locked with the message's id and time, sent
    // together: one round trip for a thread that exists. (A refused send has then taken an
    // id for nothing; ids have gaps anyway.)
    let patient_sql = tx
        .prepare_cached(
            "SELECT unsubscribe_sms, bio FROM patients WHERE institution_id = $1 AND id = $2",
        )
        .await
        .db()?;
    let from_sql = tx
        .prepare_cached("SELECT phone_e164 FROM locations WHERE institution_id = $1 AND id = $2")
        .await
        .db()?;
    let (patient, is_staff, from, existing) = pipelined!(
        async {
            tx.query_opt(&patient_sql, &[&inst, &m.patient_id])
                .await
                .db()
        },
        user_of(tx, inst, m.user_id),
        async { tx.query_opt(&from_sql, &[&inst, &loc]).await.db() },
        existing_locked(tx, (inst, loc), m.patient_id),
    )?;
    let Some(patient) = patient else {
        return refuse(Refusal::PatientNotInInstitution(m.patient_id));
    };
    if !is_staff {
        return refuse(Refusal::UserNotStaff(m.user_id));
    }
    let (unsubscribed, bio): (bool, String) = (patient.get(0), patient.get(1));
    if unsubscribed {
        return refuse(Refusal::Unsubscribed);
    }
    let Some(to) = bio_phones(&bio).into_iter().next() else {
        return refuse(Refusal::NoPatientPhone);
    };
    let Some(from) = from.and_then(|r| r.get::<_, Option<String>>(0)) else {
        return refuse(Refusal::NoLocationPhone);
    };
    let Joined {
        conversation_id,
        id,
        at,
    } = match existing {
        Some(joined) => joined,
        None => created_locked(tx, (inst, loc), m.patient_id, now).await?,
    };
    let a = m.attachment.as_ref();
    let (url, attached_at) = (a.and_then(|a| a.url.as_deref()), a.map(|_| at.0));
    let (file_name, content_type) = (
        a.and_then(|a| a.file_name.as_deref()),
        a.and_then(|a| a.content_type.as_deref()),
    );
    let file_size = a.and_then(|a| a.file_size);
    let send_sql = tx.prepare_cached(SEND_SQL).await.db()?;
    let written = async {
        tx.execute(
            &send_sql,
            &[
                &inst,
                &id,
                &loc,
                &to,
                &from,
                &m.body,
                &url,
                &at.0,
                &conversation_id,
                &m.user_id,
                &a.is_some(),
                &file_name,
                &content_type,
                &file_size,
                &attached_at,
            ],
        )
        .await
        .db()
    };
    let keyed = async {
        match &m.idempotency {
            Some(key) => key_sent(tx, inst, key, id).await,
            None => Ok(()),
        }
    };
    // The rest in one round trip, in order: the message is written before its event freezes
    // it and before it is read back.
    let (_, _, _, _, message) = pipelined!(
        written,
        touch(tx, inst, conversation_id, at),
        keyed,
        webhooks::fire(tx, inst, WebhookEvent::MessageCreated, id, at),
        load_message(tx, inst, id)
    )?;
    Ok(message)
}

/// Records which message a claimed key sent (the claim held a placeholder until now).
async fn key_sent(
    tx: &Transaction<'_>,
    inst: i64,
    key: &IdempotencyKey,
    id: i64,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE send_keys SET message_id = $4
              WHERE institution_id = $1 AND api_key_id = $2 AND key = $3",
        )
        .await
        .db()?;
    tx.execute(&stmt, &[&inst, &key.api_key_id, &key.key, &id])
        .await
        .db()?;
    Ok(())
}

/// Claims `key` (for a message not written yet: `key_sent` names it). `None`: the key is new,
/// the send goes on. `Some`: the key already sent this message, which answers again; refused
/// when the key was used for a different one (a client bug that must not pass silently).
async fn claim_key(
    tx: &Transaction<'_>,
    (inst, loc): (i64, i64),
    m: &NewMessage,
    key: &IdempotencyKey,
    now: Millis,
) -> Result<Option<Message>, StoreError> {
    let claim = tx
        .prepare_cached(
            "INSERT INTO send_keys (institution_id, api_key_id, key, message_id, created_at)
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING",
        )
        .await
        .db()?;
    let claimed = tx
        .execute(&claim, &[&inst, &key.api_key_id, &key.key, &now.0])
        .await
        .db()?;
    if claimed == 1 {
        return Ok(None);
    }
    let first_sql = tx
        .prepare_cached(
            "SELECT c.location_id, c.patient_id, m.sender_id, m.body, m.attachment_url, m.id
               FROM send_keys s
               JOIN messages m ON m.institution_id = s.institution_id AND m.id = s.message_id
               JOIN conversations c
                 ON c.institution_id = m.institution_id AND c.id = m.conversation_id
              WHERE s.institution_id = $1 AND s.api_key_id = $2 AND s.key = $3",
        )
        .await
        .db()?;
    let row = tx
        .query_one(&first_sql, &[&inst, &key.api_key_id, &key.key])
        .await
        .db()?;
    // Location, patient, sender, body and attachment URL: what makes it the same send.
    type SameSend = (i64, i64, Option<i64>, String, Option<String>);
    let first: SameSend = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let again: SameSend = (
        loc,
        m.patient_id,
        Some(m.user_id),
        m.body.clone(),
        m.attachment.as_ref().and_then(|a| a.url.clone()),
    );
    if first != again {
        return refuse(Refusal::IdempotencyKeyReused);
    }
    load_message(tx, inst, row.get(5)).await.map(Some)
}

pub(crate) async fn seen(
    tx: &Transaction<'_>,
    tenant: &TenantCtx,
    message_id: i64,
    user_id: i64,
    now: Millis,
) -> Result<Message, StoreError> {
    let (inst, loc) = (tenant.institution_id(), tenant.location_id());
    // Locked: two staff marking one message at once must both be kept.
    let found_sql = tx
        .prepare_cached(
            "SELECT m.conversation_id, m.seen_by, m.created_at
               FROM messages m
               JOIN conversations c
                 ON c.institution_id = m.institution_id AND c.id = m.conversation_id
              WHERE m.institution_id = $1 AND m.id = $2 AND c.location_id = $3
                FOR NO KEY UPDATE OF m",
        )
        .await
        .db()?;
    let Some(found) = tx
        .query_opt(&found_sql, &[&inst, &message_id, &loc])
        .await
        .db()?
    else {
        return Err(Missing::Message(message_id).into());
    };
    if !user_of(tx, inst, user_id).await? {
        return refuse(Refusal::UserNotStaff(user_id));
    }
    let (conversation_id, seen_by, created_at): (i64, String, i64) =
        (found.get(0), found.get(1), found.get(2));
    let mut ids: Vec<String> = serde_json::from_str(&seen_by).unwrap_or_default();
    let user = user_id.to_string();
    if !ids.contains(&user) {
        ids.push(user);
        let text = serde_json::to_string(&ids).map_err(StoreError::fault)?;
        let at = Millis(now.0.max(created_at));
        let update = tx
            .prepare_cached(
                "UPDATE messages SET seen_by = $3, updated_at = greatest(updated_at, $4)
                  WHERE institution_id = $1 AND id = $2",
            )
            .await
            .db()?;
        tx.execute(&update, &[&inst, &message_id, &text, &at.0])
            .await
            .db()?;
        pipelined!(
            touch(tx, inst, conversation_id, at),
            webhooks::fire(tx, inst, WebhookEvent::MessageUpdated, message_id, at)
        )?;
    }
    load_message(tx, inst, message_id).await
}
