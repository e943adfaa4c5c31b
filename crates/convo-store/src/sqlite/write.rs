//! The write side (CONTRACT §6): staff sends, seen, inbound SMS. Each is one IMMEDIATE
//! transaction on the writer connection that also moves the conversation's `updated_at` (the
//! activity slices and counts follow by trigger), so a polling client sees the write at once.

use super::list::{
    ONE_CONVERSATION_SQL, ONE_MESSAGE_SQL, attach_messages, conversation_from, message_from,
};
use super::{Db, migrations};
use convo_core::phone::{bio_phones, e164};
use convo_core::write::{
    IdempotencyKey, InboundOutcome, InboundSms, Keyword, NewAttachment, NewMessage, keyword,
};
use convo_core::{
    Conversation, Message, MessageQuery, Millis, Missing, Refusal, StoreError, TenantCtx,
};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

fn refuse<T>(refusal: Refusal) -> Result<T, StoreError> {
    Err(StoreError::Refused(refusal))
}

pub(crate) fn get_conversation(
    conn: &mut Connection,
    tenant: &TenantCtx,
    id: i64,
    messages: Option<&MessageQuery>,
) -> Result<Option<Conversation>, StoreError> {
    let tx = conn.transaction().db()?;
    let found = tx
        .prepare_cached(ONE_CONVERSATION_SQL)
        .db()?
        .query_row(
            params![tenant.institution_id(), tenant.location_id(), id],
            conversation_from,
        )
        .optional()
        .db()?;
    let Some(conversation) = found else {
        return Ok(None);
    };
    let mut one = [conversation];
    if let Some(q) = messages {
        attach_messages(&tx, &mut one, q)?;
    }
    tx.commit().db()?;
    let [conversation] = one;
    Ok(Some(conversation))
}

fn load_message(tx: &Transaction, id: i64) -> Result<Message, StoreError> {
    tx.prepare_cached(ONE_MESSAGE_SQL)
        .db()?
        .query_row([id], message_from)
        .db()
}

/// The next free id of a table keyed by integer ids that clients also import.
fn next_id(tx: &Transaction, table: &str) -> Result<i64, StoreError> {
    let sql = match table {
        "messages" => "SELECT coalesce(max(id), 0) + 1 FROM messages",
        "conversations" => "SELECT coalesce(max(id), 0) + 1 FROM conversations",
        _ => "SELECT coalesce(max(id), 0) + 1 FROM patients",
    };
    tx.prepare_cached(sql)
        .db()?
        .query_row([], |r| r.get(0))
        .db()
}

/// The conversation of (location, patient), created at `now` if there is none yet.
fn conversation_for(
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
    let id = next_id(tx, "conversations")?;
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
fn touch(tx: &Transaction, conversation_id: i64, at: Millis) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE conversations SET updated_at = max(updated_at, ?2) WHERE id = ?1")
        .db()?
        .execute(params![conversation_id, at.0])
        .db()?;
    Ok(())
}

struct Row<'a> {
    id: i64,
    conversation_id: i64,
    body: &'a str,
    at: Millis,
    sender: (&'static str, Option<i64>),
    attachment: Option<&'a NewAttachment>,
    sms_msg_id: Option<i64>,
    is_custom_reminder_response: bool,
}

fn insert_message(tx: &Transaction, m: &Row) -> Result<(), StoreError> {
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
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
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
    let id = next_id(&tx, "messages")?;
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
        &Row {
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
            "INSERT INTO send_keys (api_key_id, key, message_id, created_at)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .db()?
        .execute(params![key.api_key_id, key.key, id, now.0])
        .db()?;
    }
    touch(&tx, conversation_id, now)?;
    let message = load_message(&tx, id)?;
    tx.commit().db()?;
    Ok(message)
}

/// The message a key already sent, when this is the same send again; `Invalid` when the key
/// was used for a different one (a client bug that must not pass silently).
fn replay(
    tx: &Transaction,
    (inst, loc): (i64, i64),
    m: &NewMessage,
    key: &IdempotencyKey,
) -> Result<Option<Message>, StoreError> {
    let sent: Option<i64> = tx
        .prepare_cached("SELECT message_id FROM send_keys WHERE api_key_id = ?1 AND key = ?2")
        .db()?
        .query_row(params![key.api_key_id, key.key], |r| r.get(0))
        .optional()
        .db()?;
    let Some(id) = sent else {
        return Ok(None);
    };
    type Sent = (i64, i64, i64, Option<i64>, String, Option<String>);
    let first: Sent = tx
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
    let again: Sent = (
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
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
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
    }
    let message = load_message(&tx, message_id)?;
    tx.commit().db()?;
    Ok(message)
}

/// Among patients sharing a number, the family's guarantor, else the lowest id.
fn pick_patient(matches: &[(i64, Option<i64>)]) -> Option<i64> {
    let guarantor = matches.iter().map(|&(id, _)| id).find(|id| {
        matches
            .iter()
            .any(|&(other, g)| other != *id && g == Some(*id))
    });
    guarantor.or_else(|| matches.iter().map(|&(id, _)| id).min())
}

pub(crate) fn receive(
    conn: &mut Connection,
    sms: InboundSms,
    now: Millis,
) -> Result<InboundOutcome, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    let word = keyword(&sms.body);
    let seen: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT s.message_id, m.conversation_id FROM inbound_sids s
               JOIN messages m INDEXED BY messages_id ON m.id = s.message_id
              WHERE s.sid = ?1",
        )
        .db()?
        .query_row([&sms.sid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    if let Some((message_id, conversation_id)) = seen {
        return Ok(InboundOutcome {
            message_id,
            conversation_id,
            duplicate: true,
            keyword: word,
        });
    }
    let location: Option<(i64, i64)> = match e164(&sms.to) {
        Some(to) => tx
            .prepare_cached(
                "SELECT id, institution_id FROM locations WHERE phone_e164 = ?1
                 ORDER BY id LIMIT 1",
            )
            .db()?
            .query_row([to], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .db()?,
        None => None,
    };
    let Some((loc, inst)) = location else {
        return Err(Missing::LocationNumber.into());
    };
    let Some(from) = e164(&sms.from) else {
        return refuse(Refusal::FromNotAPhone);
    };
    let matches: Vec<(i64, Option<i64>)> = tx
        .prepare_cached(
            "SELECT p.id, p.guarantor_id FROM patient_phones pp
               JOIN patients p ON p.id = pp.patient_id
              WHERE pp.institution_id = ?1 AND pp.phone = ?2",
        )
        .db()?
        .query_map(params![inst, from], |r| Ok((r.get(0)?, r.get(1)?)))
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let patient_id = match pick_patient(&matches) {
        Some(id) => id,
        None => {
            let id = next_id(&tx, "patients")?;
            let bio =
                serde_json::json!({"cell_phone_number": sms.from.trim(), "non_patient": true})
                    .to_string();
            tx.prepare_cached(
                "INSERT INTO patients (id, institution_id, bio, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )
            .db()?
            .execute(params![id, inst, bio, now.0])
            .db()?;
            migrations::set_patient_phones(&tx, id, inst, &bio).db()?;
            id
        }
    };
    if let Some(word) = word {
        // Every patient of the institution texting from this number: a family shares one.
        tx.prepare_cached(
            "UPDATE patients SET unsubscribe_sms = ?3, updated_at = ?4
              WHERE id IN (SELECT patient_id FROM patient_phones
                            WHERE institution_id = ?1 AND phone = ?2)
                AND unsubscribe_sms IS NOT ?3",
        )
        .db()?
        .execute(params![inst, from, word == Keyword::OptOut, now.0])
        .db()?;
    }
    let conversation_id = conversation_for(&tx, (inst, loc), patient_id, now)?;
    let previous: Option<String> = tx
        .prepare_cached(
            "SELECT sender_type FROM messages NOT INDEXED WHERE conversation_id = ?1
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .db()?
        .query_row([conversation_id], |r| r.get(0))
        .optional()
        .db()?;
    let id = next_id(&tx, "messages")?;
    insert_message(
        &tx,
        &Row {
            id,
            conversation_id,
            body: &sms.body,
            at: now,
            sender: ("Patient", Some(patient_id)),
            attachment: sms.media.as_ref(),
            sms_msg_id: None,
            is_custom_reminder_response: previous.as_deref() == Some("System"),
        },
    )?;
    tx.prepare_cached("INSERT INTO inbound_sids (sid, message_id) VALUES (?1, ?2)")
        .db()?
        .execute(params![sms.sid, id])
        .db()?;
    touch(&tx, conversation_id, now)?;
    tx.commit().db()?;
    Ok(InboundOutcome {
        message_id: id,
        conversation_id,
        duplicate: false,
        keyword: word,
    })
}

#[cfg(test)]
mod tests {
    use super::pick_patient;

    #[test]
    fn a_shared_number_goes_to_the_guarantor_else_the_lowest_id() {
        assert_eq!(pick_patient(&[]), None);
        assert_eq!(pick_patient(&[(7, None)]), Some(7));
        assert_eq!(pick_patient(&[(9, None), (4, None)]), Some(4));
        // 9 is the guarantor of 4 and 12.
        assert_eq!(
            pick_patient(&[(4, Some(9)), (9, None), (12, Some(9))]),
            Some(9)
        );
        // A guarantor outside the matches does not count.
        assert_eq!(pick_patient(&[(5, Some(1)), (6, Some(1))]), Some(5));
    }
}
