//! `convo import`: every record of the file in one transaction, checked as it goes, with the
//! same rules and messages as on SQLite (record by record, so a record may refer only to what
//! came before it).
//!
//! Records upsert by id, so importing the same file twice changes nothing. Conversation
//! `updated_at` is derived, so it is recomputed at the end for what the file touched; then the
//! kept counts and activity slices of the locations it touched are rebuilt (there are no
//! triggers to keep them), and each id sequence moves past the largest id in its table.

use crate::conversations::activity_levels;
use crate::rows::message_table_columns;
use crate::{Db, bulk, copy, phones};
use convo_core::import::{self, ImportBatch, ImportItem, Record};
use convo_core::import::{ImportError, ImportSummary};
use convo_core::tz::Zone;
use convo_core::{Millis, SenderKind, StoreError};
use deadpool_postgres::Transaction;
use std::time::Instant;
use tokio::sync::mpsc;

/// One import at a time per database (an advisory lock held to commit): the id checks below
/// read across institutions, which only holds if no other import writes meanwhile.
const IMPORT_LOCK: i64 = 0x636f_6e76_6f69_6d70;

pub(crate) async fn apply_all(
    tx: &Transaction<'_>,
    items: &mut mpsc::Receiver<ImportBatch>,
) -> Result<ImportSummary, ImportError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&IMPORT_LOCK])
        .await
        .db()?;
    // A long batch job: no statement limit (rebuilding an index over millions of rows takes
    // longer than a request may), and room to sort for those builds and for the derivation's
    // joins. No JIT: the checks of a run are costed high (the tables' statistics predate the
    // import) and compiling them took 0.3 s a run, twenty times what running them takes.
    tx.batch_execute(
        "SET LOCAL statement_timeout = 0;
         SET LOCAL maintenance_work_mem = '256MB';
         SET LOCAL work_mem = '64MB';
         SET LOCAL jit = off",
    )
    .await
    .db()?;
    let mut deferred = defer_indexes(tx).await?;
    tx.batch_execute(
        "CREATE TEMP TABLE import_touched (
            institution_id bigint NOT NULL, id bigint NOT NULL,
            PRIMARY KEY (institution_id, id)) ON COMMIT DROP",
    )
    .await
    .db()?;
    tx.batch_execute(bulk::STAGING).await.db()?;
    let now = Millis::now();
    let started = Instant::now();
    let mut summary = ImportSummary::default();
    // Consecutive records of a kind with a fast path wait here until the run is full or the
    // kind changes; every other record goes at once, after the run before it.
    let mut run: Vec<(u64, Record)> = Vec::with_capacity(bulk::RUN);
    let mut run_kind = None;
    // Patients are copied only into an empty table: its ids need no probe then.
    let no_patients = deferred.is_some()
        && tx
            .query_one("SELECT NOT EXISTS (SELECT 1 FROM patients)", &[])
            .await
            .db()?
            .get::<_, bool>(0);
    let mut written = bulk::Written {
        patients_below: no_patients.then_some(i64::MIN),
        messages_below: deferred.is_some().then_some(i64::MIN),
        threads: deferred.is_some().then(Default::default),
        conversations_below: deferred.is_some().then_some(i64::MIN),
        message_keys: deferred
            .as_mut()
            .map(|d| std::mem::take(&mut d.message_keys))
            .unwrap_or_default(),
        ..bulk::Written::default()
    };
    'read: loop {
        // A copy stays open only over records already read: a backend in COPY waiting for
        // data does not answer the cluster's barriers, so a `DROP DATABASE` anywhere on the
        // server would wait on a slow input (a pipe, a test feeding lines) until it resumed.
        let batch = match items.try_recv() {
            Ok(batch) => batch,
            Err(_) => {
                copy::end_copy(tx, &mut written).await?;
                // The reader stopped before the end (a bad line or a read error): write
                // nothing.
                items.recv().await.ok_or(ImportError::Aborted)?
            }
        };
        for item in batch {
            let ImportItem::Record { line, record } = item else {
                break 'read;
            };
            let kind = bulk::kind(&record);
            // A first load's conversations and messages stream into an open copy while
            // each is vouched for and no run waits before them (the writes keep the file's
            // order).
            if kind.is_some() && run_kind != kind {
                flush(tx, run_kind, &mut run, now, &mut summary, &mut written).await?;
            }
            if run.is_empty() && copy::copy(tx, &record, &mut written, now.0).await? {
                match kind {
                    Some(bulk::Kind::Conversation) => summary.conversations += 1,
                    Some(bulk::Kind::Patient) => summary.patients += 1,
                    _ => summary.messages += 1,
                }
                continue;
            }
            copy::end_copy(tx, &mut written).await?;
            if run_kind != kind || run.len() >= bulk::RUN {
                flush(tx, run_kind, &mut run, now, &mut summary, &mut written).await?;
            }
            run_kind = kind;
            if kind.is_some() {
                run.push((line, record));
            } else {
                match record {
                    Record::User(_) => written.users = None,
                    Record::Location(_) => written.locations = None,
                    Record::Institution(_) => written.institutions = None,
                    _ => {}
                }
                one(tx, line, record, now, &mut summary).await?;
            }
        }
    }
    copy::end_copy(tx, &mut written).await?;
    flush(tx, run_kind, &mut run, now, &mut summary, &mut written).await?;
    copy::finish(tx, &mut written).await?;
    // What is left can take a while on a big load: say what it is and what it took.
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        messages = summary.messages,
        "import: file read, checked and written"
    );
    let deferred = deferred.unwrap_or_default();
    let phase = Instant::now();
    for create in &deferred.before_derive {
        tx.batch_execute(create).await.db()?;
    }
    if !deferred.before_derive.is_empty() {
        tracing::info!(
            seconds = phase.elapsed().as_secs_f64(),
            "import: message indexes built; deriving conversation activity"
        );
    }
    let phase = Instant::now();
    derive(tx).await?;
    for create in &deferred.after_derive {
        tx.batch_execute(create).await.db()?;
    }
    tracing::info!(
        seconds = phase.elapsed().as_secs_f64(),
        "import: conversation activity derived"
    );
    Ok(summary)
}

/// What an import into an empty database dropped, to be built again: the message indexes
/// and the foreign keys before the derivation (which reads threads by those indexes), the
/// list index after it (so that moving every conversation's `updated_at` updates no index).
#[derive(Default)]
struct Deferred {
    /// The message table's keys by id: needed only once a message is written otherwise than
    /// by the first load's copy (`bulk::Written::message_keys`).
    message_keys: Vec<String>,
    before_derive: Vec<String>,
    after_derive: Vec<String>,
}

/// Into an empty database, the indexes ordered by conversation (whose entries land all over
/// the tree, one random page write each) and the foreign keys of messages and conversations
/// (a lookup per row; the import checks the same references itself) are dropped for the load
/// and built once at the end, from their own definitions: 400,000 messages inserted in 3.9 s
/// with them, 1.2 s without (the indexes' builds then take 0.7 s). Kept: the keys the checks
/// and upserts probe by id.
///
/// The foreign keys come back `NOT VALID`: enforced for every later write, and not proved
/// again over the rows just loaded, which the import's own checks have each held to the same
/// references (that proof read the whole message table, 5 s of a 2 M-message load); `ALTER
/// TABLE … VALIDATE CONSTRAINT` proves them at any time without blocking writers (README).
///
/// The drops lock both tables until commit, which only an empty database can afford; a
/// database with data keeps every index and the import inserts into them, and so does a
/// partitioned schema (whose indexes and keys are rebuilt per partition, not so). `None`: no
/// deferral.
async fn defer_indexes(tx: &Transaction<'_>) -> Result<Option<Deferred>, StoreError> {
    let empty: bool = tx
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM messages)
                AND NOT EXISTS (SELECT 1 FROM conversations)
                AND (SELECT bool_and(relkind = 'r') FROM pg_class
                      WHERE oid IN ('messages'::regclass, 'conversations'::regclass))",
            &[],
        )
        .await
        .db()?
        .get(0);
    if !empty {
        return Ok(None);
    }
    // (drop, create, when the create comes: 0 the message keys, 1 before the derivation,
    // 2 after it). The primary key goes before the foreign keys' drops reach it: none refers
    // to it (it is dropped last).
    let rows = tx
        .query(
            "SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname),
                    format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', conrelid::regclass,
                           conname, pg_get_constraintdef(oid)),
                    2
               FROM pg_constraint
              WHERE conrelid IN ('messages'::regclass, 'conversations'::regclass)
                AND contype = 'f'
             UNION ALL
             SELECT format('DROP INDEX %s', indexrelid::regclass), pg_get_indexdef(indexrelid),
                    CASE indexrelid WHEN 'conversations_list'::regclass THEN 2
                                    WHEN 'messages_id'::regclass THEN 0 ELSE 1 END
               FROM pg_index
              WHERE indexrelid IN ('messages_thread'::regclass, 'messages_updated'::regclass,
                                   'messages_id'::regclass, 'conversations_list'::regclass)
             UNION ALL
             SELECT format('ALTER TABLE messages DROP CONSTRAINT %I', conname),
                    format('ALTER TABLE messages ADD CONSTRAINT %I %s', conname,
                           pg_get_constraintdef(oid)),
                    0
               FROM pg_constraint
              WHERE conrelid = 'messages'::regclass AND contype = 'p'",
            &[],
        )
        .await
        .db()?;
    // Emptied again (it holds nothing, and nothing refers to it) so that the copies into it
    // may write their rows frozen (`COPY … FREEZE` needs a table truncated in the same
    // transaction): the index builds, the derivation and the first vacuum then read them
    // without writing every page again to set its hint bits.
    tx.batch_execute("TRUNCATE messages").await.db()?;
    let mut deferred = Deferred::default();
    for row in rows {
        tx.batch_execute(row.get(0)).await.db()?;
        let create: String = row.get(1);
        match row.get::<_, i32>(2) {
            0 => deferred.message_keys.push(create),
            1 => deferred.before_derive.push(create),
            _ => deferred.after_derive.push(create),
        }
    }
    // Pages half filled while loading, so that the derivation's update of every conversation
    // writes each new version beside the old one (an update in place, no index entry while
    // the list index is away): 1.9 s → 0.5 s for 100,000 conversations. Only when the table
    // has no fill factor of its own, which the reset would lose.
    let default_fill: bool = tx
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_class, unnest(reloptions) o
                                 WHERE oid = 'conversations'::regclass
                                   AND o LIKE 'fillfactor=%')",
            &[],
        )
        .await
        .db()?
        .get(0);
    if default_fill {
        tx.batch_execute("ALTER TABLE conversations SET (fillfactor = 50)")
            .await
            .db()?;
        deferred
            .after_derive
            .push("ALTER TABLE conversations RESET (fillfactor)".into());
    }
    Ok(Some(deferred))
}

/// Applies a pending run: at once when the fast path takes it, else record by record.
async fn flush(
    tx: &Transaction<'_>,
    kind: Option<bulk::Kind>,
    run: &mut Vec<(u64, Record)>,
    now: Millis,
    summary: &mut ImportSummary,
    written: &mut bulk::Written,
) -> Result<(), ImportError> {
    let (Some(kind), false) = (kind, run.is_empty()) else {
        return Ok(());
    };
    let records: Vec<Record> = run.iter().map(|(_, r)| r.clone()).collect();
    if bulk::apply(tx, kind, &records, now.0, written).await? {
        let n = u64::try_from(records.len()).unwrap_or(u64::MAX);
        match kind {
            bulk::Kind::Message => summary.messages += n,
            bulk::Kind::Conversation => summary.conversations += n,
            bulk::Kind::Patient => summary.patients += n,
        }
        run.clear();
        return Ok(());
    }
    // The record path writes what the fast path does not track.
    match kind {
        bulk::Kind::Message => written.messages_below = None,
        bulk::Kind::Conversation => written.conversations_below = None,
        bulk::Kind::Patient => written.patients_below = None,
    }
    for (line, record) in run.drain(..) {
        one(tx, line, record, now, summary).await?;
    }
    Ok(())
}

async fn one(
    tx: &Transaction<'_>,
    line: u64,
    record: Record,
    now: Millis,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    apply(tx, record, now, summary).await.map_err(|e| match e {
        Refusal::Reason(reason) => ImportError::Line { line, reason },
        Refusal::Store(e) => ImportError::Store(e),
    })
}

/// What the records imply: conversation activity, then counts and slices of the locations
/// touched, then the id sequences.
async fn derive(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(concat!(
        "UPDATE conversations c
            SET updated_at = greatest(c.created_at, coalesce(
                (SELECT max(m.updated_at) FROM messages m
                  WHERE m.institution_id = c.institution_id AND m.conversation_id = c.id),
                c.created_at))
           FROM import_touched t
          WHERE c.institution_id = t.institution_id AND c.id = t.id;
         -- Writers running meanwhile move counts by deltas of what they change; with the
         -- table locked, a write this rebuild does not see adds its delta after it.
         LOCK TABLE conversation_activity, conversation_counts IN EXCLUSIVE MODE;
         CREATE TEMP TABLE import_locations ON COMMIT DROP AS
             SELECT DISTINCT c.institution_id, c.location_id
               FROM import_touched t
               JOIN conversations c ON c.institution_id = t.institution_id AND c.id = t.id;
         DELETE FROM conversation_activity a USING import_locations l
          WHERE a.institution_id = l.institution_id AND a.location_id = l.location_id;
         INSERT INTO conversation_activity (institution_id, location_id, shift, slice, stripe, n)
             SELECT c.institution_id, c.location_id, l.shift, c.updated_at >> l.shift, 0, count(*)
               FROM conversations c
               JOIN import_locations i
                 ON c.institution_id = i.institution_id AND c.location_id = i.location_id,
                    ",
        activity_levels!(),
        "
              GROUP BY 1, 2, 3, 4;
         DELETE FROM conversation_counts n USING import_locations l
          WHERE n.institution_id = l.institution_id AND n.location_id = l.location_id;
         INSERT INTO conversation_counts (institution_id, location_id, n)
             SELECT c.institution_id, c.location_id, count(*)
               FROM conversations c
               JOIN import_locations l
                 ON c.institution_id = l.institution_id AND c.location_id = l.location_id
              GROUP BY 1, 2;"
    ))
    .await
    .db()?;
    for table in ["patients", "conversations", "messages"] {
        // Never backwards: another process may have taken ids past the imported ones.
        tx.execute(
            &format!(
                "SELECT setval(s::regclass, greatest(
                        (SELECT coalesce(max(id), 0) FROM {table}),
                        coalesce(pg_sequence_last_value(s::regclass), 0), 1))
                   FROM pg_get_serial_sequence('{table}', 'id') AS s"
            ),
            &[],
        )
        .await
        .db()?;
    }
    Ok(())
}

/// How a message imported again replaces the stored one: whole (the record path and the fast
/// path, `bulk`, share it).
pub(crate) const MESSAGE_UPSERT: &str = "ON CONFLICT (institution_id, id) DO UPDATE SET
    conversation_id = excluded.conversation_id, body = excluded.body,
    created_at = excluded.created_at, updated_at = excluded.updated_at,
    sender_type = excluded.sender_type, sender_id = excluded.sender_id,
    seen_by = excluded.seen_by, has_attachment = excluded.has_attachment,
    attachment_file_name = excluded.attachment_file_name,
    attachment_content_type = excluded.attachment_content_type,
    attachment_file_size = excluded.attachment_file_size,
    attachment_url = excluded.attachment_url,
    attachment_updated_at = excluded.attachment_updated_at,
    sms_msg_id = excluded.sms_msg_id,
    is_custom_reminder_response = excluded.is_custom_reminder_response";

/// One message, inserted or replaced (formatted once: the record path runs it per message).
static MESSAGE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO messages ({})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         {MESSAGE_UPSERT}",
        message_table_columns!()
    )
});

enum Refusal {
    Reason(String),
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

impl From<tokio_postgres::Error> for Refusal {
    fn from(e: tokio_postgres::Error) -> Self {
        Refusal::Store(crate::db_error(e))
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
            Owned::Institution => "SELECT id FROM institutions WHERE id = $1",
            Owned::Location => "SELECT institution_id FROM locations WHERE id = $1",
            Owned::Patient => "SELECT institution_id FROM patients WHERE id = $1",
            Owned::User => "SELECT institution_id FROM users WHERE id = $1",
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

/// The institution owning row `id` of `table`, if the row exists (ids are unique across
/// institutions, as on SQLite).
async fn owner(tx: &Transaction<'_>, table: Owned, id: i64) -> Result<Option<i64>, Refusal> {
    let stmt = tx.prepare_cached(table.owner_sql()).await?;
    Ok(tx.query_opt(&stmt, &[&id]).await?.map(|r| r.get(0)))
}

async fn require_institution(tx: &Transaction<'_>, id: i64) -> Result<(), Refusal> {
    match owner(tx, Owned::Institution, id).await? {
        Some(_) => Ok(()),
        None => refuse(format!("institution {id} does not exist")),
    }
}

/// A same-id record may be rewritten, but not moved to another institution.
async fn not_moved(tx: &Transaction<'_>, table: Owned, id: i64, inst: i64) -> Result<(), Refusal> {
    match owner(tx, table, id).await? {
        Some(existing) if existing != inst => refuse(format!(
            "{} {id} already belongs to institution {existing}",
            table.name()
        )),
        _ => Ok(()),
    }
}

async fn apply(
    tx: &Transaction<'_>,
    record: Record,
    now: Millis,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    match record {
        Record::Institution(r) => institution(tx, r, summary).await,
        Record::Location(r) => location(tx, r, summary).await,
        Record::Patient(r) => patient(tx, r, now, summary).await,
        Record::User(r) => user(tx, r, summary).await,
        Record::Conversation(r) => conversation(tx, r, summary).await,
        Record::Message(r) => message(tx, r, summary).await,
    }
}

async fn institution(
    tx: &Transaction<'_>,
    r: import::Institution,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    if r.subdomain.trim().is_empty() {
        return refuse("subdomain may not be empty");
    }
    let taken = tx
        .prepare_cached("SELECT id FROM institutions WHERE lower(subdomain) = lower($1)")
        .await?;
    let taken: Option<i64> = tx
        .query_opt(&taken, &[&r.subdomain])
        .await?
        .map(|row| row.get(0));
    if let Some(other) = taken.filter(|&o| o != r.id) {
        return refuse(format!(
            "subdomain `{}` is already used by institution {other}",
            r.subdomain
        ));
    }
    let upsert = tx
        .prepare_cached(
            "INSERT INTO institutions (id, subdomain, name) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET subdomain = excluded.subdomain, name = excluded.name",
        )
        .await?;
    tx.execute(&upsert, &[&r.id, &r.subdomain, &r.name]).await?;
    summary.institutions += 1;
    Ok(())
}

async fn location(
    tx: &Transaction<'_>,
    r: import::Location,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    require_institution(tx, r.institution_id).await?;
    if Zone::get(&r.tz).is_none() {
        return refuse(format!("tz `{}` is not an IANA time zone", r.tz));
    }
    not_moved(tx, Owned::Location, r.id, r.institution_id).await?;
    let upsert = tx
        .prepare_cached(
            "INSERT INTO locations (institution_id, id, name, tz, phone_number)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (institution_id, id) DO UPDATE SET name = excluded.name,
                tz = excluded.tz, phone_number = excluded.phone_number",
        )
        .await?;
    tx.execute(
        &upsert,
        &[&r.institution_id, &r.id, &r.name, &r.tz, &r.phone_number],
    )
    .await?;
    phones::set_location_phone(tx, r.institution_id, r.id, r.phone_number.as_deref()).await?;
    summary.locations += 1;
    Ok(())
}

async fn patient(
    tx: &Transaction<'_>,
    r: import::Patient,
    now: Millis,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    require_institution(tx, r.institution_id).await?;
    not_moved(tx, Owned::Patient, r.id, r.institution_id).await?;
    // Absent timestamps mean "the import time", but only the first time: a re-import keeps
    // what the first one stored, so importing twice changes nothing.
    let upsert = tx
        .prepare_cached(
            "INSERT INTO patients (institution_id, id, email, first_name, middle_name,
                last_name, foreign_id, foreign_id_type, bio, inactive, last_sync_time,
                guarantor_id, unsubscribe_sms, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                coalesce($14::bigint, $16::bigint), coalesce($15::bigint, $16::bigint))
             ON CONFLICT (institution_id, id) DO UPDATE SET email = excluded.email,
                first_name = excluded.first_name, middle_name = excluded.middle_name,
                last_name = excluded.last_name, foreign_id = excluded.foreign_id,
                foreign_id_type = excluded.foreign_id_type, bio = excluded.bio,
                inactive = excluded.inactive, last_sync_time = excluded.last_sync_time,
                guarantor_id = excluded.guarantor_id,
                unsubscribe_sms = excluded.unsubscribe_sms,
                created_at = coalesce($14::bigint, patients.created_at),
                updated_at = coalesce($15::bigint, patients.updated_at)",
        )
        .await?;
    let bio = r.bio.as_deref().unwrap_or("{}");
    tx.execute(
        &upsert,
        &[
            &r.institution_id,
            &r.id,
            &r.email,
            &r.first_name,
            &r.middle_name,
            &r.last_name,
            &r.foreign_id,
            &r.foreign_id_type,
            &bio,
            &r.inactive,
            &r.last_sync_time.map(|t| t.0.0),
            &r.guarantor_id,
            &r.unsubscribe_sms,
            &r.created_at.map(|t| t.0.0),
            &r.updated_at.map(|t| t.0.0),
            &now.0,
        ],
    )
    .await?;
    phones::set_patient_phones(tx, r.id, r.institution_id, bio).await?;
    summary.patients += 1;
    Ok(())
}

async fn user(
    tx: &Transaction<'_>,
    r: import::User,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    require_institution(tx, r.institution_id).await?;
    not_moved(tx, Owned::User, r.id, r.institution_id).await?;
    let upsert = tx
        .prepare_cached(
            "INSERT INTO users (institution_id, id, first_name, last_name, email, image)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (institution_id, id) DO UPDATE SET first_name = excluded.first_name,
                last_name = excluded.last_name, email = excluded.email, image = excluded.image",
        )
        .await?;
    tx.execute(
        &upsert,
        &[
            &r.institution_id,
            &r.id,
            &r.first_name,
            &r.last_name,
            &r.email,
            &r.image,
        ],
    )
    .await?;
    summary.users += 1;
    Ok(())
}

async fn conversation(
    tx: &Transaction<'_>,
    r: import::Conversation,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    let Some(loc_inst) = owner(tx, Owned::Location, r.location_id).await? else {
        return refuse(format!("location {} does not exist", r.location_id));
    };
    let Some(pat_inst) = owner(tx, Owned::Patient, r.patient_id).await? else {
        return refuse(format!("patient {} does not exist", r.patient_id));
    };
    if loc_inst != pat_inst {
        return refuse(format!(
            "patient {} (institution {pat_inst}) and location {} (institution {loc_inst}) \
             belong to different institutions",
            r.patient_id, r.location_id
        ));
    }
    let pair = tx
        .prepare_cached(
            "SELECT id FROM conversations
              WHERE institution_id = $1 AND location_id = $2 AND patient_id = $3",
        )
        .await?;
    let same_pair: Option<i64> = tx
        .query_opt(&pair, &[&loc_inst, &r.location_id, &r.patient_id])
        .await?
        .map(|row| row.get(0));
    if let Some(other) = same_pair.filter(|&o| o != r.id) {
        return refuse(format!(
            "location {} already has conversation {other} with patient {}",
            r.location_id, r.patient_id
        ));
    }
    let by_id = tx
        .prepare_cached("SELECT location_id, patient_id FROM conversations WHERE id = $1")
        .await?;
    let existing: Option<(i64, i64)> = tx
        .query_opt(&by_id, &[&r.id])
        .await?
        .map(|row| (row.get(0), row.get(1)));
    if existing.is_some_and(|e| e != (r.location_id, r.patient_id)) {
        return refuse(format!(
            "conversation {} already exists with another location or patient",
            r.id
        ));
    }
    let upsert = tx
        .prepare_cached(
            "INSERT INTO conversations (institution_id, id, location_id, patient_id, created_at,
                updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (institution_id, id) DO UPDATE SET created_at = excluded.created_at",
        )
        .await?;
    tx.execute(
        &upsert,
        &[
            &loc_inst,
            &r.id,
            &r.location_id,
            &r.patient_id,
            &r.created_at.0.0,
        ],
    )
    .await?;
    touch(tx, loc_inst, r.id).await?;
    summary.conversations += 1;
    Ok(())
}

async fn touch(tx: &Transaction<'_>, inst: i64, conversation_id: i64) -> Result<(), Refusal> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO import_touched (institution_id, id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&stmt, &[&inst, &conversation_id]).await?;
    Ok(())
}

async fn message(
    tx: &Transaction<'_>,
    r: import::Message,
    summary: &mut ImportSummary,
) -> Result<(), Refusal> {
    let conv = tx
        .prepare_cached("SELECT institution_id, patient_id FROM conversations WHERE id = $1")
        .await?;
    let Some((inst, patient)) = tx
        .query_opt(&conv, &[&r.conversation_id])
        .await?
        .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1)))
    else {
        return refuse(format!("conversation {} does not exist", r.conversation_id));
    };
    match (r.sender.kind, r.sender.id) {
        (SenderKind::Patient, Some(id)) if id != patient => {
            return refuse(format!(
                "sender patient {id} is not conversation {}'s patient ({patient})",
                r.conversation_id
            ));
        }
        (SenderKind::User, Some(id)) => user_of_institution(tx, inst, id, "sender").await?,
        _ => {}
    }
    let mut seen: Vec<i64> = Vec::with_capacity(r.seen_by.len());
    for id in r.seen_by {
        user_of_institution(tx, inst, id, "seen_by").await?;
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
    let seen_json = bulk::seen_json(&seen);
    let prev = tx
        .prepare_cached("SELECT institution_id, conversation_id FROM messages WHERE id = $1")
        .await?;
    let previous: Option<(i64, i64)> = tx
        .query_opt(&prev, &[&r.id])
        .await?
        .map(|row| (row.get(0), row.get(1)));
    if let Some((prev_inst, prev_conv)) = previous
        && (prev_inst, prev_conv) != (inst, r.conversation_id)
    {
        touch(tx, prev_inst, prev_conv).await?;
        if prev_inst != inst {
            // Keyed by institution: a message moved to another institution's conversation is
            // a new row there.
            tx.execute(
                "DELETE FROM messages WHERE institution_id = $1 AND id = $2",
                &[&prev_inst, &r.id],
            )
            .await?;
        }
    }
    let a = r.attachment.as_ref();
    let upsert = tx.prepare_cached(&MESSAGE_SQL).await?;
    // An attachment without its own time was attached when the message was written.
    let attached_at = a.map(|a| a.updated_at.map_or(created.0, |t| t.0.0));
    tx.execute(
        &upsert,
        &[
            &inst,
            &r.id,
            &r.conversation_id,
            &r.body,
            &created.0,
            &updated.0,
            &r.sender.kind.as_str(),
            &r.sender.id,
            &seen_json,
            &a.is_some(),
            &a.and_then(|a| a.file_name.as_deref()),
            &a.and_then(|a| a.content_type.as_deref()),
            &a.and_then(|a| a.file_size),
            &a.and_then(|a| a.url.as_deref()),
            &attached_at,
            &r.sms_msg_id,
            &r.is_custom_reminder_response,
        ],
    )
    .await?;
    touch(tx, inst, r.conversation_id).await?;
    summary.messages += 1;
    Ok(())
}

async fn user_of_institution(
    tx: &Transaction<'_>,
    inst: i64,
    id: i64,
    role: &str,
) -> Result<(), Refusal> {
    match owner(tx, Owned::User, id).await? {
        Some(i) if i == inst => Ok(()),
        Some(i) => refuse(format!(
            "{role} user {id} belongs to institution {i}, not {inst}"
        )),
        None => refuse(format!("{role} user {id} does not exist")),
    }
}
