//! Rows and the domain: the column lists every read of a conversation or a message selects, and
//! the mappers that turn those rows into `convo_core` types.

use convo_core::{
    Attachment, Conversation, Message, Millis, Patient, Sender, SenderKind, full_name,
};
use rusqlite::Row;

/// A conversation with its patient, as `conversation_from` reads it.
macro_rules! conversation_columns {
    () => {
        "SELECT c.id, c.created_at, c.updated_at, p.id, p.email, p.first_name, p.middle_name, \
         p.last_name, p.created_at, p.updated_at, p.institution_id, p.foreign_id, \
         p.foreign_id_type, p.bio, p.inactive, p.last_sync_time, p.guarantor_id, \
         p.unsubscribe_sms"
    };
}
pub(crate) use conversation_columns;

/// A message with its sender's name parts, as `message_from` reads it.
macro_rules! message_columns {
    () => {
        "SELECT m.id, m.conversation_id, m.body, m.created_at, m.updated_at, m.sender_type,
                m.sender_id, m.seen_by, m.has_attachment, m.attachment_file_name,
                m.attachment_content_type, m.attachment_file_size, m.attachment_url,
                m.attachment_updated_at, m.sms_msg_id, m.is_custom_reminder_response,
                u.first_name, u.last_name, u.image, sp.first_name, sp.middle_name, sp.last_name"
    };
}

macro_rules! sender_joins {
    () => {
        "
         LEFT JOIN users u ON m.sender_type = 'User' AND u.id = m.sender_id
         LEFT JOIN patients sp ON m.sender_type = 'Patient' AND sp.id = m.sender_id"
    };
}
pub(crate) use {message_columns, sender_joins};

/// One conversation of a location (`GET /conversations/{id}`).
pub(crate) const ONE_CONVERSATION_SQL: &str = concat!(
    conversation_columns!(),
    "
     FROM conversations c
     JOIN patients p ON p.id = c.patient_id AND p.institution_id = ?1
     WHERE c.id = ?3 AND c.institution_id = ?1 AND c.location_id = ?2"
);

/// One message by id (the write side answers with it).
pub(crate) const ONE_MESSAGE_SQL: &str = concat!(
    message_columns!(),
    "
     FROM messages m INDEXED BY messages_id",
    sender_joins!(),
    "
     WHERE m.id = ?1"
);

/// A row of `conversation_columns!()`, messages not yet attached.
pub(crate) fn conversation_from(r: &Row) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        created_at: Millis(r.get(1)?),
        updated_at: Millis(r.get(2)?),
        patient: patient_from(r, 3)?,
        messages: Vec::new(),
    })
}

pub(crate) fn patient_from(r: &Row, at: usize) -> rusqlite::Result<Patient> {
    Ok(Patient {
        id: r.get(at)?,
        email: r.get(at + 1)?,
        first_name: r.get(at + 2)?,
        middle_name: r.get(at + 3)?,
        last_name: r.get(at + 4)?,
        created_at: Millis(r.get(at + 5)?),
        updated_at: Millis(r.get(at + 6)?),
        institution_id: r.get(at + 7)?,
        foreign_id: r.get(at + 8)?,
        foreign_id_type: r.get(at + 9)?,
        bio: r.get(at + 10)?,
        inactive: r.get(at + 11)?,
        last_sync_time: r.get::<_, Option<i64>>(at + 12)?.map(Millis),
        guarantor_id: r.get(at + 13)?,
        unsubscribe_sms: r.get(at + 14)?,
    })
}

pub(crate) fn message_from(r: &Row) -> rusqlite::Result<Message> {
    let kind_text: String = r.get(5)?;
    let kind = SenderKind::parse(&kind_text).unwrap_or(SenderKind::System);
    let (name, image) = match kind {
        SenderKind::User => (
            full_name(&[
                r.get_ref(16)?.as_str_or_null()?,
                r.get_ref(17)?.as_str_or_null()?,
            ]),
            r.get(18)?,
        ),
        SenderKind::Patient => (
            full_name(&[
                r.get_ref(19)?.as_str_or_null()?,
                r.get_ref(20)?.as_str_or_null()?,
                r.get_ref(21)?.as_str_or_null()?,
            ]),
            None,
        ),
        SenderKind::System => (None, None),
    };
    let has_attachment: bool = r.get(8)?;
    let attachment = if has_attachment {
        Some(Attachment {
            file_name: r.get(9)?,
            content_type: r.get(10)?,
            file_size: r.get(11)?,
            url: r.get(12)?,
            updated_at: r.get::<_, Option<i64>>(13)?.map(Millis),
        })
    } else {
        None
    };
    Ok(Message {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        body: r.get(2)?,
        created_at: Millis(r.get(3)?),
        updated_at: Millis(r.get(4)?),
        sender: Sender {
            kind,
            id: if kind == SenderKind::System {
                None
            } else {
                r.get(6)?
            },
            name,
            image,
        },
        seen_by: r.get(7)?,
        attachment,
        sms_msg_id: r.get(14)?,
        is_custom_reminder_response: r.get(15)?,
    })
}
