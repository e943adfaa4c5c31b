//! `GET /conversations` in one statement, one round trip: the page (activity counts skip whole
//! stretches of the order by their counts, then OFFSET walks the covering list index only
//! inside the fine step where the page begins), the patients, each conversation's newest messages
//! (a LATERAL range scan per conversation) and the count, all from one snapshot.
//!
//! Every list statement numbers its parameters alike: `$1` institution, `$2` location, `$3`
//! messages created since (or i64::MIN), `$4` messages per conversation (0: none); then its
//! own; then, in the polling variant only, the messages' `updated_since` as the last one.
//!
//! Activity is counted at three levels (2^30, 2^25 and 2^20 ms buckets), as on SQLite. The
//! counts and the location's are kept in stripes (a row per bucket and writer's stripe): a
//! bucket's count is the sum of its rows.

use crate::Db;
use crate::cursors::cursor_page;
use crate::rows::{
    MESSAGE_AT, MESSAGE_COLUMNS, conversation_columns, conversations_from, head, message_columns,
};
use convo_core::{
    Conversation, ConversationPage, ListQuery, MessageQuery, Paging, StoreError, TenantCtx,
};
use deadpool_postgres::GenericClient;
use std::sync::LazyLock;

/// Newest `$4` messages of conversation `pg.id`, created since `$3`, and with `$poll` when
/// polling: the thread index walked from its newest end (or the updated index, when polling).
/// The sender's name columns are renamed so that `lm.*` has no duplicate names. The staff
/// sender is a LATERAL lookup for staff messages only: as a join, the generic plan matched
/// every message against every user row (about a third of the statement's time).
pub(crate) fn lateral_messages(poll: Option<&str>) -> String {
    let poll = poll.map_or(String::new(), |p| {
        format!(" AND m.updated_at >= {p}::bigint")
    });
    let columns = message_columns!()
        .replace("u.first_name,", "u.first_name AS user_first,")
        .replace("u.last_name,", "u.last_name AS user_last,")
        .replace("u.image", "u.image AS user_image");
    format!(
        "LATERAL (
            SELECT {columns}
              FROM messages m
              LEFT JOIN LATERAL (
                   SELECT first_name, last_name, image FROM users
                    WHERE m.sender_type = 'User' AND institution_id = $1 AND id = m.sender_id
                    LIMIT 1) u ON true
             WHERE m.institution_id = $1 AND m.conversation_id = pg.id
               AND m.created_at >= $3::bigint{poll}
             ORDER BY m.created_at DESC, m.id DESC
             LIMIT $4::bigint) lm"
    )
}

/// A list statement: `ctes` define `pg` (the page's conversations, `id, created_at,
/// updated_at, patient_id`); `scalar` is one value (the count, a cursor probe) that the head
/// row carries even when the page is empty, and so is the location's time zone (NULL: not one
/// of the institution's locations), so that the access check needs no statement of its own.
///
/// The rows are of two kinds: one per conversation, with its patient (the head row is the
/// first of them, or alone for an empty page), and one per message, with its conversation's
/// id, each kind NULL in the other's columns. Joined into one row per message, the patient's
/// 15 columns were sent and decoded again with each of its messages. Rows come in no
/// particular order: `conversations_from` puts them in list order, which costs less there than
/// a sort of the rows here. The patient is a LATERAL lookup (kept from being flattened into a
/// join by its LIMIT): a generic plan cannot know the page is small, and chose a hash join
/// over a sequential scan of every patient for the plain join.
pub(crate) fn list_sql(ctes: &str, scalar: &str, poll: Option<&str>) -> String {
    let nulls = |n: usize| vec!["NULL"; n].join(", ");
    format!(
        "WITH {ctes}
         SELECT {conversation}, {no_message}, x.v, x.zone
           FROM (SELECT {scalar} AS v,
                        (SELECT tz FROM locations WHERE institution_id = $1 AND id = $2) AS zone) x
           LEFT JOIN (pg CROSS JOIN LATERAL (
                          SELECT * FROM patients
                           WHERE institution_id = $1 AND id = pg.patient_id LIMIT 1) p)
                  ON true
         UNION ALL
         SELECT {no_conversation}, lm.*, NULL, NULL
           FROM pg CROSS JOIN {lateral}",
        conversation = conversation_columns!(),
        no_message = nulls(MESSAGE_COLUMNS),
        no_conversation = nulls(MESSAGE_AT),
        lateral = lateral_messages(poll),
    )
}

/// The activity levels, each named by its shift (migration 4): stretches of 2^30 ms, slices of
/// 2^25 ms, fine steps of 2^20 ms, the same arithmetic as SQLite's.
macro_rules! activity_levels {
    () => {
        "(VALUES (20::smallint), (25::smallint), (30::smallint)) l (shift)"
    };
}
pub(crate) use activity_levels;

/// The levels a page's start walks, coarsest first: each bucket holds 32 of the next level's.
const WALK: [(&str, u32); 3] = [("stretch", 30), ("slice", 25), ("fine", 20)];

/// The bucket of level `shift` that holds offset `$6`, and how many conversations come before
/// it: the level's buckets newest first, inside the bucket the coarser level found (`outer`),
/// until the running count passes the offset. A bucket's stripes are its peers in the windows
/// (`cum` counts them all, `skipped` none): a `GROUP BY slice` first was planned as a hash
/// aggregate of every bucket, where the windows stream from the index and stop at the one
/// found.
fn level_cte(name: &str, shift: u32, outer: Option<(&str, u32)>) -> String {
    let (within, before) = match outer {
        None => (String::new(), "0".to_owned()),
        Some((o, coarser)) => {
            let k = coarser - shift;
            let mask = (1u32 << k) - 1;
            (
                format!(
                    " AND slice >= (SELECT slice << {k} FROM {o})
                      AND slice <= (SELECT (slice << {k}) | {mask} FROM {o})"
                ),
                format!("(SELECT skipped FROM {o})"),
            )
        }
    };
    format!(
        "{name} AS (
        SELECT slice, {before} + skipped AS skipped
          FROM (SELECT slice,
                       (sum(n) OVER (ORDER BY slice DESC))::bigint AS cum,
                       coalesce(sum(n) OVER (ORDER BY slice DESC
                                RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::bigint
                           AS skipped
                  FROM conversation_activity
                 WHERE institution_id = $1 AND location_id = $2 AND shift = {shift}{within}) s
         WHERE cum > $6::bigint - {before}
         ORDER BY slice DESC LIMIT 1)"
    )
}

/// Page-number paging: `$5` page size, `$6` offset, `$7` conversations updated since (or
/// i64::MIN), `$8` whether `updated_since` was given. The first page needs no levels; a deeper
/// one walks them (`WALK`) to the fine step holding its offset, starts at that step's end and
/// skips from there only the conversations of that step. Filtering by `updated_since` keeps a
/// prefix of the same order, so the levels count for it too.
fn page_ctes() -> String {
    let mut ctes = Vec::new();
    let mut outer = None;
    for (name, shift) in WALK {
        ctes.push(level_cte(name, shift, outer));
        outer = Some((name, shift));
    }
    let (last, shift) = WALK[WALK.len() - 1];
    let end = (1u64 << shift) - 1;
    ctes.push(format!(
        "pg AS MATERIALIZED (
        SELECT c.id, c.created_at, c.updated_at, c.patient_id
          FROM conversations c
         WHERE c.institution_id = $1 AND c.location_id = $2 AND c.updated_at >= $7::bigint
           AND c.updated_at <= CASE WHEN $6::bigint = 0 THEN 9223372036854775807
                                    ELSE (SELECT (slice << {shift}) | {end} FROM {last}) END
         ORDER BY c.updated_at DESC, c.id DESC
         LIMIT $5::bigint
        OFFSET CASE WHEN $6::bigint = 0 THEN 0 ELSE (SELECT $6::bigint - skipped FROM {last}) END)"
    ));
    ctes.join(",\n    ")
}

/// The count: kept per location (in stripes); with `updated_since`, whole slices newer than
/// the one holding it plus a range count inside that one slice.
const COUNT_SCALAR: &str = "CASE WHEN NOT $8::boolean
        THEN coalesce((SELECT sum(n) FROM conversation_counts
                        WHERE institution_id = $1 AND location_id = $2), 0)::bigint
        ELSE coalesce((SELECT sum(n) FROM conversation_activity
                        WHERE institution_id = $1 AND location_id = $2 AND shift = 25
                          AND slice > ($7::bigint >> 25)), 0)::bigint
           + (SELECT count(*) FROM conversations
               WHERE institution_id = $1 AND location_id = $2 AND updated_at >= $7::bigint
                 AND updated_at <= ((($7::bigint >> 25) << 25) | 33554431))
        END";

pub(crate) static PAGE_SQL: LazyLock<String> =
    LazyLock::new(|| list_sql(&page_ctes(), COUNT_SCALAR, None));
pub(crate) static PAGE_POLL_SQL: LazyLock<String> =
    LazyLock::new(|| list_sql(&page_ctes(), COUNT_SCALAR, Some("$9")));

/// One conversation of the location: `$5` its id.
const ONE_CTES: &str = "pg AS (
        SELECT id, created_at, updated_at, patient_id FROM conversations
         WHERE institution_id = $1 AND location_id = $2 AND id = $5::bigint)";

pub(crate) static ONE_SQL: LazyLock<String> =
    LazyLock::new(|| list_sql(ONE_CTES, "NULL::bigint", None));
pub(crate) static ONE_POLL_SQL: LazyLock<String> =
    LazyLock::new(|| list_sql(ONE_CTES, "NULL::bigint", Some("$6")));

/// The message parameters every list statement takes: `$3`, `$4` and the polling bound.
pub(crate) struct MessageParams {
    pub created_since: i64,
    pub limit: i64,
    pub updated_since: Option<i64>,
}

impl MessageParams {
    pub(crate) fn of(q: Option<&MessageQuery>) -> Self {
        match q {
            Some(q) => Self {
                created_since: q.created_since.map_or(i64::MIN, |m| m.0),
                limit: q.limit,
                updated_since: q.updated_since.map(|m| m.0),
            },
            None => Self {
                created_since: i64::MIN,
                limit: 0,
                updated_since: None,
            },
        }
    }
}

/// One page of location `loc` of institution `inst` (the caller has checked both).
pub(crate) async fn page(
    client: &impl GenericClient,
    scope: (i64, i64),
    q: &ListQuery,
) -> Result<ConversationPage, StoreError> {
    Ok(page_and_zone(client, scope, q).await?.0)
}

/// Where the head row carries the statement's scalar and the location's time zone.
pub(crate) const SCALAR_AT: usize = MESSAGE_AT + MESSAGE_COLUMNS;
const ZONE_AT: usize = SCALAR_AT + 1;

/// A page of location `loc` of institution `inst`, and the location's time zone (`None`: not
/// one of the institution's, and the page is empty), from one statement.
pub(crate) async fn page_and_zone(
    client: &impl GenericClient,
    (inst, loc): (i64, i64),
    q: &ListQuery,
) -> Result<(ConversationPage, Option<String>), StoreError> {
    let mp = MessageParams::of(q.messages.as_ref());
    if let Some(paging) = q.cursor {
        let (conversations, info, zone) = cursor_page(client, (inst, loc), q, paging, &mp).await?;
        return Ok((
            ConversationPage {
                conversations,
                paging: Paging::Cursors(info),
            },
            zone,
        ));
    }
    let since = q.updated_since.map_or(i64::MIN, |m| m.0);
    let given = q.updated_since.is_some();
    let offset = q.offset.max(0);
    let (sql, poll): (&str, i64) = match mp.updated_since {
        None => (&PAGE_SQL, 0),
        Some(poll) => (&PAGE_POLL_SQL, poll),
    };
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &inst,
        &loc,
        &mp.created_since,
        &mp.limit,
        &q.limit,
        &offset,
        &since,
        &given,
    ];
    if mp.updated_since.is_some() {
        params.push(&poll);
    }
    let stmt = client.prepare_cached(sql).await.db()?;
    let rows = client.query(&stmt, &params).await.db()?;
    let (count, zone): (i64, Option<String>) = match head(&rows)? {
        Some(row) => (
            row.try_get(SCALAR_AT).map_err(StoreError::fault)?,
            zone_of(row)?,
        ),
        None => (0, None),
    };
    Ok((
        ConversationPage {
            conversations: conversations_from(&rows)?,
            paging: Paging::Count(count),
        },
        zone,
    ))
}

pub(crate) fn zone_of(row: &tokio_postgres::Row) -> Result<Option<String>, StoreError> {
    row.try_get(ZONE_AT).map_err(StoreError::fault)
}

/// One conversation of the tenant's location (`GET /conversations/{id}`), with messages when
/// asked.
pub(crate) async fn one(
    client: &impl GenericClient,
    tenant: &TenantCtx,
    id: i64,
    messages: Option<&MessageQuery>,
) -> Result<Option<Conversation>, StoreError> {
    let (inst, loc) = (tenant.institution_id(), tenant.location_id());
    let mp = MessageParams::of(messages);
    let rows = match mp.updated_since {
        None => {
            let stmt = client.prepare_cached(&ONE_SQL).await.db()?;
            client
                .query(&stmt, &[&inst, &loc, &mp.created_since, &mp.limit, &id])
                .await
        }
        Some(poll) => {
            let stmt = client.prepare_cached(&ONE_POLL_SQL).await.db()?;
            client
                .query(
                    &stmt,
                    &[&inst, &loc, &mp.created_since, &mp.limit, &id, &poll],
                )
                .await
        }
    }
    .db()?;
    Ok(conversations_from(&rows)?.into_iter().next())
}
