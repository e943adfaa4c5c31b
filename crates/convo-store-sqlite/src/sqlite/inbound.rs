//! A patient's SMS (CONTRACT §6), as the provider's webhook reports it: routed to a location by
//! the number it was sent to and to a patient by the number it came from, carrier keywords
//! applied, stored once per provider message id. One IMMEDIATE transaction.

use super::messages::{IdTable, MessageRow, conversation_for, insert_message, next_id, touch};
use super::{Db, immediate, phones, webhooks};
use convo_core::phone::e164;
use convo_core::webhook::WebhookEvent;
use convo_core::write::{InboundOutcome, InboundSms, Keyword, keyword, pick_patient};
use convo_core::{Millis, Missing, Refusal, StoreError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

pub(crate) fn receive(
    conn: &mut Connection,
    sms: InboundSms,
    now: Millis,
) -> Result<InboundOutcome, StoreError> {
    let tx = immediate(conn)?;
    let word = keyword(&sms.body);
    if let Some((message_id, conversation_id)) = already_received(&tx, &sms.sid)? {
        return Ok(InboundOutcome {
            message_id,
            conversation_id,
            duplicate: true,
            keyword: word,
        });
    }
    let (loc, inst) = route_inbound(&tx, &sms.to)?;
    let from = e164(&sms.from).ok_or(Refusal::FromNotAPhone)?;
    let patient_id = patient_for_number(&tx, inst, &from, &sms.from, now)?;
    if let Some(word) = word {
        apply_keyword(&tx, inst, &from, word, now)?;
    }
    let conversation_id = conversation_for(&tx, (inst, loc), patient_id, now)?;
    let message_id = insert_inbound(&tx, conversation_id, patient_id, &sms, now)?;
    touch(&tx, conversation_id, now)?;
    webhooks::fire(&tx, WebhookEvent::MessageCreated, message_id, now)?;
    tx.commit().db()?;
    Ok(InboundOutcome {
        message_id,
        conversation_id,
        duplicate: false,
        keyword: word,
    })
}

/// A provider retries a webhook it did not see answered: the same message id is the same
/// message, already stored.
fn already_received(tx: &Transaction, sid: &str) -> Result<Option<(i64, i64)>, StoreError> {
    tx.prepare_cached(
        "SELECT s.message_id, m.conversation_id FROM inbound_sids s
           JOIN messages m INDEXED BY messages_id ON m.id = s.message_id
          WHERE s.sid = ?1",
    )
    .db()?
    .query_row([sid], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
    .db()
}

/// The location (and its institution) whose number the SMS was sent to; the lowest id when two
/// share one.
fn route_inbound(tx: &Transaction, to: &str) -> Result<(i64, i64), StoreError> {
    let location: Option<(i64, i64)> = match e164(to) {
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
    location.ok_or_else(|| Missing::LocationNumber.into())
}

/// The institution's patient texting from `from` (normalised), or a new non-patient with the
/// number as sent, so every SMS has a conversation staff can answer.
fn patient_for_number(
    tx: &Transaction,
    inst: i64,
    from: &str,
    as_sent: &str,
    now: Millis,
) -> Result<i64, StoreError> {
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
    if let Some(id) = pick_patient(&matches) {
        return Ok(id);
    }
    let id = next_id(tx, IdTable::Patients)?;
    let bio =
        serde_json::json!({"cell_phone_number": as_sent.trim(), "non_patient": true}).to_string();
    tx.prepare_cached(
        "INSERT INTO patients (id, institution_id, bio, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )
    .db()?
    .execute(params![id, inst, bio, now.0])
    .db()?;
    phones::set_patient_phones(tx, id, inst, &bio).db()?;
    Ok(id)
}

/// STOP or START from a number applies to every patient of the institution texting from it: a
/// family shares one.
fn apply_keyword(
    tx: &Transaction,
    inst: i64,
    from: &str,
    word: Keyword,
    now: Millis,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE patients SET unsubscribe_sms = ?3, updated_at = ?4
          WHERE id IN (SELECT patient_id FROM patient_phones
                        WHERE institution_id = ?1 AND phone = ?2)
            AND unsubscribe_sms IS NOT ?3",
    )
    .db()?
    .execute(params![inst, from, word == Keyword::OptOut, now.0])
    .db()?;
    Ok(())
}

/// The message itself, and its provider id for `already_received`. A reply to a reminder (the
/// thread's previous message is the system's) is flagged as such.
fn insert_inbound(
    tx: &Transaction,
    conversation_id: i64,
    patient_id: i64,
    sms: &InboundSms,
    now: Millis,
) -> Result<i64, StoreError> {
    let previous: Option<String> = tx
        .prepare_cached(
            "SELECT sender_type FROM messages NOT INDEXED WHERE conversation_id = ?1
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .db()?
        .query_row([conversation_id], |r| r.get(0))
        .optional()
        .db()?;
    let id = next_id(tx, IdTable::Messages)?;
    insert_message(
        tx,
        &MessageRow {
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
    Ok(id)
}
