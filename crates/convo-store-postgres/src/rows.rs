//! Rows and the domain: the column lists every read of a conversation or a message selects, and
//! the mappers that turn those rows into `convo_core` types.

use convo_core::{
    Attachment, Conversation, Message, Millis, Patient, Sender, SenderKind, StoreError, full_name,
};
use tokio_postgres::Row;

/// A conversation (from the page CTE `pg`) with its patient `p`: 18 columns.
macro_rules! conversation_columns {
    () => {
        "pg.id, pg.created_at, pg.updated_at, p.id, p.email, p.first_name, p.middle_name, \
         p.last_name, p.created_at, p.updated_at, p.institution_id, p.foreign_id, \
         p.foreign_id_type, p.bio, p.inactive, p.last_sync_time, p.guarantor_id, \
         p.unsubscribe_sms"
    };
}
pub(crate) use conversation_columns;

/// Where a message's columns begin in a row that leads with `conversation_columns!()`.
pub(crate) const MESSAGE_AT: usize = 18;

/// A message `m` with its staff sender's name and image (`u`): `MESSAGE_COLUMNS` columns. A
/// patient sender's name comes from elsewhere: the patient's own row (`message_from`).
macro_rules! message_columns {
    () => {
        "m.id, m.conversation_id, m.body, m.created_at, m.updated_at, m.sender_type, \
         m.sender_id, m.seen_by, m.has_attachment, m.attachment_file_name, \
         m.attachment_content_type, m.attachment_file_size, m.attachment_url, \
         m.attachment_updated_at, m.sms_msg_id, m.is_custom_reminder_response, \
         u.first_name, u.last_name, u.image"
    };
}

/// How many columns `message_columns!()` selects.
pub(crate) const MESSAGE_COLUMNS: usize = 19;

/// The sender's row, in the message's institution (`$1`).
macro_rules! sender_joins {
    () => {
        " LEFT JOIN users u
                ON m.sender_type = 'User' AND u.institution_id = $1 AND u.id = m.sender_id
          LEFT JOIN patients sp
                ON m.sender_type = 'Patient' AND sp.institution_id = $1 AND sp.id = m.sender_id"
    };
}
pub(crate) use message_columns;

/// The columns of a `messages` row, in the order every insert names them.
macro_rules! message_table_columns {
    () => {
        "institution_id, id, conversation_id, body, created_at, updated_at, sender_type, \
         sender_id, seen_by, has_attachment, attachment_file_name, attachment_content_type, \
         attachment_file_size, attachment_url, attachment_updated_at, sms_msg_id, \
         is_custom_reminder_response"
    };
}
pub(crate) use message_table_columns;

/// One message by id in an institution (`$1`, `$2`), with a patient sender's name parts after
/// the message's columns: the write side answers with it.
pub(crate) const ONE_MESSAGE_SQL: &str = concat!(
    "SELECT ",
    message_columns!(),
    ", sp.first_name, sp.middle_name, sp.last_name FROM messages m",
    sender_joins!(),
    " WHERE m.institution_id = $1 AND m.id = $2"
);

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, StoreError> {
    r.try_get(i).map_err(StoreError::fault)
}

/// The conversation of a row of `conversation_columns!()`, messages not yet attached.
pub(crate) fn conversation_from(r: &Row) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: get(r, 0)?,
        created_at: Millis(get(r, 1)?),
        updated_at: Millis(get(r, 2)?),
        patient: patient_from(r, 3)?,
        messages: Vec::new(),
    })
}

fn patient_from(r: &Row, at: usize) -> Result<Patient, StoreError> {
    Ok(Patient {
        id: get(r, at)?,
        email: get(r, at + 1)?,
        first_name: get(r, at + 2)?,
        middle_name: get(r, at + 3)?,
        last_name: get(r, at + 4)?,
        created_at: Millis(get(r, at + 5)?),
        updated_at: Millis(get(r, at + 6)?),
        institution_id: get(r, at + 7)?,
        foreign_id: get(r, at + 8)?,
        foreign_id_type: get(r, at + 9)?,
        bio: get(r, at + 10)?,
        inactive: get(r, at + 11)?,
        last_sync_time: get::<Option<i64>>(r, at + 12)?.map(Millis),
        guarantor_id: get(r, at + 13)?,
        unsubscribe_sms: get(r, at + 14)?,
    })
}

/// The message whose `message_columns!()` begin at column `at`; `None` when the row has none.
/// A patient sender is `patient` when the caller has read it (a message of a conversation is
/// from the conversation's patient: the import refuses any other, an inbound SMS joins its
/// sender's conversation); else the sender's name parts follow the message's columns.
pub(crate) fn message_from(
    r: &Row,
    at: usize,
    patient: Option<&Patient>,
) -> Result<Option<Message>, StoreError> {
    let Some(id) = get::<Option<i64>>(r, at)? else {
        return Ok(None);
    };
    let kind_text: &str = get(r, at + 5)?;
    let kind = SenderKind::parse(kind_text).unwrap_or(SenderKind::System);
    let text = |i: usize| get::<Option<&str>>(r, at + i);
    let (name, image) = match (kind, patient) {
        (SenderKind::User, _) => (full_name(&[text(16)?, text(17)?]), get(r, at + 18)?),
        (SenderKind::Patient, Some(p)) => (
            full_name(&[
                p.first_name.as_deref(),
                p.middle_name.as_deref(),
                p.last_name.as_deref(),
            ]),
            None,
        ),
        (SenderKind::Patient, None) => (
            full_name(&[
                text(MESSAGE_COLUMNS)?,
                text(MESSAGE_COLUMNS + 1)?,
                text(MESSAGE_COLUMNS + 2)?,
            ]),
            None,
        ),
        (SenderKind::System, _) => (None, None),
    };
    let has_attachment: bool = get(r, at + 8)?;
    let attachment = if has_attachment {
        Some(Attachment {
            file_name: get(r, at + 9)?,
            content_type: get(r, at + 10)?,
            file_size: get(r, at + 11)?,
            url: get(r, at + 12)?,
            updated_at: get::<Option<i64>>(r, at + 13)?.map(Millis),
        })
    } else {
        None
    };
    Ok(Some(Message {
        id,
        conversation_id: get(r, at + 1)?,
        body: get(r, at + 2)?,
        created_at: Millis(get(r, at + 3)?),
        updated_at: Millis(get(r, at + 4)?),
        sender: Sender {
            kind,
            id: if kind == SenderKind::System {
                None
            } else {
                get(r, at + 6)?
            },
            name,
            image,
        },
        seen_by: get(r, at + 7)?,
        attachment,
        sms_msg_id: get(r, at + 14)?,
        is_custom_reminder_response: get(r, at + 15)?,
    }))
}

/// The head row of a list statement's rows (see `conversations::list_sql`): it carries the
/// statement's scalar and the location's zone, and there is always one.
pub(crate) fn head(rows: &[Row]) -> Result<Option<&Row>, StoreError> {
    for row in rows {
        if get::<Option<i64>>(row, MESSAGE_AT)?.is_none() {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

/// Conversations from the rows of a list statement, in list order: newest conversation first,
/// each one's newest message first. A conversation's row (with its patient) and each of its
/// messages' rows come separately and in no particular order; few enough for the searches
/// and sorts here to cost less than a sort in the statement.
pub(crate) fn conversations_from(rows: &[Row]) -> Result<Vec<Conversation>, StoreError> {
    let mut out: Vec<Conversation> = Vec::new();
    for row in rows {
        if get::<Option<i64>>(row, 0)?.is_some() {
            out.push(conversation_from(row)?);
        }
    }
    for row in rows {
        let Some(conversation_id) = get::<Option<i64>>(row, MESSAGE_AT + 1)? else {
            continue;
        };
        let Some(c) = out.iter_mut().rev().find(|c| c.id == conversation_id) else {
            return Err(StoreError::broken(format!(
                "a message of conversation {conversation_id}, which is not on the page"
            )));
        };
        if let Some(message) = message_from(row, MESSAGE_AT, Some(&c.patient))? {
            c.messages.push(message);
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse((c.updated_at, c.id)));
    for c in &mut out {
        c.messages
            .sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id)));
    }
    Ok(out)
}
