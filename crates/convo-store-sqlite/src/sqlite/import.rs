//! `convo import`: every record of the file in one write transaction, checked as it goes.
//!
//! Records upsert by id, so importing the same file twice changes nothing. Conversation
//! `updated_at` is derived, so it is recomputed at the end for what the file touched rather than
//! trusted from the file; location counts and activity slices follow by trigger.
//!
//! A first load of messages (the table empty when the import starts) takes another path, since
//! files list messages in time order and the table is kept in thread order: inserted as they
//! came, each row landed on a random page of a table far larger than any cache (1 M
//! conversations: 652 s, a quarter of the rate at 100 k). Instead every message is checked as
//! before and staged in id order in a temporary table; at the end the thread-order table is
//! written from it in one sorted pass, and its secondary indexes are built after it rather than
//! kept row by row. It is the same transaction, so a refusal still leaves nothing behind.

use super::{Db, OPTIMIZE_SQL, immediate, phones};
use convo_core::import::{self, ImportBatch, ImportItem, Record};
use convo_core::import::{ImportError, ImportSummary};
use convo_core::tz::Zone;
use convo_core::{Millis, SenderKind, StoreError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::time::Instant;
use tokio::sync::mpsc;

/// The columns of a stored message, in the order `message` binds them (?1–?16).
macro_rules! message_columns {
    () => {
        "id, conversation_id, body, created_at, updated_at, sender_type, sender_id, seen_by,
         has_attachment, attachment_file_name, attachment_content_type, attachment_file_size,
         attachment_url, attachment_updated_at, sms_msg_id, is_custom_reminder_response"
    };
}

pub(crate) fn run(
    conn: &mut Connection,
    items: mpsc::Receiver<ImportBatch>,
) -> Result<ImportSummary, ImportError> {
    // A big import touches index pages all over the file: with SQLite's default 2 MB cache
    // every insert spills and re-reads pages through the kernel (most of a 2 M-message import
    // was system time). The larger cache is given back when the import ends.
    // Reads go through the page cache, not the file map: mapped pages count in the process's
    // RSS, and a first load reads the whole messages table back to index it.
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{IMPORT_CACHE_KIB}; PRAGMA mmap_size = 0;"
    ))
    .db()?;
    let journal = rollback_journal(conn);
    let result = apply_all(conn, items);
    if result.is_ok() {
        // Planner statistics for what was loaded, so the server's first start neither plans
        // blind nor reads the whole file to make them (`optimize` analyses only the tables
        // whose size changed enough to matter).
        let started = Instant::now();
        let _ = conn.execute_batch(OPTIMIZE_SQL);
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "import: planner statistics refreshed"
        );
    }
    if journal {
        let _ = conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
    }
    let _ = conn.execute_batch(
        "PRAGMA cache_size = -2000; PRAGMA mmap_size = 2147418112; PRAGMA shrink_memory;",
    );
    result
}

/// Leaves WAL for a rollback journal while the import runs, when no other connection has the
/// database open (`convo import` on a stopped server). A transaction larger than the cache goes
/// to the WAL once per spill of a page and is then copied into the database by the checkpoint;
/// a rollback journal keeps only the pages the import overwrites, and none of the pages it adds
/// (a first load: every page written once). Anyone else reading keeps WAL: the switch fails at
/// once, and the import runs as before.
fn rollback_journal(conn: &Connection) -> bool {
    let mode = conn.query_row("PRAGMA journal_mode = TRUNCATE", [], |r| {
        r.get::<_, String>(0)
    });
    let switched = mode.is_ok_and(|m| m.eq_ignore_ascii_case("truncate"));
    if switched {
        // The journal is synced before the database is written over; FULL also syncs the
        // journal's header, so a power cut cannot leave a commit half applied.
        let _ = conn.execute_batch("PRAGMA synchronous = FULL;");
    }
    switched
}

/// Page cache for the import's connection, in KiB (bounded so an import's RSS stays small).
const IMPORT_CACHE_KIB: u32 = 160 * 1024;

/// Page cache while a first load sorts and indexes: SQLite's sorter takes as much memory again
/// for each run it sorts, and the sorted writes need few pages cached.
const SORT_CACHE_KIB: u32 = 48 * 1024;

fn apply_all(
    conn: &mut Connection,
    mut items: mpsc::Receiver<ImportBatch>,
) -> Result<ImportSummary, ImportError> {
    let tx = immediate(conn)?;
    tx.execute_batch(
        "DROP TABLE IF EXISTS temp.import_touched;
         CREATE TEMP TABLE import_touched (id INTEGER PRIMARY KEY);",
    )
    .db()?;
    let first_load = is_empty(&tx, "messages")?;
    if first_load {
        tx.execute_batch(STAGE_SQL).db()?;
    }
    let triggers = defer_activity(&tx)?;
    let now = Millis::now();
    let started = Instant::now();
    let mut summary = ImportSummary::default();
    'read: loop {
        // The reader stopped before the end (a bad line or a read error): write nothing.
        let batch = items.blocking_recv().ok_or(ImportError::Aborted)?;
        for item in batch {
            match item {
                ImportItem::Record { line, record } => {
                    apply(&tx, record, now, first_load, &mut summary).map_err(|e| match e {
                        Refusal::Reason(reason) => ImportError::Line { line, reason },
                        Refusal::Store(e) => ImportError::Store(e),
                    })?;
                }
                ImportItem::Commit => break 'read,
            }
        }
    }
    if first_load {
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            messages = summary.messages,
            "import: file read and checked"
        );
        write_staged(&tx)?;
    }
    tx.execute_batch(
        "UPDATE conversations
            SET updated_at = max(created_at, coalesce(
                (SELECT max(updated_at) FROM messages m WHERE m.conversation_id = conversations.id),
                created_at))
          WHERE id IN (SELECT id FROM temp.import_touched);
         DROP TABLE temp.import_touched;",
    )
    .db()?;
    if let Some(triggers) = triggers {
        tx.execute_batch(&rebuild_activity_sql()).db()?;
        for sql in triggers {
            tx.execute_batch(&sql).db()?;
        }
    }
    tx.commit().db()?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "import: committed"
    );
    Ok(summary)
}

/// Whether `table` has no rows (messages: this import is their first load).
fn is_empty(tx: &Transaction, table: &str) -> Result<bool, StoreError> {
    tx.query_row(
        &format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"),
        [],
        |r| r.get(0),
    )
    .db()
}

/// Into a database without conversations, the triggers that keep each location's count and
/// activity levels are dropped for the import, and the counts built once at the end from the
/// conversations loaded (`rebuild_activity_sql`). Each trigger-firing statement kept a statement
/// journal of the pages it touched (written to a temporary file for every conversation, and again
/// for every conversation the derivation moves): 1.5 M writes for a 100,000-conversation load.
/// The triggers come back from their own definitions in the same transaction. `None`: nothing
/// deferred (the database has conversations, and the triggers keep its counts as it goes).
fn defer_activity(tx: &Transaction) -> Result<Option<Vec<String>>, StoreError> {
    if !is_empty(tx, "conversations")? {
        return Ok(None);
    }
    drop_defined(tx, "trigger", "conversations").map(Some)
}

/// Drops every `kind` (index, trigger) defined on `table` and returns their definitions, to
/// be run again later in the same transaction.
fn drop_defined(tx: &Transaction, kind: &str, table: &str) -> Result<Vec<String>, StoreError> {
    let defined: Vec<(String, String)> = tx
        .prepare(
            "SELECT name, sql FROM sqlite_schema
              WHERE type = ?1 AND tbl_name = ?2 AND sql IS NOT NULL",
        )
        .and_then(|mut s| {
            s.query_map([kind, table], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .db()?;
    for (name, _) in &defined {
        let name = name.replace('"', "\"\"");
        tx.execute_batch(&format!("DROP {kind} \"{name}\";")).db()?;
    }
    Ok(defined.into_iter().map(|(_, sql)| sql).collect())
}

/// Every location's count and activity levels, from its conversations (what the deferred
/// triggers would have kept), at the widths the list reads them with.
fn rebuild_activity_sql() -> String {
    use super::conversations::{FINE_BITS, SLICE_BITS, STRETCH_BITS};
    let level = |table: &str, column: &str, bits: u32| {
        format!(
            "DELETE FROM {table};
             INSERT INTO {table} (institution_id, location_id, {column}, n)
                 SELECT institution_id, location_id, updated_at >> {bits}, count(*)
                   FROM conversations GROUP BY 1, 2, 3;"
        )
    };
    [
        level("conversation_activity", "slice", SLICE_BITS),
        level("conversation_activity_stretches", "stretch", STRETCH_BITS),
        level("conversation_activity_fine", "fine", FINE_BITS),
        "UPDATE locations SET conversation_count = (SELECT count(*) FROM conversations c
            WHERE c.institution_id = locations.institution_id AND c.location_id = locations.id);"
            .to_string(),
    ]
    .concat()
}

/// A first load's messages, in file (id) order: the same columns as `messages`. A later line
/// with the same id replaces the earlier one, as an upsert by id does (`message`).
const STAGE_SQL: &str = "DROP TABLE IF EXISTS temp.import_messages;
    CREATE TEMP TABLE import_messages (
        id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL, body TEXT NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, sender_type TEXT NOT NULL,
        sender_id INTEGER, seen_by TEXT NOT NULL, has_attachment INTEGER NOT NULL,
        attachment_file_name TEXT, attachment_content_type TEXT, attachment_file_size INTEGER,
        attachment_url TEXT, attachment_updated_at INTEGER, sms_msg_id INTEGER,
        is_custom_reminder_response INTEGER NOT NULL);";

/// Writes a first load's staged messages into the (empty) table in its own key order, then
/// builds the table's secondary indexes, as the schema defines them, over the result.
fn write_staged(tx: &Transaction) -> Result<(), StoreError> {
    let run = |sql: &str| tx.execute_batch(sql).db();
    run(&format!("PRAGMA cache_size = -{SORT_CACHE_KIB};"))?;
    let indexes = drop_defined(tx, "index", "messages")?;
    // The file is read; what is left can take a while on a big load, so say what it is.
    tracing::info!("import: writing the staged messages in thread order");
    let started = Instant::now();
    run(concat!(
        "INSERT INTO messages (",
        message_columns!(),
        ") SELECT ",
        message_columns!(),
        " FROM temp.import_messages ORDER BY conversation_id, created_at DESC, id DESC;
         DROP TABLE temp.import_messages;"
    ))?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "import: messages written; building their indexes"
    );
    let started = Instant::now();
    for sql in &indexes {
        run(sql)?;
    }
    // Every conversation with messages now got them from this file.
    run("INSERT OR IGNORE INTO temp.import_touched (id)
         SELECT DISTINCT conversation_id FROM messages;")?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "import: message indexes built; deriving conversation activity"
    );
    run(&format!("PRAGMA cache_size = -{IMPORT_CACHE_KIB};"))
}

enum Refusal {
    Reason(String),
    Store(StoreError),
}

impl From<rusqlite::Error> for Refusal {
    fn from(e: rusqlite::Error) -> Self {
        Refusal::Store(super::db_error(e))
    }
}

fn refuse<T>(reason: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Reason(reason.into()))
}

/// The tables whose rows belong to an institution (an institution to itself).
#[derive(Clone, Copy)]
enum Owned {
    Institution,
    Location,
    Patient,
    User,
}

impl Owned {
    const fn owner_sql(self) -> &'static str {
        match self {
            Owned::Institution => "SELECT id FROM institutions WHERE id = ?1",
            Owned::Location => "SELECT institution_id FROM locations WHERE id = ?1",
            Owned::Patient => "SELECT institution_id FROM patients WHERE id = ?1",
            Owned::User => "SELECT institution_id FROM users WHERE id = ?1",
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Owned::Institution => "institution",
            Owned::Location => "location",
            Owned::Patient => "patient",
            Owned::User => "user",
        }
    }
}

/// The institution owning row `id` of `table`, if the row exists.
fn owner(tx: &Transaction, table: Owned, id: i64) -> Result<Option<i64>, Refusal> {
    Ok(tx
        .prepare_cached(table.owner_sql())?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

fn require_institution(tx: &Transaction, id: i64) -> Result<(), Refusal> {
    match owner(tx, Owned::Institution, id)? {
        Some(_) => Ok(()),
        None => refuse(format!("institution {id} does not exist")),
    }
}

/// A same-id record may be rewritten, but not moved to another institution.
fn not_moved(tx: &Transaction, table: Owned, id: i64, inst: i64) -> Result<(), Refusal> {
    match owner(tx, table, id)? {
        Some(existing) if existing != inst => refuse(format!(
            "{} {id} already belongs to institution {existing}",
            table.name()
        )),
        _ => Ok(()),
    }
}

fn apply(
    tx: &Transaction,
    record: Record,
    now: Millis,
    first_load: bool,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    match record {
        Record::Institution(r) => institution(tx, r, summary),
        Record::Location(r) => location(tx, r, summary),
        Record::Patient(r) => patient(tx, r, now, summary),
        Record::User(r) => user(tx, r, summary),
        Record::Conversation(r) => conversation(tx, r, summary),
        Record::Message(r) => message(tx, r, first_load, summary),
    }
}

fn institution(
    tx: &Transaction,
    r: import::Institution,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    if r.subdomain.trim().is_empty() {
        return refuse("subdomain may not be empty");
    }
    let taken: Option<i64> = tx
        .prepare_cached("SELECT id FROM institutions WHERE subdomain = ?1 COLLATE NOCASE")?
        .query_row([&r.subdomain], |row| row.get(0))
        .optional()?;
    if let Some(other) = taken.filter(|&o| o != r.id) {
        return refuse(format!(
            "subdomain `{}` is already used by institution {other}",
            r.subdomain
        ));
    }
    tx.prepare_cached(
        "INSERT INTO institutions (id, subdomain, name) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET subdomain = excluded.subdomain, name = excluded.name",
    )?
    .execute(params![r.id, r.subdomain, r.name])?;
    summary.institutions += 1;
    Ok(())
}

fn location(
    tx: &Transaction,
    r: import::Location,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    require_institution(tx, r.institution_id)?;
    if Zone::get(&r.tz).is_none() {
        return refuse(format!("tz `{}` is not an IANA time zone", r.tz));
    }
    not_moved(tx, Owned::Location, r.id, r.institution_id)?;
    tx.prepare_cached(
        "INSERT INTO locations (id, institution_id, name, tz, phone_number)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, tz = excluded.tz,
                phone_number = excluded.phone_number",
    )?
    .execute(params![
        r.id,
        r.institution_id,
        r.name,
        r.tz,
        r.phone_number
    ])?;
    phones::set_location_phone(tx, r.id, r.phone_number.as_deref())?;
    summary.locations += 1;
    Ok(())
}

fn patient(
    tx: &Transaction,
    r: import::Patient,
    now: Millis,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    require_institution(tx, r.institution_id)?;
    not_moved(tx, Owned::Patient, r.id, r.institution_id)?;
    // Absent timestamps mean "the import time", but only the first time: a re-import
    // keeps what the first one stored, so importing twice changes nothing.
    tx.prepare_cached(
        "INSERT INTO patients (id, institution_id, email, first_name, middle_name,
                last_name, foreign_id, foreign_id_type, bio, inactive, last_sync_time,
                guarantor_id, unsubscribe_sms, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                coalesce(?14, ?16), coalesce(?15, ?16))
             ON CONFLICT (id) DO UPDATE SET email = excluded.email,
                first_name = excluded.first_name, middle_name = excluded.middle_name,
                last_name = excluded.last_name, foreign_id = excluded.foreign_id,
                foreign_id_type = excluded.foreign_id_type, bio = excluded.bio,
                inactive = excluded.inactive, last_sync_time = excluded.last_sync_time,
                guarantor_id = excluded.guarantor_id,
                unsubscribe_sms = excluded.unsubscribe_sms,
                created_at = coalesce(?14, patients.created_at),
                updated_at = coalesce(?15, patients.updated_at)",
    )?
    .execute(params![
        r.id,
        r.institution_id,
        r.email,
        r.first_name,
        r.middle_name,
        r.last_name,
        r.foreign_id,
        r.foreign_id_type,
        r.bio.as_deref().unwrap_or("{}"),
        r.inactive,
        r.last_sync_time.map(|t| t.0.0),
        r.guarantor_id,
        r.unsubscribe_sms,
        r.created_at.map(|t| t.0.0),
        r.updated_at.map(|t| t.0.0),
        now.0,
    ])?;
    phones::set_patient_phones(tx, r.id, r.institution_id, r.bio.as_deref().unwrap_or("{}"))?;
    summary.patients += 1;
    Ok(())
}

fn user(tx: &Transaction, r: import::User, summary: &mut ImportSummary) -> Result<(), Refusal> {
    require_institution(tx, r.institution_id)?;
    not_moved(tx, Owned::User, r.id, r.institution_id)?;
    tx.prepare_cached(
        "INSERT INTO users (id, institution_id, first_name, last_name, email, image)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name,
                last_name = excluded.last_name, email = excluded.email, image = excluded.image",
    )?
    .execute(params![
        r.id,
        r.institution_id,
        r.first_name,
        r.last_name,
        r.email,
        r.image
    ])?;
    summary.users += 1;
    Ok(())
}

fn conversation(
    tx: &Transaction,
    r: import::Conversation,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    let Some(loc_inst) = owner(tx, Owned::Location, r.location_id)? else {
        return refuse(format!("location {} does not exist", r.location_id));
    };
    let Some(pat_inst) = owner(tx, Owned::Patient, r.patient_id)? else {
        return refuse(format!("patient {} does not exist", r.patient_id));
    };
    if loc_inst != pat_inst {
        return refuse(format!(
            "patient {} (institution {pat_inst}) and location {} (institution {loc_inst}) \
             belong to different institutions",
            r.patient_id, r.location_id
        ));
    }
    let same_pair: Option<i64> = tx
        .prepare_cached("SELECT id FROM conversations WHERE location_id = ?1 AND patient_id = ?2")?
        .query_row([r.location_id, r.patient_id], |row| row.get(0))
        .optional()?;
    if let Some(other) = same_pair.filter(|&o| o != r.id) {
        return refuse(format!(
            "location {} already has conversation {other} with patient {}",
            r.location_id, r.patient_id
        ));
    }
    let existing: Option<(i64, i64)> = tx
        .prepare_cached("SELECT location_id, patient_id FROM conversations WHERE id = ?1")?
        .query_row([r.id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if existing.is_some_and(|e| e != (r.location_id, r.patient_id)) {
        return refuse(format!(
            "conversation {} already exists with another location or patient",
            r.id
        ));
    }
    tx.prepare_cached(
        "INSERT INTO conversations (id, institution_id, location_id, patient_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at",
    )?
    .execute(params![r.id, loc_inst, r.location_id, r.patient_id, r.created_at.0.0])?;
    touch(tx, r.id)?;
    summary.conversations += 1;
    Ok(())
}

fn touch(tx: &Transaction, conversation_id: i64) -> Result<(), Refusal> {
    tx.prepare_cached("INSERT OR IGNORE INTO temp.import_touched (id) VALUES (?1)")?
        .execute([conversation_id])?;
    Ok(())
}

fn message(
    tx: &Transaction,
    r: import::Message,
    first_load: bool,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    let conv: Option<(i64, i64)> = tx
        .prepare_cached("SELECT institution_id, patient_id FROM conversations WHERE id = ?1")?
        .query_row([r.conversation_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((inst, patient)) = conv else {
        return refuse(format!("conversation {} does not exist", r.conversation_id));
    };
    let user_of_institution = |id: i64, role: &str| -> Result<(), Refusal> {
        match owner(tx, Owned::User, id)? {
            Some(i) if i == inst => Ok(()),
            Some(i) => refuse(format!(
                "{role} user {id} belongs to institution {i}, not {inst}"
            )),
            None => refuse(format!("{role} user {id} does not exist")),
        }
    };
    match (r.sender.kind, r.sender.id) {
        (SenderKind::Patient, Some(id)) if id != patient => {
            return refuse(format!(
                "sender patient {id} is not conversation {}'s patient ({patient})",
                r.conversation_id
            ));
        }
        (SenderKind::User, Some(id)) => user_of_institution(id, "sender")?,
        _ => {}
    }
    let mut seen: Vec<i64> = Vec::with_capacity(r.seen_by.len());
    for id in r.seen_by {
        user_of_institution(id, "seen_by")?;
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    let created = r.created_at.0;
    let updated = r.updated_at.map_or(created, |t| t.0);
    if updated < created {
        return refuse(format!(
            "updated_at {} is before created_at {}",
            updated.to_utc_string(),
            created.to_utc_string()
        ));
    }
    let seen_json = format!(
        "[{}]",
        seen.iter()
            .map(|id| format!("\"{id}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let previous: Option<i64> = if first_load {
        None
    } else {
        tx.prepare_cached("SELECT conversation_id FROM messages WHERE id = ?1")?
            .query_row([r.id], |row| row.get(0))
            .optional()?
    };
    if let Some(prev) = previous.filter(|&p| p != r.conversation_id) {
        touch(tx, prev)?;
    }
    let a = r.attachment.as_ref();
    // Update or insert by id: the table is keyed by thread position, so an edit may move the
    // row (another conversation or time), which an UPDATE of the key columns does. A first
    // load stages the row instead (write_staged), and touches conversations once at the end.
    let sql = if first_load {
        concat!(
            "INSERT INTO temp.import_messages (",
            message_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        )
    } else if previous.is_some() {
        "UPDATE messages SET conversation_id = ?2, body = ?3, created_at = ?4, updated_at = ?5,
            sender_type = ?6, sender_id = ?7, seen_by = ?8, has_attachment = ?9,
            attachment_file_name = ?10, attachment_content_type = ?11,
            attachment_file_size = ?12, attachment_url = ?13, attachment_updated_at = ?14,
            sms_msg_id = ?15, is_custom_reminder_response = ?16
         WHERE id = ?1"
    } else {
        concat!(
            "INSERT INTO messages (",
            message_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        )
    };
    let row = params![
        r.id,
        r.conversation_id,
        r.body,
        created.0,
        updated.0,
        r.sender.kind.as_str(),
        r.sender.id,
        seen_json,
        a.is_some(),
        a.and_then(|a| a.file_name.as_deref()),
        a.and_then(|a| a.content_type.as_deref()),
        a.and_then(|a| a.file_size),
        a.and_then(|a| a.url.as_deref()),
        // An attachment without its own time was attached when the message was written.
        a.map(|a| a.updated_at.map_or(created.0, |t| t.0.0)),
        r.sms_msg_id,
        r.is_custom_reminder_response,
    ];
    match tx.prepare_cached(sql)?.execute(row) {
        // A first load's id seen earlier in the file: the later line replaces the staged one.
        // (Not INSERT OR REPLACE: a statement that may delete before it inserts and may then
        // abort keeps a statement journal of every page it touches, for every staged row.)
        Err(rusqlite::Error::SqliteFailure(e, _))
            if first_load && e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            tx.prepare_cached("DELETE FROM temp.import_messages WHERE id = ?1")?
                .execute([r.id])?;
            tx.prepare_cached(sql)?.execute(row)?;
        }
        other => {
            other?;
        }
    }
    if !first_load {
        touch(tx, r.conversation_id)?;
    }
    summary.messages += 1;
    Ok(())
}
