//! `GET /conversations`: a constant number of statements whatever the page size.
//!
//! 1. the page: activity slices skip whole stretches of the order by their counts, then
//!    OFFSET/LIMIT walks the covering list index only inside the slice where the page begins,
//!    then the patient join;
//! 2. the newest N messages of every conversation on the page, in one statement that runs an
//!    `ORDER BY … LIMIT` range scan per conversation;
//! 3. the count: kept on the location row, or a range count when `updated_since` filters.

use super::Db;
use convo_core::cursor::{Cursor, CursorPaging, PageInfo};
use convo_core::{
    Attachment, Conversation, ConversationPage, ListQuery, Message, MessageQuery, Millis, Paging,
    Patient, Sender, SenderKind, StoreError, TenantCtx, full_name,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

macro_rules! conversation_columns {
    () => {
        "SELECT c.id, c.created_at, c.updated_at, p.id, p.email, p.first_name, p.middle_name, \
         p.last_name, p.created_at, p.updated_at, p.institution_id, p.foreign_id, \
         p.foreign_id_type, p.bio, p.inactive, p.last_sync_time, p.guarantor_id, \
         p.unsubscribe_sms"
    };
}

macro_rules! page_sql {
    ($filter:literal) => {
        concat!(
            conversation_columns!(),
            "
             FROM (SELECT id FROM conversations
                   WHERE institution_id = ?1 AND location_id = ?2 ",
            $filter,
            "
                   ORDER BY updated_at DESC, id DESC LIMIT ?3 OFFSET ?4) AS pg
             JOIN conversations c ON c.id = pg.id
             JOIN patients p ON p.id = c.patient_id AND p.institution_id = ?1
             ORDER BY c.updated_at DESC, c.id DESC"
        )
    };
}

// ?6 is the newest `updated_at` the page can start at (the end of its first slice).
pub(crate) const PAGE_SQL: &str = page_sql!("AND ?5 IS NULL AND updated_at <= ?6");
pub(crate) const PAGE_SINCE_SQL: &str = page_sql!("AND updated_at >= ?5 AND updated_at <= ?6");

// The cursor variant: a keyset range of the same index, from a position (?3, ?4) in either
// direction, one row more than the page to learn whether the walk goes on. Walking older,
// ?5 (`updated_since`, or i64::MIN) ends the range; walking newer, `updated_since` is folded
// into the position instead (`fold`): given two lower bounds SQLite may seek to the wrong one
// and walk the location from its oldest conversation (measured: 790 against 5,000 pages/s).
macro_rules! cursor_sql {
    ($since:literal, $cmp:literal, $dir:literal) => {
        concat!(
            conversation_columns!(),
            "
             FROM (SELECT id FROM conversations
                   WHERE institution_id = ?1 AND location_id = ?2 ",
            $since,
            "
                     AND (updated_at, id) ",
            $cmp,
            " (?3, ?4)
                   ORDER BY updated_at ",
            $dir,
            ", id ",
            $dir,
            " LIMIT ?6) AS pg
             JOIN conversations c ON c.id = pg.id
             JOIN patients p ON p.id = c.patient_id AND p.institution_id = ?1
             ORDER BY c.updated_at ",
            $dir,
            ", c.id ",
            $dir
        )
    };
}

/// Forward from a position (older activity): `end_cursor`, or the first page.
pub(crate) const AFTER_SQL: &str = cursor_sql!("AND updated_at >= ?5", "<", "DESC");
/// Backward from a position (newer activity, nearest first): `start_cursor`.
pub(crate) const BEFORE_SQL: &str = cursor_sql!("AND ?5 IS NOT NULL", ">", "ASC");

macro_rules! beyond_sql {
    ($since:literal, $cmp:literal) => {
        concat!(
            "SELECT EXISTS (SELECT 1 FROM conversations
                WHERE institution_id = ?1 AND location_id = ?2 ",
            $since,
            " AND (updated_at, id) ",
            $cmp,
            " (?3, ?4))"
        )
    };
}

/// Is there anything newer than a (folded) position (a previous page)?
pub(crate) const NEWER_SQL: &str = beyond_sql!("AND ?5 IS NOT NULL", ">");
/// Anything older, within `updated_since` (a next page)?
pub(crate) const OLDER_SQL: &str = beyond_sql!("AND updated_at >= ?5", "<");

/// One conversation of a location (`GET /conversations/{id}`).
pub(crate) const ONE_CONVERSATION_SQL: &str = concat!(
    conversation_columns!(),
    "
     FROM conversations c
     JOIN patients p ON p.id = c.patient_id AND p.institution_id = ?1
     WHERE c.id = ?3 AND c.institution_id = ?1 AND c.location_id = ?2"
);

/// The width of an activity slice is 2^SLICE_BITS ms (must match the 0002 migration).
const SLICE_BITS: u32 = 25;

pub(crate) const SLICES_SQL: &str = "SELECT slice, n FROM conversation_activity
     WHERE institution_id = ?1 AND location_id = ?2 ORDER BY slice DESC";

// Newest N per conversation without a window over whole threads: for each conversation of the
// page, a correlated subquery finds the N-th newest message's `created_at` (walking N entries of
// the thread), once, in a materialised CTE; the join then reads the range from there. (Left
// inline in the join's ON, SQLite re-ran the subquery for every candidate row whenever the
// range could not start from it — polling spent 0.8 ms there per page.) Rows that tie with the
// boundary millisecond may exceed N; `attach_messages` cuts them.
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

macro_rules! messages_sql {
    ($access:literal, $outer:literal, $inner:literal) => {
        concat!(
            "WITH cv AS MATERIALIZED (
                SELECT j.key AS pos, j.value AS id, coalesce(
                    (SELECT created_at FROM messages ",
            $access,
            "
                      WHERE conversation_id = j.value AND created_at >= ?2 ",
            $inner,
            "
                      ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?3 - 1),
                    ?2) AS lo
                FROM json_each(?1) AS j)
             ",
            message_columns!(),
            "
             FROM cv
             CROSS JOIN messages m ",
            $access,
            "
                ON m.conversation_id = cv.id ",
            $outer,
            " AND m.created_at >= cv.lo",
            sender_joins!(),
            "
             ORDER BY cv.pos, m.created_at DESC, m.id DESC"
        )
    };
}

/// One message by id (the write side answers with it).
pub(crate) const ONE_MESSAGE_SQL: &str = concat!(
    message_columns!(),
    "
     FROM messages m INDEXED BY messages_id",
    sender_joins!(),
    "
     WHERE m.id = ?1"
);

/// Newest N per conversation, from the newest end of each thread (NOT INDEXED: the table's own
/// key is the thread order).
pub(crate) const MESSAGES_SQL: &str = messages_sql!("NOT INDEXED", "AND ?4 IS NULL", "");

/// Polling (`updated_since`): only the messages updated since then are candidates, found
/// through the updated index, so the work is what changed rather than the thread's length.
pub(crate) const MESSAGES_UPDATED_SQL: &str = messages_sql!(
    "INDEXED BY messages_updated",
    "AND m.updated_at >= ?4",
    "AND updated_at >= ?4"
);

const COUNT_SQL: &str =
    "SELECT conversation_count FROM locations WHERE id = ?2 AND institution_id = ?1";
/// Whole slices newer than `since`'s own, plus a range count inside that one slice.
pub(crate) const COUNT_SINCE_SQL: &str = "SELECT coalesce((SELECT sum(n) FROM conversation_activity
        WHERE institution_id = ?1 AND location_id = ?2 AND slice > ?3 >> 25), 0)
     + (SELECT count(*) FROM conversations
        WHERE institution_id = ?1 AND location_id = ?2
          AND updated_at >= ?3 AND updated_at <= ((?3 >> 25) << 25) | 33554431)";

/// The statements one list request runs, for query-plan checks.
pub fn hot_statements() -> Vec<(&'static str, &'static str)> {
    vec![
        ("page", PAGE_SQL),
        ("page updated_since", PAGE_SINCE_SQL),
        ("cursor after", AFTER_SQL),
        ("cursor before", BEFORE_SQL),
        ("cursor newer", NEWER_SQL),
        ("cursor older", OLDER_SQL),
        ("messages", MESSAGES_SQL),
        ("messages updated_since", MESSAGES_UPDATED_SQL),
        ("count", COUNT_SQL),
        ("count updated_since", COUNT_SINCE_SQL),
        ("slices", SLICES_SQL),
        ("one conversation", ONE_CONVERSATION_SQL),
        ("one message", ONE_MESSAGE_SQL),
        ("access", super::keys::ACCESS_SQL),
    ]
}

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

/// Fills `conversations[..].messages` with one statement for the whole page.
pub(crate) fn attach_messages(
    conn: &Connection,
    conversations: &mut [Conversation],
    q: &MessageQuery,
) -> Result<(), StoreError> {
    if conversations.is_empty() || q.limit == 0 {
        return Ok(());
    }
    let ids = format!(
        "[{}]",
        conversations
            .iter()
            .map(|c| c.id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let sql = if q.updated_since.is_some() {
        MESSAGES_UPDATED_SQL
    } else {
        MESSAGES_SQL
    };
    let mut stmt = conn.prepare_cached(sql).db()?;
    let created_since = q.created_since.map_or(i64::MIN, |m| m.0);
    let mut rows = stmt
        .query(params![
            ids,
            created_since,
            q.limit,
            q.updated_since.map(|m| m.0)
        ])
        .db()?;
    // Rows come grouped by page position, so one forward walk places them.
    let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
    let mut slot = 0;
    while let Some(row) = rows.next().db()? {
        let message = message_from(row).db()?;
        while slot < conversations.len() && conversations[slot].id != message.conversation_id {
            slot += 1;
        }
        match conversations.get_mut(slot) {
            Some(c) if c.messages.len() < limit => c.messages.push(message),
            Some(_) => {}
            None => {
                return Err(StoreError::broken("message rows out of page order"));
            }
        }
    }
    Ok(())
}

pub(crate) fn page(
    conn: &mut Connection,
    tenant: &TenantCtx,
    q: &ListQuery,
) -> Result<ConversationPage, StoreError> {
    // One read transaction: the page, its messages and the count see the same snapshot.
    let tx = conn.transaction().db()?;
    let (inst, loc) = (tenant.institution_id(), tenant.location_id());
    if let Some(paging) = q.cursor {
        let (mut conversations, info) = cursor_page(&tx, (inst, loc), q, paging)?;
        if let Some(mq) = &q.messages {
            attach_messages(&tx, &mut conversations, mq)?;
        }
        tx.commit().db()?;
        return Ok(ConversationPage {
            conversations,
            paging: Paging::Cursors(info),
        });
    }
    let since = q.updated_since.map(|m| m.0);
    let start = page_start(&tx, inst, loc, q.offset)?;
    let mut conversations = if let Some((newest, offset)) = start {
        let sql = if since.is_some() {
            PAGE_SINCE_SQL
        } else {
            PAGE_SQL
        };
        let mut stmt = tx.prepare_cached(sql).db()?;
        let rows = stmt
            .query_map(
                params![inst, loc, q.limit, offset, since, newest],
                conversation_from,
            )
            .db()?;
        rows.collect::<Result<Vec<_>, _>>().db()?
    } else {
        Vec::new()
    };
    if let Some(mq) = &q.messages {
        attach_messages(&tx, &mut conversations, mq)?;
    }
    let count: i64 = match since {
        // No row: the location is not the institution's, so nothing of it is listed.
        None => tx
            .prepare_cached(COUNT_SQL)
            .db()?
            .query_row(params![inst, loc], |r| r.get(0))
            .optional()
            .db()?
            .unwrap_or(0),
        Some(s) => tx
            .prepare_cached(COUNT_SINCE_SQL)
            .db()?
            .query_row(params![inst, loc, s], |r| r.get(0))
            .db()?,
    };
    tx.commit().db()?;
    Ok(ConversationPage {
        conversations,
        paging: Paging::Count(count),
    })
}

fn position(c: &Conversation) -> Cursor {
    Cursor {
        updated_at: c.updated_at,
        id: c.id,
    }
}

/// A position to walk newer from, with `updated_since` in it: everything newer than the result
/// is newer than `at` and within `since` (ids are >= 1).
fn fold(at: Cursor, since: i64) -> Cursor {
    if since > at.updated_at.0 {
        Cursor {
            updated_at: Millis(since),
            id: 0,
        }
    } else {
        at
    }
}

/// Whether any conversation (within `updated_since`) lies beyond `at`: newer or older.
fn beyond(
    tx: &Connection,
    (inst, loc): (i64, i64),
    since: i64,
    at: Cursor,
    newer: bool,
) -> Result<bool, StoreError> {
    let (sql, at) = if newer {
        (NEWER_SQL, fold(at, since))
    } else {
        (OLDER_SQL, at)
    };
    tx.prepare_cached(sql)
        .db()?
        .query_row(params![inst, loc, at.updated_at.0, at.id, since], |r| {
            r.get(0)
        })
        .db()
}

/// A keyset page: the rows on the far side of the position, in list order, and `page_info`.
fn cursor_page(
    tx: &Connection,
    scope: (i64, i64),
    q: &ListQuery,
    paging: CursorPaging,
) -> Result<(Vec<Conversation>, PageInfo), StoreError> {
    let (inst, loc) = scope;
    let since = q.updated_since.map_or(i64::MIN, |m| m.0);
    let top = Cursor {
        updated_at: Millis(i64::MAX),
        id: i64::MAX,
    };
    let (sql, from) = match paging {
        CursorPaging::First => (AFTER_SQL, top),
        CursorPaging::After(c) => (AFTER_SQL, c),
        CursorPaging::Before(c) => (BEFORE_SQL, fold(c, since)),
    };
    let limit = q.limit.saturating_add(1);
    let mut rows = tx
        .prepare_cached(sql)
        .db()?
        .query_map(
            params![inst, loc, from.updated_at.0, from.id, since, limit],
            conversation_from,
        )
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > q.limit;
    rows.truncate(usize::try_from(q.limit).unwrap_or(usize::MAX));
    let backward = matches!(paging, CursorPaging::Before(_));
    if backward {
        rows.reverse();
    }
    let (first, last) = (rows.first().map(position), rows.last().map(position));
    // One direction is known from the extra row; the other asks whether anything lies beyond
    // the page's edge (or, on an empty page, beyond the cursor itself).
    let info = match paging {
        CursorPaging::First => PageInfo {
            has_previous_page: false,
            has_next_page: more,
            start_cursor: first,
            end_cursor: last,
        },
        // On an empty page the cursor's own conversation, if still there, lies beyond too:
        // ids are integers, so "at or beyond c" is "beyond c shifted by one id".
        CursorPaging::After(c) => PageInfo {
            has_previous_page: beyond(tx, scope, since, first.unwrap_or(c.shifted(-1)), true)?,
            has_next_page: more,
            start_cursor: first,
            end_cursor: last,
        },
        CursorPaging::Before(c) => PageInfo {
            has_previous_page: more,
            has_next_page: beyond(tx, scope, since, last.unwrap_or(c.shifted(1)), false)?,
            start_cursor: first,
            end_cursor: last,
        },
    };
    Ok((rows, info))
}

/// Where a page at `offset` begins (`None`: past the end): the newest `updated_at` it can hold and how many index
/// entries to skip from there. Walks the location's activity slices, newest first, until the
/// one holding the offset. Filtering by `updated_since` keeps a prefix of the same order, so
/// the same start serves both.
fn page_start(
    conn: &Connection,
    inst: i64,
    loc: i64,
    offset: i64,
) -> Result<Option<(i64, i64)>, StoreError> {
    if offset <= 0 {
        return Ok(Some((i64::MAX, 0)));
    }
    let mut stmt = conn.prepare_cached(SLICES_SQL).db()?;
    let mut rows = stmt.query(params![inst, loc]).db()?;
    let mut skipped = 0i64;
    while let Some(row) = rows.next().db()? {
        let (slice, n): (i64, i64) = (row.get(0).db()?, row.get(1).db()?);
        if skipped + n > offset {
            let slice_end = (slice << SLICE_BITS) | ((1i64 << SLICE_BITS) - 1);
            return Ok(Some((slice_end, offset - skipped)));
        }
        skipped += n;
    }
    // Past the last conversation: an empty page.
    Ok(None)
}

#[cfg(test)]
mod tests;
