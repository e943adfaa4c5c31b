//! A first load's copies: into an empty database, a patient, a conversation or a message whose every
//! reference the import itself wrote needs no question to the database. It is checked here by
//! the record path's rules against what `bulk::Written` knows, and streamed into one open
//! `COPY` (no staging table, no probe per row, no check query) while the file is read,
//! checked and encoded here and PostgreSQL stores what came before, instead of each waiting
//! for the other at every run. A record not vouched for ends the copy and takes the checked
//! path, which answers for it as before; only while no run is pending, so that the writes
//! keep the file's order.

use crate::Db;
use crate::bulk::{Kind, Written, seen_by};
use crate::rows::message_table_columns;
use convo_core::import::{self, Record};
use convo_core::phone::bio_phones;
use convo_core::{SenderKind, StoreError};
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::LazyLock;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// The copy open on the import's connection, and into which table.
pub(crate) struct OpenCopy {
    kind: Kind,
    writer: Pin<Box<BinaryCopyInWriter>>,
}

/// The message table's columns as `COPY` sends them (`message_table_columns!`'s order).
const MESSAGE_TYPES: [Type; 17] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::BOOL,
];

/// Rows written frozen: a first load truncates the table in its transaction
/// (`import::defer_indexes`), the one case these copies run in.
static MESSAGES_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "COPY messages ({}) FROM STDIN (FORMAT binary, FREEZE)",
        message_table_columns!()
    )
});

const CONVERSATIONS_SQL: &str = "COPY conversations (institution_id, id, location_id, patient_id,
    created_at, updated_at) FROM STDIN (FORMAT binary)";

const CONVERSATION_TYPES: [Type; 6] = [Type::INT8; 6];

const PATIENTS_SQL: &str = "COPY patients (institution_id, id, email, first_name, middle_name,
    last_name, foreign_id, foreign_id_type, bio, inactive, last_sync_time, guarantor_id,
    unsubscribe_sms, created_at, updated_at) FROM STDIN (FORMAT binary)";

const PATIENT_TYPES: [Type; 15] = [
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::INT8,
    Type::INT8,
    Type::BOOL,
    Type::INT8,
    Type::INT8,
];

const PHONES_SQL: &str =
    "COPY patient_phones (institution_id, phone, patient_id) FROM STDIN (FORMAT binary)";

/// Copies `record` when it is vouched for; `false` when it must go the checked way (the
/// caller ends the copy first: `end_copy`). `now`: the import's time, for absent patient
/// timestamps.
pub(crate) async fn copy(
    tx: &Transaction<'_>,
    record: &Record,
    written: &mut Written,
    now: i64,
) -> Result<bool, StoreError> {
    match record {
        Record::Message(m) => message(tx, m, written).await,
        Record::Conversation(c) => conversation(tx, c, written).await,
        Record::Patient(p) => patient(tx, p, written, now).await,
        _ => Ok(false),
    }
}

/// The copy into `kind`'s table, opened when none is (ending one into another table).
async fn open<'w>(
    tx: &Transaction<'_>,
    written: &'w mut Written,
    kind: Kind,
) -> Result<Pin<&'w mut BinaryCopyInWriter>, StoreError> {
    if written.copy.as_ref().is_some_and(|c| c.kind != kind) {
        end_copy(tx, written).await?;
    }
    if written.copy.is_none() {
        let (sql, types): (&str, &[Type]) = match kind {
            Kind::Message => (MESSAGES_SQL.as_str(), &MESSAGE_TYPES),
            Kind::Conversation => (CONVERSATIONS_SQL, &CONVERSATION_TYPES),
            Kind::Patient => (PATIENTS_SQL, &PATIENT_TYPES),
        };
        let sink = tx.copy_in(sql).await.db()?;
        written.copy = Some(OpenCopy {
            kind,
            writer: Box::pin(BinaryCopyInWriter::new(sink, types)),
        });
    }
    match &mut written.copy {
        Some(copy) => Ok(copy.writer.as_mut()),
        None => Err(StoreError::broken("the import's copy did not open")),
    }
}

async fn message(
    tx: &Transaction<'_>,
    m: &import::Message,
    written: &mut Written,
) -> Result<bool, StoreError> {
    let (Some(below), Some(threads)) = (written.messages_below, &written.threads) else {
        return Ok(false);
    };
    // Rising ids above every id written: none is stored yet.
    let Some(&(inst, patient)) = threads.get(&m.conversation_id).filter(|_| m.id > below) else {
        return Ok(false);
    };
    if written.users.is_none() {
        written.users = Some(owners(tx, written, "SELECT id, institution_id FROM users").await?);
    }
    let Some(users) = &written.users else {
        return Ok(false);
    };
    let of_institution = |user: &i64| users.get(user) == Some(&inst);
    let sender_ok = match (m.sender.kind, m.sender.id) {
        (SenderKind::Patient, Some(id)) => id == patient,
        (SenderKind::User, Some(id)) => of_institution(&id),
        _ => true,
    };
    if !sender_ok
        || !m.seen_by.iter().all(of_institution)
        || m.updated_at.is_some_and(|u| u.0 < m.created_at.0)
    {
        return Ok(false);
    }
    let created = m.created_at.0.0;
    let a = m.attachment.as_ref();
    let values: [&(dyn ToSql + Sync); 17] = [
        &inst,
        &m.id,
        &m.conversation_id,
        &m.body,
        &created,
        &m.updated_at.map_or(created, |t| t.0.0),
        &m.sender.kind.as_str(),
        &m.sender.id,
        &seen_by(m).1,
        &a.is_some(),
        &a.and_then(|a| a.file_name.as_deref()),
        &a.and_then(|a| a.content_type.as_deref()),
        &a.and_then(|a| a.file_size),
        &a.and_then(|a| a.url.as_deref()),
        // An attachment without its own time was attached when the message was written.
        &a.map(|a| a.updated_at.map_or(created, |t| t.0.0)),
        &m.sms_msg_id,
        &m.is_custom_reminder_response,
    ];
    open(tx, written, Kind::Message)
        .await?
        .write(&values)
        .await
        .db()?;
    written.messages_below = Some(m.id);
    Ok(true)
}

/// A conversation is vouched for when its id is new, its location is known, its patient was
/// written by this import in the location's institution, and no conversation written has
/// its pair.
async fn conversation(
    tx: &Transaction<'_>,
    c: &import::Conversation,
    written: &mut Written,
) -> Result<bool, StoreError> {
    let (Some(below), true) = (written.conversations_below, written.threads.is_some()) else {
        return Ok(false);
    };
    if c.id <= below || written.pairs.contains(&(c.location_id, c.patient_id)) {
        return Ok(false);
    }
    if written.locations.is_none() {
        let sql = "SELECT id, institution_id FROM locations";
        written.locations = Some(owners(tx, written, sql).await?);
    }
    let inst = written
        .locations
        .as_ref()
        .and_then(|l| l.get(&c.location_id))
        .copied();
    let Some(inst) = inst.filter(|i| written.patients.get(&c.patient_id) == Some(i)) else {
        return Ok(false);
    };
    let created = c.created_at.0.0;
    let values: [&(dyn ToSql + Sync); 6] = [
        &inst,
        &c.id,
        &c.location_id,
        &c.patient_id,
        &created,
        &created,
    ];
    open(tx, written, Kind::Conversation)
        .await?
        .write(&values)
        .await
        .db()?;
    if let Some(threads) = &mut written.threads {
        threads.insert(c.id, (inst, c.patient_id));
    }
    written.pairs.insert((c.location_id, c.patient_id));
    written.touched.insert(c.id);
    written.conversations_copied = true;
    written.conversations_below = Some(c.id);
    Ok(true)
}

/// A patient is vouched for when the patients table was empty when the import started, its
/// id is new, and its institution exists. Its phones wait for the end of the copy (one copy
/// at a time on a connection).
async fn patient(
    tx: &Transaction<'_>,
    p: &import::Patient,
    written: &mut Written,
    now: i64,
) -> Result<bool, StoreError> {
    match written.patients_below {
        Some(below) if p.id > below && written.threads.is_some() => {}
        _ => return Ok(false),
    }
    if written.institutions.is_none() {
        let sql = "SELECT id, id FROM institutions";
        written.institutions = Some(owners(tx, written, sql).await?);
    }
    if !written
        .institutions
        .as_ref()
        .is_some_and(|i| i.contains_key(&p.institution_id))
    {
        return Ok(false);
    }
    let bio = p.bio.as_deref().unwrap_or("{}");
    // Absent timestamps mean "the import time" (a first write: nothing to keep).
    let time = |t: Option<convo_core::import::Ts>| t.map_or(now, |t| t.0.0);
    let values: [&(dyn ToSql + Sync); 15] = [
        &p.institution_id,
        &p.id,
        &p.email,
        &p.first_name,
        &p.middle_name,
        &p.last_name,
        &p.foreign_id,
        &p.foreign_id_type,
        &bio,
        &p.inactive,
        &p.last_sync_time.map(|t| t.0.0),
        &p.guarantor_id,
        &p.unsubscribe_sms,
        &time(p.created_at),
        &time(p.updated_at),
    ];
    open(tx, written, Kind::Patient)
        .await?
        .write(&values)
        .await
        .db()?;
    let mut phones: Vec<String> = Vec::new();
    for phone in bio_phones(bio) {
        if !phones.contains(&phone) {
            phones.push(phone);
        }
    }
    written
        .phones
        .extend(phones.into_iter().map(|ph| (p.institution_id, ph, p.id)));
    written.patients.insert(p.id, p.institution_id);
    written.patients_below = Some(p.id);
    Ok(true)
}

/// Rows' owning institutions by id, as `sql` reads them (after ending the open copy: it
/// holds the connection).
async fn owners(
    tx: &Transaction<'_>,
    written: &mut Written,
    sql: &str,
) -> Result<HashMap<i64, i64>, StoreError> {
    end_copy(tx, written).await?;
    let rows = tx.query(sql, &[]).await.db()?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Ends the open copy, if any, before anything else is sent on the connection; a patients'
/// copy is followed by their phones'.
pub(crate) async fn end_copy(
    tx: &Transaction<'_>,
    written: &mut Written,
) -> Result<(), StoreError> {
    let Some(mut copy) = written.copy.take() else {
        return Ok(());
    };
    copy.writer.as_mut().finish().await.db()?;
    if copy.kind == Kind::Patient && !written.phones.is_empty() {
        let sink = tx.copy_in(PHONES_SQL).await.db()?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::INT8]);
        let mut writer = std::pin::pin!(writer);
        for (inst, phone, patient) in std::mem::take(&mut written.phones) {
            writer
                .as_mut()
                .write(&[&inst, &phone, &patient])
                .await
                .db()?;
        }
        writer.finish().await.db()?;
    }
    Ok(())
}

/// Builds the message keys the copy went without, if they are still away.
pub(crate) async fn restore_message_keys(
    tx: &Transaction<'_>,
    written: &mut Written,
) -> Result<(), StoreError> {
    for create in std::mem::take(&mut written.message_keys) {
        tx.batch_execute(&create).await.db()?;
    }
    Ok(())
}

/// After the last record of a first load: the keys back, and every copied conversation in
/// `import_touched` (the table held none before, so all of them are this import's).
pub(crate) async fn finish(tx: &Transaction<'_>, written: &mut Written) -> Result<(), StoreError> {
    end_copy(tx, written).await?;
    restore_message_keys(tx, written).await?;
    if written.conversations_copied {
        tx.execute(
            "INSERT INTO import_touched (institution_id, id)
                 SELECT institution_id, id FROM conversations
             ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .db()?;
    }
    Ok(())
}
