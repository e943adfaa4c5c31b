//! Staff sends and seen (CONTRACT §6), and the steps every message write shares. Each write is
//! one IMMEDIATE transaction on the writer connection that also moves the conversation's
//! `updated_at` (the activity slices and counts follow by trigger), so a polling client sees the
//! write at once.

use super::rows::{ONE_MESSAGE_SQL, message_from};
use super::{Db, immediate, webhooks};
use convo_core::phone::bio_phones;
use convo_core::webhook::WebhookEvent;
use convo_core::write::{IdempotencyKey, NewAttachment, NewMessage};
use convo_core::{Message, Millis, Missing, Refusal, StoreError, TenantCtx};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

fn refuse<T>(refusal: Refusal) -> Result<T, StoreError> {
    Err(StoreError::Refused(refusal))
}

pub(crate) fn load_message(tx: &Transaction, id: i64) -> Result<Message, StoreError> {
    tx.prepare_cached(ONE_MESSAGE_SQL)
        .db()?
        .query_row([id], message_from)
        .db()
}

/// The tables whose integer ids clients also import: new rows take the next id after every
/// imported one, so imports and writes share one id space.
#[derive(Clone, Copy)]
pub(crate) enum IdTable {
    Messages,
    Conversations,
    Patients,
}

impl IdTable {
    const fn next_sql(self) -> &'static str {
        match self {
            IdTable::Messages => "SELECT coalesce(max(id), 0) + 1 FROM messages",
            IdTable::Conversations => "SELECT coalesce(max(id), 0) + 1 FROM conversations",
            IdTable::Patients => "SELECT coalesce(max(id), 0) + 1 FROM patients",
        }
    }
}

/// The next free id of `table` (the writer is the only one, so it stays free until commit).
pub(crate) fn next_id(tx: &Transaction, table: IdTable) -> Result<i64, StoreError> {
    tx.prepare_cached(table.next_sql())
        .db()?
        .query_row([], |r| r.get(0))
        .db()
}

/// The conversation of (location, patient), created at `now` if there is none yet.
pub(crate) fn conversation_for(
    tx: &Transaction,
    tenant: (i64, i64),
    patient_id: i64,
    now: Millis,
) -> Result<i64, StoreError> {
    let (inst, loc) = tenant;
    let existing: Option<i64> = tx
        .prepare_cached("SELECT id FROM conversations WHERE location_id = ?1 AND patient_id = ?2")
        .db()?
        .query_row([loc, patient_id], |r| r.get(0))
        .optional()
        .db()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = next_id(tx, IdTable::Conversations)?;
    tx.prepare_cached(
        "INSERT INTO conversations (id, institution_id, location_id, patient_id, created_at,
            updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .db()?
    .execute(params![id, inst, loc, patient_id, now.0])
    .db()?;
    Ok(id)
}

/// Last activity moves forward only: an out-of-order write never hides newer activity.
pub(crate) fn touch(tx: &Transaction, conversation_id: i64, at: Millis) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE conversations SET updated_at = max(updated_at, ?2) WHERE id = ?1")
        .db()?
        .execute(params![conversation_id, at.0])
        .db()?;
    Ok(())
}

/// A new message row: what a send or an inbound SMS writes.
pub(crate) struct MessageRow<'a> {
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

pub(crate) fn insert_message(tx: &Transaction, m: &MessageRow) -> Result<(), StoreError> {
    let a = m.attachment;
    tx.prepare_cached(
        "INSERT INTO messages (id, conversation_id, body, created_at, updated_at, sender_type,
            sender_id, seen_by, has_attachment, attachment_file_name, attachment_content_type,
            attachment_file_size, attachment_url, attachment_updated_at, sms_msg_id,
            is_custom_reminder_response)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, '[]', ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .db()?
    .execute(params![
        m.id,
        m.conversation_id,
        m.body,
        m.at.0,
        m.sender.0,
        m.sender.1,
        a.is_some(),
        a.and_then(|a| a.file_name.as_deref()),
        a.and_then(|a| a.content_type.as_deref()),
        a.and_then(|a| a.file_size),
        a.and_then(|a| a.url.as_deref()),
        a.map(|_| m.at.0),
        m.sms_msg_id,
        m.is_custom_reminder_response,
    ])
    .db()?;
    Ok(())
}

fn user_of(tx: &Transaction, inst: i64, user_id: i64) -> Result<(), StoreError> {
    let owner: Option<i64> = tx
        .prepare_cached("SELECT institution_id FROM users WHERE id = ?1")
        .db()?
        .query_row([user_id], |r| r.get(0))
        .optional()
        .db()?;
    match owner {
        Some(i) if i == inst => Ok(()),
        _ => refuse(Refusal::UserNotStaff(user_id)),
    }
}

pub(crate) fn send(
    conn: &mut Connection,
    tenant: &TenantCtx,
    m: NewMessage,
    now: Millis,
) -> Result<Message, StoreError> {
    let (inst, loc) = (tenant.institution_id(), tenant.location_id());
    let tx = immediate(conn)?;
    if let Some(key) = &m.idempotency
        && let Some(first) = replay(&tx, (inst, loc), &m, key)?
    {
        return Ok(first);
    }
    let patient: Option<(i64, bool, String)> = tx
        .prepare_cached("SELECT institution_id, unsubscribe_sms, bio FROM patients WHERE id = ?1")
        .db()?
        .query_row([m.patient_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .db()?;
    let (unsubscribed, bio) = match patient {
        Some((i, unsubscribed, bio)) if i == inst => (unsubscribed, bio),
        _ => {
            return refuse(Refusal::PatientNotInInstitution(m.patient_id));
        }
    };
    user_of(&tx, inst, m.user_id)?;
    if unsubscribed {
        return refuse(Refusal::Unsubscribed);
    }
    let Some(to) = bio_phones(&bio).into_iter().next() else {
        return refuse(Refusal::NoPatientPhone);
    };
    let from: Option<String> = tx
        .prepare_cached("SELECT phone_e164 FROM locations WHERE id = ?1")
        .db()?
        .query_row([loc], |r| r.get(0))
        .db()?;
    let Some(from) = from else {
        return refuse(Refusal::NoLocationPhone);
    };
    let conversation_id = conversation_for(&tx, (inst, loc), m.patient_id, now)?;
    let id = next_id(&tx, IdTable::Messages)?;
    let media_url = m.attachment.as_ref().and_then(|a| a.url.clone());
    tx.prepare_cached(
        "INSERT INTO deliveries (message_id, institution_id, location_id, to_number, from_number,
            body, media_url, status, attempts, next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', 0, ?8, ?8, ?8)",
    )
    .db()?
    .execute(params![id, inst, loc, to, from, m.body, media_url, now.0])
    .db()?;
    let delivery_id = tx.last_insert_rowid();
    insert_message(
        &tx,
        &MessageRow {
            id,
            conversation_id,
            body: &m.body,
            at: now,
            sender: ("User", Some(m.user_id)),
            attachment: m.attachment.as_ref(),
            sms_msg_id: Some(delivery_id),
            is_custom_reminder_response: false,
        },
    )?;
    if let Some(key) = &m.idempotency {
        tx.prepare_cached(
            "INSERT INTO send_keys (institution_id, api_key_id, key, message_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .db()?
        .execute(params![inst, key.api_key_id, key.key, id, now.0])
        .db()?;
    }
    touch(&tx, conversation_id, now)?;
    webhooks::fire(&tx, WebhookEvent::MessageCreated, id, now)?;
    let message = load_message(&tx, id)?;
    tx.commit().db()?;
    Ok(message)
}

/// The message a key already sent, when this is the same send again; refused when the key
/// was used for a different one (a client bug that must not pass silently).
fn replay(
    tx: &Transaction,
    (inst, loc): (i64, i64),
    m: &NewMessage,
    key: &IdempotencyKey,
) -> Result<Option<Message>, StoreError> {
    let sent: Option<i64> = tx
        .prepare_cached(
            "SELECT message_id FROM send_keys
              WHERE institution_id = ?1 AND api_key_id = ?2 AND key = ?3",
        )
        .db()?
        .query_row(params![inst, key.api_key_id, key.key], |r| r.get(0))
        .optional()
        .db()?;
    let Some(id) = sent else {
        return Ok(None);
    };
    // Institution, location, patient, sender, body and attachment URL: what makes it the same
    // send.
    type SameSend = (i64, i64, i64, Option<i64>, String, Option<String>);
    let first: SameSend = tx
        .prepare_cached(
            "SELECT c.institution_id, c.location_id, c.patient_id, m.sender_id, m.body,
                    m.attachment_url
               FROM messages m INDEXED BY messages_id
               JOIN conversations c ON c.id = m.conversation_id
              WHERE m.id = ?1",
        )
        .db()?
        .query_row([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .db()?;
    let again: SameSend = (
        inst,
        loc,
        m.patient_id,
        Some(m.user_id),
        m.body.clone(),
        m.attachment.as_ref().and_then(|a| a.url.clone()),
    );
    if first != again {
        return refuse(Refusal::IdempotencyKeyReused);
    }
    load_message(tx, id).map(Some)
}

pub(crate) fn seen(
    conn: &mut Connection,
    tenant: &TenantCtx,
    message_id: i64,
    user_id: i64,
    now: Millis,
) -> Result<Message, StoreError> {
    let (inst, loc) = (tenant.institution_id(), tenant.location_id());
    let tx = immediate(conn)?;
    let found: Option<(i64, String, i64)> = tx
        .prepare_cached(
            "SELECT m.conversation_id, m.seen_by, m.created_at
               FROM messages m INDEXED BY messages_id
               JOIN conversations c ON c.id = m.conversation_id
              WHERE m.id = ?1 AND c.institution_id = ?2 AND c.location_id = ?3",
        )
        .db()?
        .query_row(params![message_id, inst, loc], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .db()?;
    let Some((conversation_id, seen_by, created_at)) = found else {
        return Err(Missing::Message(message_id).into());
    };
    user_of(&tx, inst, user_id)?;
    let mut ids: Vec<String> = serde_json::from_str(&seen_by).unwrap_or_default();
    let user = user_id.to_string();
    if !ids.contains(&user) {
        ids.push(user);
        let text = serde_json::to_string(&ids).map_err(StoreError::fault)?;
        let at = Millis(now.0.max(created_at));
        tx.prepare_cached(
            "UPDATE messages SET seen_by = ?2, updated_at = max(updated_at, ?3) WHERE id = ?1",
        )
        .db()?
        .execute(params![message_id, text, at.0])
        .db()?;
        touch(&tx, conversation_id, at)?;
        webhooks::fire(&tx, WebhookEvent::MessageUpdated, message_id, now)?;
    }
    let message = load_message(&tx, message_id)?;
    tx.commit().db()?;
    Ok(message)
}
