//! The import's fast path: runs of consecutive records of one kind (messages, conversations,
//! patients: nearly all of a practice's file) are staged in a temp table with a few array
//! statements, checked against the database with one query, and applied with one statement
//! each, instead of five round trips per record.
//!
//! It is exactly the record-by-record import, by construction: every earlier run has been
//! applied when a run starts, so the database holds what the records before it wrote; records
//! of one kind never refer to each other, except by repeating an id (or, for conversations, a
//! location and patient), which sends the run down the record-by-record path. So does any
//! record the check finds wrong: that path then names the first bad line with the same words.

use crate::import::MESSAGE_UPSERT;
use crate::rows::message_table_columns;
use crate::{Db, copy};
use convo_core::StoreError;
use convo_core::import::{self, Record};
use convo_core::phone::bio_phones;
use deadpool_postgres::Transaction;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Records per run: large enough that a statement's overhead vanishes, small enough that a run
/// sent down the slow path costs little.
pub(crate) const RUN: usize = 4_000;

/// What the fast path knows of what the import has written so far.
#[derive(Default)]
pub(crate) struct Written {
    /// Conversations put in `import_touched`, so that each is sent once.
    pub touched: HashSet<i64>,
    /// While the database started without messages and every message came through the fast
    /// path in rising ids: the largest id written. A run whose ids all lie above it holds no
    /// id the database has (nothing else writes messages meanwhile: the deferred indexes'
    /// drops lock the table), so its records need no probe for an earlier version.
    pub messages_below: Option<i64>,
    /// While loading into an empty database: each conversation the conversations' fast path
    /// has written, with its institution and patient (neither can change later: the import
    /// refuses to move a conversation, its location or its patient). A message whose every
    /// reference it vouches for is copied in without asking the database (`copy_message`).
    pub threads: Option<HashMap<i64, (i64, i64)>>,
    /// The users' institutions as last read; `None` once a user record has been written
    /// since (read again at the next run of messages).
    pub users: Option<HashMap<i64, i64>>,
    /// The first load's copy, while one is open (`copy`).
    pub copy: Option<copy::OpenCopy>,
    /// While the database started without conversations and every conversation came through
    /// a fast path in rising ids: the largest id written (as `messages_below`).
    pub conversations_below: Option<i64>,
    /// In a first load, the patients the patients' fast path wrote, with their institution.
    pub patients: HashMap<i64, i64>,
    /// In a first load, the (location, patient) pair of every conversation written.
    pub pairs: HashSet<(i64, i64)>,
    /// The locations' institutions as last read; `None` once a location record has been
    /// written since.
    pub locations: Option<HashMap<i64, i64>>,
    /// Whether conversations were copied (`import_touched` then gets them all at the end).
    pub conversations_copied: bool,
    /// While the patients table started empty and every patient came through a fast path in
    /// rising ids: the largest id written.
    pub patients_below: Option<i64>,
    /// The institutions as last read (each its own owner); `None` once an institution record
    /// has been written.
    pub institutions: Option<HashMap<i64, i64>>,
    /// Copied patients' phones (institution, phone, patient), copied after them.
    pub phones: Vec<(i64, String, i64)>,
    /// The message table's primary key and id index, dropped for a first load's copy (whose
    /// rising new ids need neither; without them the copy takes half the time, and the
    /// builds a fraction of what the entries cost one by one): built again before a message
    /// is written any other way, or at the end.
    pub message_keys: Vec<String>,
}

/// The kinds that have a fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Message,
    Conversation,
    Patient,
}

pub(crate) fn kind(record: &Record) -> Option<Kind> {
    match record {
        Record::Message(_) => Some(Kind::Message),
        Record::Conversation(_) => Some(Kind::Conversation),
        Record::Patient(_) => Some(Kind::Patient),
        _ => None,
    }
}

/// The temp tables runs are staged in (dropped at commit).
pub(crate) const STAGING: &str = "
CREATE TEMP TABLE s_messages (
    id bigint, conversation_id bigint, body text, created_at bigint, updated_at bigint,
    sender_type text, sender_id bigint, seen_by text, has_attachment boolean,
    attachment_file_name text, attachment_content_type text, attachment_file_size bigint,
    attachment_url text, attachment_updated_at bigint, sms_msg_id bigint,
    is_custom_reminder_response boolean,
    institution_id bigint, patient_id bigint, prev_institution bigint, prev_conversation bigint)
    ON COMMIT DROP;
CREATE TEMP TABLE s_seen (message_id bigint, user_id bigint) ON COMMIT DROP;
CREATE TEMP TABLE s_conversations (
    id bigint, location_id bigint, patient_id bigint, created_at bigint,
    location_institution bigint, patient_institution bigint) ON COMMIT DROP;
CREATE TEMP TABLE s_patients (
    id bigint, institution_id bigint, email text, first_name text, middle_name text,
    last_name text, foreign_id text, foreign_id_type text, bio text, inactive boolean,
    last_sync_time bigint, guarantor_id bigint, unsubscribe_sms boolean, created_at bigint,
    updated_at bigint) ON COMMIT DROP;
CREATE TEMP TABLE s_phones (patient_id bigint, institution_id bigint, phone text) ON COMMIT DROP;";

/// Applies `run` (records of one kind) the fast way; `false` when it must go record by
/// record instead (nothing of it was written then).
pub(crate) async fn apply(
    tx: &Transaction<'_>,
    kind: Kind,
    run: &[Record],
    now: i64,
    written: &mut Written,
) -> Result<bool, StoreError> {
    match kind {
        Kind::Message => {
            copy::restore_message_keys(tx, written).await?;
            messages(tx, run, written).await
        }
        Kind::Conversation => conversations(tx, run, written).await,
        Kind::Patient => {
            let stored = patients(tx, run, now).await?;
            if stored {
                let largest = run.iter().filter_map(|r| match r {
                    Record::Patient(p) => Some(p.id),
                    _ => None,
                });
                let largest = largest.max().unwrap_or(i64::MIN);
                written.patients_below = written.patients_below.map(|b| b.max(largest));
            }
            if stored && written.threads.is_some() {
                written.patients.extend(run.iter().filter_map(|r| match r {
                    Record::Patient(p) => Some((p.id, p.institution_id)),
                    _ => None,
                }));
            }
            Ok(stored)
        }
    }
}

fn distinct<T: std::hash::Hash + Eq>(items: impl Iterator<Item = T>) -> bool {
    let mut seen = HashSet::new();
    items.into_iter().all(|i| seen.insert(i))
}

async fn exec(tx: &Transaction<'_>, sql: &str) -> Result<u64, StoreError> {
    tx.execute(sql, &[]).await.db()
}

/// A run of messages staged with what each record refers to, one index probe each (a LATERAL
/// with LIMIT is never turned into a join, and a join was planned as a scan of the whole
/// table, whose statistics predate the import): its conversation's institution and patient,
/// and the institution and conversation of a stored message with its id (left empty when
/// the run's ids are known to be new).
fn stage_sql(probe_earlier: bool) -> String {
    let earlier = if probe_earlier {
        "LEFT JOIN LATERAL (SELECT institution_id, conversation_id FROM messages
                             WHERE id = r.id LIMIT 1) pm ON true"
    } else {
        "LEFT JOIN LATERAL (SELECT NULL::bigint AS institution_id,
                                   NULL::bigint AS conversation_id) pm ON true"
    };
    format!(
        "INSERT INTO s_messages
         SELECT r.*, c.institution_id, c.patient_id, pm.institution_id, pm.conversation_id
           FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                       $6::text[], $7::bigint[], $8::text[], $9::boolean[], $10::text[],
                       $11::text[], $12::bigint[], $13::text[], $14::bigint[], $15::bigint[],
                       $16::boolean[])
                AS r(id, conversation_id, body, created_at, updated_at, sender_type, sender_id,
                     seen_by, has_attachment, attachment_file_name, attachment_content_type,
                     attachment_file_size, attachment_url, attachment_updated_at, sms_msg_id,
                     is_custom_reminder_response)
           LEFT JOIN LATERAL (SELECT institution_id, patient_id FROM conversations
                               WHERE id = r.conversation_id LIMIT 1) c ON true
           {earlier}"
    )
}

static STAGE_SQL: LazyLock<String> = LazyLock::new(|| stage_sql(true));
static STAGE_NEW_SQL: LazyLock<String> = LazyLock::new(|| stage_sql(false));

/// The staged messages into `messages`: those with `rows` earlier versions, with `upsert`.
fn apply_sql(rows: &str, upsert: &str) -> String {
    let columns = message_table_columns!();
    format!(
        "INSERT INTO messages ({columns}) SELECT {columns} FROM s_messages
          WHERE prev_institution {rows} {upsert}"
    )
}

static APPLY_NEW_SQL: LazyLock<String> = LazyLock::new(|| apply_sql("IS NULL", ""));
static APPLY_KNOWN_SQL: LazyLock<String> =
    LazyLock::new(|| apply_sql("IS NOT NULL", MESSAGE_UPSERT));

async fn messages(
    tx: &Transaction<'_>,
    run: &[Record],
    written: &mut Written,
) -> Result<bool, StoreError> {
    let ms: Vec<&import::Message> = run
        .iter()
        .filter_map(|r| match r {
            Record::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    // Checks the database cannot do: a repeated id, a time that goes backwards.
    if !distinct(ms.iter().map(|m| m.id))
        || ms
            .iter()
            .any(|m| m.updated_at.is_some_and(|u| u.0 < m.created_at.0))
    {
        return Ok(false);
    }
    let mut seen = (Vec::new(), Vec::new());
    let mut seen_json = Vec::with_capacity(ms.len());
    for m in &ms {
        let (ids, json) = seen_by(m);
        for id in ids {
            seen.0.push(m.id);
            seen.1.push(id);
        }
        seen_json.push(json);
    }
    let col = |f: fn(&import::Message) -> Option<i64>| ms.iter().map(|m| f(m)).collect::<Vec<_>>();
    let ids: Vec<i64> = ms.iter().map(|m| m.id).collect();
    let conversations: Vec<i64> = ms.iter().map(|m| m.conversation_id).collect();
    let bodies: Vec<&str> = ms.iter().map(|m| m.body.as_str()).collect();
    let created: Vec<i64> = ms.iter().map(|m| m.created_at.0.0).collect();
    let updated: Vec<i64> = ms
        .iter()
        .map(|m| m.updated_at.map_or(m.created_at.0.0, |t| t.0.0))
        .collect();
    let kinds: Vec<&str> = ms.iter().map(|m| m.sender.kind.as_str()).collect();
    let senders = col(|m| m.sender.id);
    let attached: Vec<bool> = ms.iter().map(|m| m.attachment.is_some()).collect();
    let a = |f: fn(&import::AttachmentRec) -> Option<String>| {
        ms.iter()
            .map(|m| m.attachment.as_ref().and_then(f))
            .collect::<Vec<_>>()
    };
    let (names, types, urls) = (
        a(|a| a.file_name.clone()),
        a(|a| a.content_type.clone()),
        a(|a| a.url.clone()),
    );
    let sizes: Vec<Option<i64>> = ms
        .iter()
        .map(|m| m.attachment.as_ref().and_then(|a| a.file_size))
        .collect();
    // An attachment without its own time was attached when the message was written.
    let attached_at: Vec<Option<i64>> = ms
        .iter()
        .map(|m| {
            m.attachment
                .as_ref()
                .map(|a| a.updated_at.map_or(m.created_at.0.0, |t| t.0.0))
        })
        .collect();
    let sms = col(|m| m.sms_msg_id);
    let reminders: Vec<bool> = ms.iter().map(|m| m.is_custom_reminder_response).collect();
    let largest = ids.iter().copied().max().unwrap_or(i64::MIN);
    let all_new = written
        .messages_below
        .is_some_and(|below| ids.iter().all(|&id| id > below));
    let sql = if all_new {
        &*STAGE_NEW_SQL
    } else {
        &*STAGE_SQL
    };
    tx.execute(
        sql,
        &[
            &ids,
            &conversations,
            &bodies,
            &created,
            &updated,
            &kinds,
            &senders,
            &seen_json,
            &attached,
            &names,
            &types,
            &sizes,
            &urls,
            &attached_at,
            &sms,
            &reminders,
        ],
    )
    .await
    .db()?;
    tx.execute(
        "INSERT INTO s_seen SELECT * FROM unnest($1::bigint[], $2::bigint[])",
        &[&seen.0, &seen.1],
    )
    .await
    .db()?;
    // The record-by-record checks, for the whole run at once: its conversation exists, a
    // patient sender is its patient, every staff user named is of its institution.
    let bad = tx
        .query_opt(
            "SELECT 1 FROM s_messages r
              WHERE r.institution_id IS NULL
                 OR (r.sender_type = 'Patient' AND r.sender_id IS NOT NULL
                     AND r.sender_id <> r.patient_id)
                 OR (r.sender_type = 'User' AND r.sender_id IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM users u
                                      WHERE u.id = r.sender_id
                                        AND u.institution_id = r.institution_id))
             UNION ALL
             SELECT 1 FROM s_seen s
               JOIN s_messages r ON r.id = s.message_id
              WHERE NOT EXISTS (SELECT 1 FROM users u
                                 WHERE u.id = s.user_id AND u.institution_id = r.institution_id)
              LIMIT 1",
            &[],
        )
        .await
        .db()?;
    if bad.is_some() {
        exec(tx, "TRUNCATE s_messages, s_seen").await?;
        return Ok(false);
    }
    // A rewritten message that moved: its old conversation's activity is derived again, and a
    // move to another institution is a new row there (rows are keyed by institution).
    exec(
        tx,
        "INSERT INTO import_touched (institution_id, id)
             SELECT prev_institution, prev_conversation FROM s_messages
              WHERE (prev_institution, prev_conversation) <> (institution_id, conversation_id)
         ON CONFLICT DO NOTHING",
    )
    .await?;
    let moved = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM s_messages WHERE prev_institution <> institution_id)",
            &[],
        )
        .await
        .db()?;
    if moved.get::<_, bool>(0) {
        exec(
            tx,
            "DELETE FROM messages m USING s_messages r
              WHERE r.prev_institution <> r.institution_id
                AND m.institution_id = r.prev_institution AND m.id = r.id",
        )
        .await?;
    }
    // Ids the database did not hold when staged are inserted plainly (no speculative
    // insertion per row); the others replace what is stored.
    exec(tx, &APPLY_NEW_SQL).await?;
    exec(tx, &APPLY_KNOWN_SQL).await?;
    // The conversations written to, once each: a conversation's id is one institution's
    // (the import refuses to move one), so the id alone says whether it is in the set.
    let fresh: Vec<i64> = conversations
        .iter()
        .copied()
        .filter(|&c| written.touched.insert(c))
        .collect();
    if !fresh.is_empty() {
        tx.execute(
            "INSERT INTO import_touched (institution_id, id)
                 SELECT DISTINCT institution_id, conversation_id FROM s_messages
                  WHERE conversation_id = ANY($1::bigint[])
             ON CONFLICT DO NOTHING",
            &[&fresh],
        )
        .await
        .db()?;
    }
    exec(tx, "TRUNCATE s_messages, s_seen").await?;
    written.messages_below = written.messages_below.map(|below| below.max(largest));
    Ok(true)
}

/// A message's readers once each, in order, and the stored JSON of them.
pub(crate) fn seen_by(m: &import::Message) -> (Vec<i64>, String) {
    let mut ids: Vec<i64> = Vec::with_capacity(m.seen_by.len());
    for id in &m.seen_by {
        if !ids.contains(id) {
            ids.push(*id);
        }
    }
    let json = seen_json(&ids);
    (ids, json)
}

/// The stored JSON of a message's readers: their ids as strings (the record path's too).
pub(crate) fn seen_json(ids: &[i64]) -> String {
    format!(
        "[{}]",
        ids.iter()
            .map(|id| format!("\"{id}\""))
            .collect::<Vec<_>>()
            .join(",")
    )
}

async fn conversations(
    tx: &Transaction<'_>,
    run: &[Record],
    written: &mut Written,
) -> Result<bool, StoreError> {
    let cs: Vec<&import::Conversation> = run
        .iter()
        .filter_map(|r| match r {
            Record::Conversation(c) => Some(c),
            _ => None,
        })
        .collect();
    if !distinct(cs.iter().map(|c| c.id))
        || !distinct(cs.iter().map(|c| (c.location_id, c.patient_id)))
    {
        return Ok(false);
    }
    let ids: Vec<i64> = cs.iter().map(|c| c.id).collect();
    let locations: Vec<i64> = cs.iter().map(|c| c.location_id).collect();
    let patients: Vec<i64> = cs.iter().map(|c| c.patient_id).collect();
    let created: Vec<i64> = cs.iter().map(|c| c.created_at.0.0).collect();
    tx.execute(
        "INSERT INTO s_conversations
             SELECT *, NULL, NULL FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])",
        &[&ids, &locations, &patients, &created],
    )
    .await
    .db()?;
    exec(
        tx,
        "UPDATE s_conversations r SET
            location_institution = (SELECT institution_id FROM locations
                                     WHERE id = r.location_id LIMIT 1),
            patient_institution = (SELECT institution_id FROM patients
                                    WHERE id = r.patient_id LIMIT 1)",
    )
    .await?;
    // Location and patient exist, in one institution; no other conversation has the pair;
    // an existing conversation with the id has the same pair. (Scalar subqueries: one index
    // probe per record, as for messages.)
    let bad = tx
        .query_opt(
            "SELECT 1 FROM s_conversations r
              WHERE r.location_institution IS NULL OR r.patient_institution IS NULL
                 OR r.location_institution <> r.patient_institution
                 OR (SELECT 1 FROM conversations c
                      WHERE c.institution_id = r.location_institution
                        AND c.location_id = r.location_id AND c.patient_id = r.patient_id
                        AND c.id <> r.id LIMIT 1) IS NOT NULL
                 OR (SELECT 1 FROM conversations c
                      WHERE c.id = r.id
                        AND (c.location_id, c.patient_id) <> (r.location_id, r.patient_id)
                      LIMIT 1) IS NOT NULL
              LIMIT 1",
            &[],
        )
        .await
        .db()?
        .is_some();
    if !bad {
        let stored = tx
            .query(
                "INSERT INTO conversations (institution_id, id, location_id, patient_id,
                        created_at, updated_at)
                     SELECT r.location_institution, r.id, r.location_id, r.patient_id,
                            r.created_at, r.created_at
                       FROM s_conversations r
                 ON CONFLICT (institution_id, id) DO UPDATE SET created_at = excluded.created_at
                 RETURNING id, institution_id, patient_id, location_id",
                &[],
            )
            .await
            .db()?;
        if let Some(threads) = &mut written.threads {
            threads.extend(stored.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))));
            written
                .pairs
                .extend(stored.iter().map(|r| (r.get(3), r.get(2))));
        }
        let largest = ids.iter().copied().max().unwrap_or(i64::MIN);
        written.conversations_below = written.conversations_below.map(|b| b.max(largest));
        exec(
            tx,
            "INSERT INTO import_touched (institution_id, id)
                 SELECT r.location_institution, r.id FROM s_conversations r
             ON CONFLICT DO NOTHING",
        )
        .await?;
        written.touched.extend(&ids);
    }
    exec(tx, "TRUNCATE s_conversations").await?;
    Ok(!bad)
}

async fn patients(tx: &Transaction<'_>, run: &[Record], now: i64) -> Result<bool, StoreError> {
    let ps: Vec<&import::Patient> = run
        .iter()
        .filter_map(|r| match r {
            Record::Patient(p) => Some(p),
            _ => None,
        })
        .collect();
    if !distinct(ps.iter().map(|p| p.id)) {
        return Ok(false);
    }
    let text =
        |f: fn(&import::Patient) -> Option<String>| ps.iter().map(|p| f(p)).collect::<Vec<_>>();
    let ids: Vec<i64> = ps.iter().map(|p| p.id).collect();
    let institutions: Vec<i64> = ps.iter().map(|p| p.institution_id).collect();
    let bios: Vec<&str> = ps
        .iter()
        .map(|p| p.bio.as_deref().unwrap_or("{}"))
        .collect();
    let flags = |f: fn(&import::Patient) -> bool| ps.iter().map(|p| f(p)).collect::<Vec<_>>();
    let times =
        |f: fn(&import::Patient) -> Option<i64>| ps.iter().map(|p| f(p)).collect::<Vec<_>>();
    let mut phones = (Vec::new(), Vec::new(), Vec::new());
    for (p, bio) in ps.iter().zip(&bios) {
        for phone in bio_phones(bio) {
            phones.0.push(p.id);
            phones.1.push(p.institution_id);
            phones.2.push(phone);
        }
    }
    tx.execute(
        "INSERT INTO s_patients SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[],
            $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
            $10::boolean[], $11::bigint[], $12::bigint[], $13::boolean[], $14::bigint[],
            $15::bigint[])",
        &[
            &ids,
            &institutions,
            &text(|p| p.email.clone()),
            &text(|p| p.first_name.clone()),
            &text(|p| p.middle_name.clone()),
            &text(|p| p.last_name.clone()),
            &text(|p| p.foreign_id.clone()),
            &text(|p| p.foreign_id_type.clone()),
            &bios,
            &flags(|p| p.inactive),
            &times(|p| p.last_sync_time.map(|t| t.0.0)),
            &ps.iter().map(|p| p.guarantor_id).collect::<Vec<_>>(),
            &flags(|p| p.unsubscribe_sms),
            &times(|p| p.created_at.map(|t| t.0.0)),
            &times(|p| p.updated_at.map(|t| t.0.0)),
        ],
    )
    .await
    .db()?;
    // The institution exists; a patient with the id is not another institution's.
    let bad = tx
        .query_opt(
            "SELECT 1 FROM s_patients r
              WHERE NOT EXISTS (SELECT 1 FROM institutions i WHERE i.id = r.institution_id)
                 OR (SELECT 1 FROM patients p
                      WHERE p.id = r.id AND p.institution_id <> r.institution_id LIMIT 1)
                    IS NOT NULL
              LIMIT 1",
            &[],
        )
        .await
        .db()?;
    if bad.is_none() {
        // Absent timestamps mean "the import time", but only the first time: a rewrite keeps
        // what the first import stored.
        exec(
            tx,
            "UPDATE patients p SET email = r.email, first_name = r.first_name,
                    middle_name = r.middle_name, last_name = r.last_name,
                    foreign_id = r.foreign_id, foreign_id_type = r.foreign_id_type, bio = r.bio,
                    inactive = r.inactive, last_sync_time = r.last_sync_time,
                    guarantor_id = r.guarantor_id, unsubscribe_sms = r.unsubscribe_sms,
                    created_at = coalesce(r.created_at, p.created_at),
                    updated_at = coalesce(r.updated_at, p.updated_at)
               FROM s_patients r
              WHERE p.institution_id = r.institution_id AND p.id = r.id",
        )
        .await?;
        tx.execute(
            "INSERT INTO patients (institution_id, id, email, first_name, middle_name, last_name,
                    foreign_id, foreign_id_type, bio, inactive, last_sync_time, guarantor_id,
                    unsubscribe_sms, created_at, updated_at)
                 SELECT institution_id, id, email, first_name, middle_name, last_name,
                        foreign_id, foreign_id_type, bio, inactive, last_sync_time,
                        guarantor_id, unsubscribe_sms, coalesce(created_at, $1),
                        coalesce(updated_at, $1)
                   FROM s_patients r
                  WHERE NOT EXISTS (SELECT 1 FROM patients p
                                     WHERE p.institution_id = r.institution_id AND p.id = r.id)",
            &[&now],
        )
        .await
        .db()?;
        exec(
            tx,
            "DELETE FROM patient_phones pp USING s_patients r
              WHERE pp.institution_id = r.institution_id AND pp.patient_id = r.id",
        )
        .await?;
        tx.execute(
            "INSERT INTO patient_phones (institution_id, phone, patient_id)
                 SELECT i, ph, p FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS x(p, i, ph)
             ON CONFLICT DO NOTHING",
            &[&phones.0, &phones.1, &phones.2],
        )
        .await
        .db()?;
    }
    exec(tx, "TRUNCATE s_patients").await?;
    Ok(bad.is_none())
}
