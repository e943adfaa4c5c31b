//! `convo export`: every record, from one snapshot (a read-only REPEATABLE READ transaction, so
//! writers carry on), in the order an import accepts, read through a portal a batch at a time
//! so that memory stays flat whatever the size.

use crate::Db;
use convo_core::import::{
    AttachmentRec, Conversation, Institution, Location, Message, Patient, Record, SenderRef, Ts,
    User, seen_by_ids,
};
use convo_core::store::{RecordBatches, export_closed};
use convo_core::{Millis, SenderKind, StoreError};
use deadpool_postgres::Object;
use tokio::sync::mpsc;
use tokio_postgres::{IsolationLevel, Row};

type Mapper = fn(&Row) -> Result<Record, tokio_postgres::Error>;

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
           FROM messages ORDER BY id",
        message,
    ),
];

/// Rows fetched from the portal at a time.
const FETCH: i32 = 2_000;

pub(crate) async fn run(
    client: &mut Object,
    out: &mpsc::Sender<Vec<Record>>,
) -> Result<u64, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .db()?;
    let mut batches = RecordBatches::default();
    for (sql, map) in TABLES {
        let stmt = tx.prepare(sql).await.db()?;
        let portal = tx.bind(&stmt, &[]).await.db()?;
        loop {
            let rows = tx.query_portal(&portal, FETCH).await.db()?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                if let Some(full) = batches.push(map(row).db()?) {
                    out.send(full).await.map_err(|_| export_closed())?;
                }
            }
        }
    }
    tx.commit().await.db()?;
    let (rest, count) = batches.finish();
    if !rest.is_empty() {
        out.send(rest).await.map_err(|_| export_closed())?;
    }
    Ok(count)
}

fn ts(ms: i64) -> Ts {
    Ts(Millis(ms))
}

fn institution(r: &Row) -> Result<Record, tokio_postgres::Error> {
    Ok(Record::Institution(Institution {
        id: r.try_get(0)?,
        subdomain: r.try_get(1)?,
        name: r.try_get(2)?,
    }))
}

fn location(r: &Row) -> Result<Record, tokio_postgres::Error> {
    Ok(Record::Location(Location {
        id: r.try_get(0)?,
        institution_id: r.try_get(1)?,
        name: r.try_get(2)?,
        tz: r.try_get(3)?,
        phone_number: r.try_get(4)?,
    }))
}

fn user(r: &Row) -> Result<Record, tokio_postgres::Error> {
    Ok(Record::User(User {
        id: r.try_get(0)?,
        institution_id: r.try_get(1)?,
        first_name: r.try_get(2)?,
        last_name: r.try_get(3)?,
        email: r.try_get(4)?,
        image: r.try_get(5)?,
    }))
}

fn patient(r: &Row) -> Result<Record, tokio_postgres::Error> {
    Ok(Record::Patient(Patient {
        id: r.try_get(0)?,
        institution_id: r.try_get(1)?,
        first_name: r.try_get(2)?,
        middle_name: r.try_get(3)?,
        last_name: r.try_get(4)?,
        email: r.try_get(5)?,
        foreign_id: r.try_get(6)?,
        foreign_id_type: r.try_get(7)?,
        bio: Some(r.try_get(8)?),
        inactive: r.try_get(9)?,
        guarantor_id: r.try_get(10)?,
        unsubscribe_sms: r.try_get(11)?,
        last_sync_time: r.try_get::<_, Option<i64>>(12)?.map(ts),
        created_at: Some(ts(r.try_get(13)?)),
        updated_at: Some(ts(r.try_get(14)?)),
    }))
}

fn conversation(r: &Row) -> Result<Record, tokio_postgres::Error> {
    Ok(Record::Conversation(Conversation {
        id: r.try_get(0)?,
        location_id: r.try_get(1)?,
        patient_id: r.try_get(2)?,
        created_at: ts(r.try_get(3)?),
    }))
}

fn message(r: &Row) -> Result<Record, tokio_postgres::Error> {
    let kind_text: &str = r.try_get(5)?;
    let kind = SenderKind::parse(kind_text).unwrap_or(SenderKind::System);
    let has_attachment: bool = r.try_get(8)?;
    let attachment = if has_attachment {
        Some(AttachmentRec {
            file_name: r.try_get(9)?,
            content_type: r.try_get(10)?,
            file_size: r.try_get(11)?,
            url: r.try_get(12)?,
            updated_at: r.try_get::<_, Option<i64>>(13)?.map(ts),
        })
    } else {
        None
    };
    let seen: &str = r.try_get(7)?;
    Ok(Record::Message(Message {
        id: r.try_get(0)?,
        conversation_id: r.try_get(1)?,
        body: r.try_get(2)?,
        created_at: ts(r.try_get(3)?),
        updated_at: Some(ts(r.try_get(4)?)),
        sender: SenderRef {
            kind,
            id: if kind == SenderKind::System {
                None
            } else {
                r.try_get(6)?
            },
        },
        seen_by: seen_by_ids(seen),
        attachment,
        sms_msg_id: r.try_get(14)?,
        is_custom_reminder_response: r.try_get(15)?,
    }))
}
