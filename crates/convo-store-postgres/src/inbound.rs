//! A patient's SMS (CONTRACT §6), as the provider's webhook reports it: routed to a location by
//! the number it was sent to and to a patient by the number it came from, carrier keywords
//! applied, stored once per provider message id however retries race between processes.

use crate::messages::{Joined, MessageRow, conversation_locked, insert_message, next_id, touch};
use crate::pipeline::pipelined;
use crate::{Db, phones, webhooks};
use convo_core::phone::e164;
use convo_core::webhook::WebhookEvent;
use convo_core::write::{InboundOutcome, InboundSms, Keyword, keyword, pick_patient};
use convo_core::{Millis, Missing, Refusal, StoreError};
use deadpool_postgres::Transaction;

pub(crate) async fn receive(
    tx: &Transaction<'_>,
    sms: &InboundSms,
    now: Millis,
) -> Result<InboundOutcome, StoreError> {
    let word = keyword(&sms.body);
    let (loc, inst) = route_inbound(tx, &sms.to).await?;
    // The provider's id is claimed first: a retry racing the first webhook (in this process or
    // another) waits here for it to commit, then finds the message stored.
    if let Some((message_id, conversation_id)) = claim_sid(tx, inst, &sms.sid).await? {
        return Ok(InboundOutcome {
            message_id,
            conversation_id,
            duplicate: true,
            keyword: word,
        });
    }
    let from = e164(&sms.from).ok_or(Refusal::FromNotAPhone)?;
    let patient_id = patient_for_number(tx, inst, &from, &sms.from, now).await?;
    if let Some(word) = word {
        apply_keyword(tx, inst, &from, word, now).await?;
    }
    let Joined {
        conversation_id,
        id: message_id,
        at,
    } = conversation_locked(tx, (inst, loc), patient_id, now).await?;
    insert_inbound(tx, inst, message_id, conversation_id, patient_id, sms, at).await?;
    pipelined!(
        touch(tx, inst, conversation_id, at),
        sid_stored(tx, inst, &sms.sid, message_id),
        webhooks::fire(tx, inst, WebhookEvent::MessageCreated, message_id, at)
    )?;
    Ok(InboundOutcome {
        message_id,
        conversation_id,
        duplicate: false,
        keyword: word,
    })
}

/// The location (and its institution) whose number the SMS was sent to; the lowest id when two
/// share one.
async fn route_inbound(tx: &Transaction<'_>, to: &str) -> Result<(i64, i64), StoreError> {
    let Some(to) = e164(to) else {
        return Err(Missing::LocationNumber.into());
    };
    let stmt = tx
        .prepare_cached(
            "SELECT location_id, institution_id FROM location_numbers WHERE phone_e164 = $1
              ORDER BY location_id LIMIT 1",
        )
        .await
        .db()?;
    match tx.query_opt(&stmt, &[&to]).await.db()? {
        Some(row) => Ok((row.get(0), row.get(1))),
        None => Err(Missing::LocationNumber.into()),
    }
}

/// `None` when this webhook is the first with its provider id (now claimed, for a message
/// `sid_stored` names); else the message and conversation the first one stored.
async fn claim_sid(
    tx: &Transaction<'_>,
    inst: i64,
    sid: &str,
) -> Result<Option<(i64, i64)>, StoreError> {
    let claim = tx
        .prepare_cached(
            "INSERT INTO inbound_sids (institution_id, sid, message_id) VALUES ($1, $2, 0)
             ON CONFLICT DO NOTHING",
        )
        .await
        .db()?;
    if tx.execute(&claim, &[&inst, &sid]).await.db()? == 1 {
        return Ok(None);
    }
    let first = tx
        .prepare_cached(
            "SELECT s.message_id, m.conversation_id FROM inbound_sids s
               JOIN messages m ON m.institution_id = s.institution_id AND m.id = s.message_id
              WHERE s.institution_id = $1 AND s.sid = $2",
        )
        .await
        .db()?;
    let row = tx.query_one(&first, &[&inst, &sid]).await.db()?;
    Ok(Some((row.get(0), row.get(1))))
}

async fn sid_stored(
    tx: &Transaction<'_>,
    inst: i64,
    sid: &str,
    message_id: i64,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE inbound_sids SET message_id = $3 WHERE institution_id = $1 AND sid = $2",
        )
        .await
        .db()?;
    tx.execute(&stmt, &[&inst, &sid, &message_id]).await.db()?;
    Ok(())
}

/// The institution's patient texting from `from` (normalised), or a new non-patient with the
/// number as sent, so every SMS has a conversation staff can answer. Two first texts from one
/// new number (racing webhooks) make one patient: the number is locked while it is looked up.
async fn patient_for_number(
    tx: &Transaction<'_>,
    inst: i64,
    from: &str,
    as_sent: &str,
    now: Millis,
) -> Result<i64, StoreError> {
    if let Some(id) = known_patient(tx, inst, from).await? {
        return Ok(id);
    }
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1::text || ':' || $2, 0))")
        .await
        .db()?;
    tx.execute(&lock, &[&inst.to_string(), &from]).await.db()?;
    // Another transaction may have created the patient while this one waited.
    if let Some(id) = known_patient(tx, inst, from).await? {
        return Ok(id);
    }
    let id = next_id(tx, "patients").await?;
    let bio =
        serde_json::json!({"cell_phone_number": as_sent.trim(), "non_patient": true}).to_string();
    let insert = tx
        .prepare_cached(
            "INSERT INTO patients (institution_id, id, bio, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .await
        .db()?;
    tx.execute(&insert, &[&inst, &id, &bio, &now.0])
        .await
        .db()?;
    phones::set_patient_phones(tx, id, inst, &bio).await?;
    Ok(id)
}

async fn known_patient(
    tx: &Transaction<'_>,
    inst: i64,
    from: &str,
) -> Result<Option<i64>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT p.id, p.guarantor_id FROM patient_phones pp
               JOIN patients p ON p.institution_id = pp.institution_id AND p.id = pp.patient_id
              WHERE pp.institution_id = $1 AND pp.phone = $2",
        )
        .await
        .db()?;
    let matches: Vec<(i64, Option<i64>)> = tx
        .query(&stmt, &[&inst, &from])
        .await
        .db()?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(pick_patient(&matches))
}

/// STOP or START from a number applies to every patient of the institution texting from it: a
/// family shares one.
async fn apply_keyword(
    tx: &Transaction<'_>,
    inst: i64,
    from: &str,
    word: Keyword,
    now: Millis,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE patients SET unsubscribe_sms = $3, updated_at = $4
              WHERE institution_id = $1
                AND id IN (SELECT patient_id FROM patient_phones
                            WHERE institution_id = $1 AND phone = $2)
                AND unsubscribe_sms IS DISTINCT FROM $3",
        )
        .await
        .db()?;
    tx.execute(&stmt, &[&inst, &from, &(word == Keyword::OptOut), &now.0])
        .await
        .db()?;
    Ok(())
}

/// The message itself. A reply to a reminder (the thread's previous message is the system's)
/// is flagged as such.
async fn insert_inbound(
    tx: &Transaction<'_>,
    inst: i64,
    id: i64,
    conversation_id: i64,
    patient_id: i64,
    sms: &InboundSms,
    now: Millis,
) -> Result<(), StoreError> {
    let previous_sql = tx
        .prepare_cached(
            "SELECT sender_type FROM messages WHERE institution_id = $1 AND conversation_id = $2
              ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .await
        .db()?;
    let previous: Option<String> = tx
        .query_opt(&previous_sql, &[&inst, &conversation_id])
        .await
        .db()?
        .map(|r| r.get(0));
    insert_message(
        tx,
        &MessageRow {
            institution_id: inst,
            id,
            conversation_id,
            body: &sms.body,
            at: now,
            sender: ("Patient", Some(patient_id)),
            attachment: sms.media.as_ref(),
            sms_msg_id: None,
            is_custom_reminder_response: previous.as_deref() == Some("System"),
        },
    )
    .await
}
