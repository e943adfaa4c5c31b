//! The cursor variant of the list (CONTRACT §4): keyset pages of the list's own index, in
//! either direction, with `page_info`, in one statement.
//!
//! Parameters after the common four (see `conversations`): `$5`, `$6` the position, `$7`
//! `updated_since` (or i64::MIN), `$8` the page size plus one (the extra row says whether the
//! walk goes on), `$9` whether to probe the other side, `$10`, `$11` the probe's position.
//!
//! The other side of the page needs no second trip: what lies beyond the page's first row
//! (walking older) is what lies at or beyond the cursor, because nothing within
//! `updated_since` lies between the two; so the probe starts from the cursor itself.

use crate::Db;
use crate::conversations::{MessageParams, SCALAR_AT, list_sql, zone_of};
use crate::rows::{conversations_from, head};
use convo_core::cursor::{Cursor, CursorPaging, PageInfo};
use convo_core::{Conversation, ListQuery, Millis, StoreError};
use deadpool_postgres::GenericClient;
use std::sync::LazyLock;

/// Walking older from `($5, $6)`, within `updated_since`; the probe asks whether anything is
/// newer than `($10, $11)` (a previous page).
const AFTER_CTES: &str = "pg AS MATERIALIZED (
        SELECT id, created_at, updated_at, patient_id FROM conversations
         WHERE institution_id = $1 AND location_id = $2 AND updated_at >= $7::bigint
           AND (updated_at, id) < ($5::bigint, $6::bigint)
         ORDER BY updated_at DESC, id DESC LIMIT $8::bigint)";
const NEWER_SCALAR: &str = "$9::boolean AND EXISTS (SELECT 1 FROM conversations
         WHERE institution_id = $1 AND location_id = $2
           AND (updated_at, id) > ($10::bigint, $11::bigint))";

/// Walking newer from `($5, $6)` (with `updated_since` folded into the position, nearest
/// first); the probe asks whether anything within `updated_since` is older than `($10, $11)`.
/// `$7` bounds only the probe.
const BEFORE_CTES: &str = "pg AS MATERIALIZED (
        SELECT id, created_at, updated_at, patient_id FROM conversations
         WHERE institution_id = $1 AND location_id = $2
           AND (updated_at, id) > ($5::bigint, $6::bigint)
         ORDER BY updated_at ASC, id ASC LIMIT $8::bigint)";
const OLDER_SCALAR: &str = "$9::boolean AND EXISTS (SELECT 1 FROM conversations
         WHERE institution_id = $1 AND location_id = $2 AND updated_at >= $7::bigint
           AND (updated_at, id) < ($10::bigint, $11::bigint))";

static AFTER_SQL: LazyLock<String> = LazyLock::new(|| list_sql(AFTER_CTES, NEWER_SCALAR, None));
static AFTER_POLL_SQL: LazyLock<String> =
    LazyLock::new(|| list_sql(AFTER_CTES, NEWER_SCALAR, Some("$12")));
static BEFORE_SQL: LazyLock<String> = LazyLock::new(|| list_sql(BEFORE_CTES, OLDER_SCALAR, None));
static BEFORE_POLL_SQL: LazyLock<String> =
    LazyLock::new(|| list_sql(BEFORE_CTES, OLDER_SCALAR, Some("$12")));

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

fn position(c: &Conversation) -> Cursor {
    Cursor {
        updated_at: c.updated_at,
        id: c.id,
    }
}

/// A keyset page: the rows on the far side of the position, in list order, and `page_info`.
pub(crate) async fn cursor_page(
    client: &impl GenericClient,
    (inst, loc): (i64, i64),
    q: &ListQuery,
    paging: CursorPaging,
    mp: &MessageParams,
) -> Result<(Vec<Conversation>, PageInfo, Option<String>), StoreError> {
    let since = q.updated_since.map_or(i64::MIN, |m| m.0);
    let top = Cursor {
        updated_at: Millis(i64::MAX),
        id: i64::MAX,
    };
    // (statement, its polling twin, start, probe or not, probe position)
    let (backward, from, probe, at) = match paging {
        CursorPaging::First => (false, top, false, top),
        // Anything at or newer than the cursor: newer than it shifted by one id, folded.
        CursorPaging::After(c) => (false, c, true, fold(c.shifted(-1), since)),
        // Anything at or older than the cursor, within `updated_since`.
        CursorPaging::Before(c) => (true, fold(c, since), true, c.shifted(1)),
    };
    let sql: &str = match (backward, mp.updated_since.is_some()) {
        (false, false) => &AFTER_SQL,
        (false, true) => &AFTER_POLL_SQL,
        (true, false) => &BEFORE_SQL,
        (true, true) => &BEFORE_POLL_SQL,
    };
    let limit = q.limit.saturating_add(1);
    let stmt = client.prepare_cached(sql).await.db()?;
    let (fu, fi, pu, pi) = (from.updated_at.0, from.id, at.updated_at.0, at.id);
    let poll = mp.updated_since.unwrap_or(i64::MIN);
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &inst,
        &loc,
        &mp.created_since,
        &mp.limit,
        &fu,
        &fi,
        &since,
        &limit,
        &probe,
        &pu,
        &pi,
    ];
    if mp.updated_since.is_some() {
        params.push(&poll);
    }
    let rows = client.query(&stmt, &params).await.db()?;
    let (beyond, zone): (bool, Option<String>) = match head(&rows)? {
        Some(row) => (
            row.try_get(SCALAR_AT).map_err(StoreError::fault)?,
            zone_of(row)?,
        ),
        None => (false, None),
    };
    // In list order (newest first) whichever way the walk went; the extra row, if any, is
    // the one farthest from the position.
    let mut page = conversations_from(&rows)?;
    let keep = usize::try_from(q.limit).unwrap_or(usize::MAX);
    let more = page.len() > keep;
    if more {
        if backward {
            page.drain(..page.len() - keep);
        } else {
            page.truncate(keep);
        }
    }
    let (first, last) = (page.first().map(position), page.last().map(position));
    let info = match paging {
        CursorPaging::First | CursorPaging::After(_) => PageInfo {
            has_previous_page: beyond,
            has_next_page: more,
            start_cursor: first,
            end_cursor: last,
        },
        CursorPaging::Before(_) => PageInfo {
            has_previous_page: more,
            has_next_page: beyond,
            start_cursor: first,
            end_cursor: last,
        },
    };
    Ok((page, info, zone))
}
