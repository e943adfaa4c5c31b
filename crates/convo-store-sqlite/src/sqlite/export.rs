//! `convo export`: every record, from one read snapshot, in the order an import accepts.

use super::Db;
use convo_core::import::{
    AttachmentRec, Conversation, Institution, Location, Message, Patient, Record, SenderRef, Ts,
    User, seen_by_ids,
};
use convo_core::store::{RecordBatches, export_closed};
use convo_core::{Millis, SenderKind, StoreError};
use rusqlite::{Connection, Row};
use tokio::sync::mpsc;

type Mapper = fn(&Row) -> rusqlite::Result<Record>;

/// The tables in import order, each read by id.
const TABLES: &[(&str, Mapper)] = &[
    (
        "SELECT id, subdomain, name FROM institutions ORDER BY id",
        institution,
    ),
    (
        "SELECT id, institution_id, name, tz, phone_number FROM locations ORDER BY id",
        location,
    ),
    (
        "SELECT id, institution_id, first_name, last_name, email, image FROM users ORDER BY id",
        user,
    ),
    (
        "SELECT id, institution_id, first_name, middle_name, last_name, email, foreign_id,
                foreign_id_type, bio, inactive, guarantor_id, unsubscribe_sms, last_sync_time,
                created_at, updated_at
           FROM patients ORDER BY id",
        patient,
    ),
    (
        "SELECT id, location_id, patient_id, created_at FROM conversations ORDER BY id",
        conversation,
    ),
    (
        "SELECT id, conversation_id, body, created_at, updated_at, sender_type, sender_id,
                seen_by, has_attachment, attachment_file_name, attachment_content_type,
                attachment_file_size, attachment_url, attachment_updated_at, sms_msg_id,
                is_custom_reminder_response
           FROM messages INDEXED BY messages_id ORDER BY id",
        message,
    ),
];

pub(crate) fn run(
    conn: &mut Connection,
    out: &mpsc::Sender<Vec<Record>>,
) -> Result<u64, StoreError> {
    // One read transaction: every table from the same snapshot, writers carrying on.
    let tx = conn.transaction().db()?;
    let mut batches = RecordBatches::default();
    for (sql, map) in TABLES {
        let mut stmt = tx.prepare(sql).db()?;
        let mut rows = stmt.query([]).db()?;
        while let Some(row) = rows.next().db()? {
            if let Some(full) = batches.push(map(row).db()?) {
                out.blocking_send(full).map_err(|_| export_closed())?;
            }
        }
    }
    let (rest, count) = batches.finish();
    if !rest.is_empty() {
        out.blocking_send(rest).map_err(|_| export_closed())?;
    }
    Ok(count)
}

fn ts(ms: i64) -> Ts {
    Ts(Millis(ms))
}

fn institution(r: &Row) -> rusqlite::Result<Record> {
    Ok(Record::Institution(Institution {
        id: r.get(0)?,
        subdomain: r.get(1)?,
        name: r.get(2)?,
    }))
}

fn location(r: &Row) -> rusqlite::Result<Record> {
    Ok(Record::Location(Location {
        id: r.get(0)?,
        institution_id: r.get(1)?,
        name: r.get(2)?,
        tz: r.get(3)?,
        phone_number: r.get(4)?,
    }))
}

fn user(r: &Row) -> rusqlite::Result<Record> {
    Ok(Record::User(User {
        id: r.get(0)?,
        institution_id: r.get(1)?,
        first_name: r.get(2)?,
        last_name: r.get(3)?,
        email: r.get(4)?,
        image: r.get(5)?,
    }))
}

fn patient(r: &Row) -> rusqlite::Result<Record> {
    Ok(Record::Patient(Patient {
        id: r.get(0)?,
        institution_id: r.get(1)?,
        first_name: r.get(2)?,
        middle_name: r.get(3)?,
        last_name: r.get(4)?,
        email: r.get(5)?,
        foreign_id: r.get(6)?,
        foreign_id_type: r.get(7)?,
        bio: Some(r.get(8)?),
        inactive: r.get(9)?,
        guarantor_id: r.get(10)?,
        unsubscribe_sms: r.get(11)?,
        last_sync_time: r.get::<_, Option<i64>>(12)?.map(ts),
        created_at: Some(ts(r.get(13)?)),
        updated_at: Some(ts(r.get(14)?)),
    }))
}

fn conversation(r: &Row) -> rusqlite::Result<Record> {
    Ok(Record::Conversation(Conversation {
        id: r.get(0)?,
        location_id: r.get(1)?,
        patient_id: r.get(2)?,
        created_at: ts(r.get(3)?),
    }))
}

fn message(r: &Row) -> rusqlite::Result<Record> {
    let kind_text: String = r.get(5)?;
    let kind = SenderKind::parse(&kind_text).unwrap_or(SenderKind::System);
    let has_attachment: bool = r.get(8)?;
    let attachment = if has_attachment {
        Some(AttachmentRec {
            file_name: r.get(9)?,
            content_type: r.get(10)?,
            file_size: r.get(11)?,
            url: r.get(12)?,
            updated_at: r.get::<_, Option<i64>>(13)?.map(ts),
        })
    } else {
        None
    };
    let seen: String = r.get(7)?;
    Ok(Record::Message(Message {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        body: r.get(2)?,
        created_at: ts(r.get(3)?),
        updated_at: Some(ts(r.get(4)?)),
        sender: SenderRef {
            kind,
            id: if kind == SenderKind::System {
                None
            } else {
                r.get(6)?
            },
        },
        seen_by: seen_by_ids(&seen),
        attachment,
        sms_msg_id: r.get(14)?,
        is_custom_reminder_response: r.get(15)?,
    }))
}
