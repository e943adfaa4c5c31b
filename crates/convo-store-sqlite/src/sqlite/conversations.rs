//! `GET /conversations`: a constant number of statements whatever the page size.
//!
//! 1. the page: activity slices skip whole stretches of the order by their counts, then
//!    OFFSET/LIMIT walks the covering list index only inside the slice where the page begins,
//!    then the patient join;
//! 2. the newest N messages of every conversation on the page, in one statement that runs an
//!    `ORDER BY … LIMIT` range scan per conversation;
//! 3. the count: kept on the location row, or a range count when `updated_since` filters.

use super::cursors::{AFTER_SQL, BEFORE_SQL, NEWER_SQL, OLDER_SQL, cursor_page};
use super::rows::{
    ONE_CONVERSATION_SQL, ONE_MESSAGE_SQL, conversation_columns, conversation_from,
    message_columns, message_from, sender_joins,
};
use super::{Db, snapshot};
use convo_core::{
    Conversation, ConversationPage, ListQuery, MessageQuery, Paging, StoreError, TenantCtx,
};
use rusqlite::{Connection, OptionalExtension, params};
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
             JOIN patients p ON p.id = c.patient_id AND p.institution_id = ?1"
        )
    };
}

// No ORDER BY outside: SQLite would sort the joined rows, patients and all; `newest_first` puts
// the page in order instead. ?6 is the newest `updated_at` the page can start at (the end of
// its first slice).
pub(crate) const PAGE_SQL: &str = page_sql!("AND ?5 IS NULL AND updated_at <= ?6");
pub(crate) const PAGE_SINCE_SQL: &str = page_sql!("AND updated_at >= ?5 AND updated_at <= ?6");

/// The width of an activity slice is 2^SLICE_BITS ms (must match the 0002 migration).
pub(crate) const SLICE_BITS: u32 = 25;

/// A stretch is 2^STRETCH_BITS ms (the 0008 migration), a fine step 2^FINE_BITS (0009).
pub(crate) const STRETCH_BITS: u32 = 30;
pub(crate) const FINE_BITS: u32 = 20;

/// The activity levels a page's start walks, coarsest first: each statement lists one
/// location's `(bucket, n)` rows between two buckets (?3, ?4), newest first.
const LEVELS: [(&str, u32); 3] = [
    (STRETCHES_SQL, STRETCH_BITS),
    (SLICES_SQL, SLICE_BITS),
    (FINE_SQL, FINE_BITS),
];

pub(crate) const STRETCHES_SQL: &str = "SELECT stretch, n FROM conversation_activity_stretches
     WHERE institution_id = ?1 AND location_id = ?2 AND stretch >= ?3 AND stretch <= ?4
     ORDER BY stretch DESC";

pub(crate) const SLICES_SQL: &str = "SELECT slice, n FROM conversation_activity
     WHERE institution_id = ?1 AND location_id = ?2 AND slice >= ?3 AND slice <= ?4
     ORDER BY slice DESC";

pub(crate) const FINE_SQL: &str = "SELECT fine, n FROM conversation_activity_fine
     WHERE institution_id = ?1 AND location_id = ?2 AND fine >= ?3 AND fine <= ?4
     ORDER BY fine DESC";

// Newest N per conversation without a window over whole threads: for each conversation of the
// page, a correlated subquery finds the N-th newest message's `created_at` (walking N entries of
// the thread), once, in a materialised CTE; the join then reads the range from there. (Left
// inline in the join's ON, SQLite re-ran the subquery for every candidate row whenever the
// range could not start from it — polling spent 0.8 ms there per page.) Rows that tie with the
// boundary millisecond may exceed N; `attach_messages` cuts them. No ORDER BY: SQLite would copy
// every row of the page, all 22 columns, through a sorter; `attach_messages` orders them. NOT
// INDEXED: the table's own key is the thread order.
pub(crate) const MESSAGES_SQL: &str = concat!(
    "WITH cv AS MATERIALIZED (
        SELECT j.value AS id, coalesce(
            (SELECT created_at FROM messages NOT INDEXED
              WHERE conversation_id = j.value AND created_at >= ?2
              ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?3 - 1),
            ?2) AS lo
        FROM json_each(?1) AS j)
     ",
    message_columns!(),
    "
     FROM cv
     CROSS JOIN messages m NOT INDEXED ON m.conversation_id = cv.id AND m.created_at >= cv.lo",
    sender_joins!()
);

/// Polling (`updated_since`), first: the keys of the page's messages changed since ?3. The
/// updated index holds them (and the table's key), so no row is read; `changed_bounds` finds
/// each thread's N-th newest from them. (Found in SQL, that boundary sorted each thread's
/// changed rows in a temporary b-tree: polling cost 1.7× page 1.)
pub(crate) const CHANGED_KEYS_SQL: &str = "SELECT m.conversation_id, m.created_at, m.id
     FROM json_each(?1) AS j
     CROSS JOIN messages m INDEXED BY messages_updated
        ON m.conversation_id = j.value AND m.updated_at >= ?3 AND m.created_at >= ?2";

/// Polling, then: each conversation's changed messages from its boundary on (?1: pairs
/// `[conversation id, boundary created_at]`), read along the thread order from the newest (as
/// the plain list reads them) rather than through the updated index, which cost a seek into the
/// table per row (polling 3.52 M instructions a request that way, 2.52 M this way). The range
/// holds what changed and what lies between, so the work follows what changed, not the thread's
/// length; a thread whose newest changes are old ones (an edit far back) reads back to them.
pub(crate) const MESSAGES_CHANGED_SQL: &str = concat!(
    "WITH cv AS MATERIALIZED (
        SELECT j.value ->> 0 AS id, j.value ->> 1 AS lo FROM json_each(?1) AS j)
     ",
    message_columns!(),
    "
     FROM cv
     CROSS JOIN messages m NOT INDEXED
        ON m.conversation_id = cv.id AND m.created_at >= cv.lo AND m.updated_at >= ?2",
    sender_joins!()
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
        ("changed message keys", CHANGED_KEYS_SQL),
        ("messages changed since", MESSAGES_CHANGED_SQL),
        ("count", COUNT_SQL),
        ("count updated_since", COUNT_SINCE_SQL),
        ("stretches", STRETCHES_SQL),
        ("slices", SLICES_SQL),
        ("fine steps", FINE_SQL),
        ("one conversation", ONE_CONVERSATION_SQL),
        ("one message", ONE_MESSAGE_SQL),
        ("access", super::keys::ACCESS_SQL),
    ]
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
    // Each row goes to its conversation (found by id among the page's few), in whatever order
    // SQLite returns them; each thread is then put newest first and cut to the limit.
    let mut slots: Vec<(i64, usize)> = conversations
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    slots.sort_unstable();
    let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
    for c in conversations.iter_mut() {
        // Most threads fill the limit: one allocation each rather than a few doublings.
        c.messages.reserve(limit.min(32));
    }
    let created_since = q.created_since.map_or(i64::MIN, |m| m.0);
    let mut stmt;
    let mut rows = match q.updated_since {
        None => {
            stmt = conn.prepare_cached(MESSAGES_SQL).db()?;
            stmt.query(params![ids, created_since, q.limit]).db()?
        }
        Some(since) => {
            let bounds = changed_bounds(conn, &ids, created_since, since.0, limit)?;
            stmt = conn.prepare_cached(MESSAGES_CHANGED_SQL).db()?;
            stmt.query(params![bounds, since.0]).db()?
        }
    };
    while let Some(row) = rows.next().db()? {
        let message = message_from(row).db()?;
        let at = slots
            .binary_search_by_key(&message.conversation_id, |&(id, _)| id)
            .map_err(|_| StoreError::broken("a message row of no conversation on the page"))?;
        conversations[slots[at].1].messages.push(message);
    }
    for c in conversations.iter_mut() {
        c.messages
            .sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id)));
        c.messages.truncate(limit);
    }
    Ok(())
}

/// Each conversation's oldest `created_at` among its `limit` newest messages changed since
/// `since`, as `MESSAGES_CHANGED_SQL`'s JSON pairs (conversations with no change left out).
fn changed_bounds(
    conn: &Connection,
    ids: &str,
    created_since: i64,
    since: i64,
    limit: usize,
) -> Result<String, StoreError> {
    let mut stmt = conn.prepare_cached(CHANGED_KEYS_SQL).db()?;
    let mut keys: Vec<(i64, std::cmp::Reverse<(i64, i64)>)> = stmt
        .query_map(params![ids, created_since, since], |r| {
            Ok((r.get(0)?, std::cmp::Reverse((r.get(1)?, r.get(2)?))))
        })
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    // By conversation, newest first within each.
    keys.sort_unstable();
    let mut bounds = String::from("[");
    for thread in keys.chunk_by(|a, b| a.0 == b.0) {
        let (conversation, std::cmp::Reverse((created_at, _))) =
            thread[thread.len().min(limit) - 1];
        if bounds.len() > 1 {
            bounds.push(',');
        }
        bounds.push_str(&format!("[{conversation},{created_at}]"));
    }
    bounds.push(']');
    Ok(bounds)
}

/// Puts a page in the list's order, newest activity first (the statements leave order to us).
fn newest_first(conversations: &mut [Conversation]) {
    conversations.sort_by_key(|c| std::cmp::Reverse((c.updated_at, c.id)));
}

/// One page in its own read transaction.
pub(crate) fn page(
    conn: &Connection,
    tenant: &TenantCtx,
    q: &ListQuery,
) -> Result<ConversationPage, StoreError> {
    snapshot(conn, |conn| read_page(conn, tenant, q))
}

/// One page; the caller holds a read transaction, so the page, its messages and the count see
/// the same snapshot.
pub(crate) fn read_page(
    conn: &Connection,
    tenant: &TenantCtx,
    q: &ListQuery,
) -> Result<ConversationPage, StoreError> {
    let (inst, loc) = (tenant.institution_id(), tenant.location_id());
    if let Some(paging) = q.cursor {
        let (mut conversations, info) = cursor_page(conn, (inst, loc), q, paging)?;
        if let Some(mq) = &q.messages {
            attach_messages(conn, &mut conversations, mq)?;
        }
        return Ok(ConversationPage {
            conversations,
            paging: Paging::Cursors(info),
        });
    }
    let since = q.updated_since.map(|m| m.0);
    let start = page_start(conn, inst, loc, q.offset)?;
    let mut conversations = if let Some((newest, offset)) = start {
        let sql = if since.is_some() {
            PAGE_SINCE_SQL
        } else {
            PAGE_SQL
        };
        let mut stmt = conn.prepare_cached(sql).db()?;
        let rows = stmt
            .query_map(
                params![inst, loc, q.limit, offset, since, newest],
                conversation_from,
            )
            .db()?;
        let mut page = rows.collect::<Result<Vec<_>, _>>().db()?;
        newest_first(&mut page);
        page
    } else {
        Vec::new()
    };
    if let Some(mq) = &q.messages {
        attach_messages(conn, &mut conversations, mq)?;
    }
    let count: i64 = match since {
        // No row: the location is not the institution's, so nothing of it is listed.
        None => conn
            .prepare_cached(COUNT_SQL)
            .db()?
            .query_row(params![inst, loc], |r| r.get(0))
            .optional()
            .db()?
            .unwrap_or(0),
        Some(s) => conn
            .prepare_cached(COUNT_SINCE_SQL)
            .db()?
            .query_row(params![inst, loc, s], |r| r.get(0))
            .db()?,
    };
    Ok(ConversationPage {
        conversations,
        paging: Paging::Count(count),
    })
}

/// One conversation of the tenant's location (`GET /conversations/{id}`), with messages when
/// asked.
pub(crate) fn one(
    conn: &Connection,
    tenant: &TenantCtx,
    id: i64,
    messages: Option<&MessageQuery>,
) -> Result<Option<Conversation>, StoreError> {
    snapshot(conn, |conn| {
        let found = conn
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
            attach_messages(conn, &mut one, q)?;
        }
        let [conversation] = one;
        Ok(Some(conversation))
    })
}

/// Where a page at `offset` begins (`None`: past the end): the newest `updated_at` it can hold
/// and how many index entries to skip from there. Walks the location's activity stretches,
/// newest first, to the one holding the offset, then that stretch's slices the same way, then
/// that slice's fine steps. Filtering by `updated_since` keeps a prefix of the same order, so
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
    let (mut lo, mut hi, mut offset) = (i64::MIN, i64::MAX, offset);
    let mut bucket = 0;
    for (level, &(sql, bits)) in LEVELS.iter().enumerate() {
        match walk(conn, sql, params![inst, loc, lo, hi], offset)? {
            Some((b, rest)) => (bucket, offset) = (b, rest),
            // Past the last conversation: an empty page.
            None if level == 0 => return Ok(None),
            // Each level's counts are the sums of the next one's (same transaction, same
            // triggers' writes).
            None => return Err(StoreError::broken("activity counts that do not add up")),
        }
        if let Some(&(_, finer)) = LEVELS.get(level + 1) {
            let shift = bits - finer;
            (lo, hi) = (bucket << shift, ((bucket + 1) << shift) - 1);
        }
    }
    Ok(Some((
        (bucket << FINE_BITS) | ((1i64 << FINE_BITS) - 1),
        offset,
    )))
}

/// Walks `(bucket, n)` rows, newest first, to the bucket holding `offset`: that bucket and the
/// offset left inside it.
fn walk(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    offset: i64,
) -> Result<Option<(i64, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let mut rows = stmt.query(args).db()?;
    let mut skipped = 0i64;
    while let Some(row) = rows.next().db()? {
        let (bucket, n): (i64, i64) = (row.get(0).db()?, row.get(1).db()?);
        if skipped + n > offset {
            return Ok(Some((bucket, offset - skipped)));
        }
        skipped += n;
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
