//! What several writers at once must not break on PostgreSQL, where nothing serialises them the
//! way SQLite's one writer does. (SQLite cannot fail these: they are PostgreSQL's own.)

mod common;

use convo_core::outbox::Attempt;
use convo_core::store::prelude::*;
use convo_core::write::{InboundSms, NewMessage};
use convo_core::{ListQuery, Millis};
use convo_store_postgres::scratch::ScratchDb;
use convo_store_postgres::{PgOptions, PgStore};
use convo_store_tests::fixture::{ANA_NUMBER, LOCATION_NUMBER, practice, tenant, whole_list};
use std::collections::HashSet;
use std::sync::Arc;

async fn fresh() -> (ScratchDb, Arc<PgStore>) {
    let db = ScratchDb::create().await.expect("scratch database");
    let store = PgStore::open(
        db.url(),
        PgOptions {
            pool_size: 8,
            ..PgOptions::default()
        },
    )
    .await
    .expect("open");
    practice(&store).await;
    (db, Arc::new(store))
}

fn staff(body: String) -> NewMessage {
    NewMessage {
        patient_id: 100,
        user_id: 5,
        body,
        attachment: None,
        idempotency: None,
    }
}

/// Sends, patient texts and seen marks on one thread at once: all land, none deadlocks (a
/// deadlock is retried, so it would pass unseen but for the retry count: locking the
/// conversation FOR UPDATE against the key-share locks of message inserts did, constantly),
/// and within the thread ids and times agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_of_one_thread_never_deadlock_and_keep_its_order() {
    let (_db, store) = fresh().await;
    let here = tenant(1, 10);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (store1, here1) = (store.clone(), here.clone());
        tasks.push(tokio::spawn(async move {
            store1
                .send_message(&here1, staff(format!("staff {i}")))
                .await
                .map(|_| ())
        }));
        let store2 = store.clone();
        tasks.push(tokio::spawn(async move {
            store2
                .receive_sms(InboundSms {
                    to: LOCATION_NUMBER.into(),
                    from: ANA_NUMBER.into(),
                    body: format!("patient {i}"),
                    sid: format!("SM{i}"),
                    media: None,
                })
                .await
                .map(|_| ())
        }));
        let (store3, here3) = (store.clone(), here.clone());
        tasks.push(tokio::spawn(async move {
            store3
                .mark_seen(&here3, 50001, 5 + (i % 2))
                .await
                .map(|_| ())
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("write");
    }
    assert_eq!(store.transaction_retries(), 0, "writers deadlocked");
    let page = store
        .list_conversations(&here, &whole_list())
        .await
        .expect("list");
    let thread = page
        .conversations
        .iter()
        .find(|c| c.id == 1000)
        .expect("thread");
    let new: Vec<_> = thread
        .messages
        .iter()
        .filter(|m| m.body.starts_with("staff ") || m.body.starts_with("patient "))
        .collect();
    assert_eq!(new.len(), 48);
    for a in &new {
        for b in &new {
            assert!(
                !(a.id < b.id && a.created_at > b.created_at),
                "message {} is older than {} but has a newer time",
                b.id,
                a.id
            );
        }
    }
    assert_eq!(thread.updated_at, new[0].created_at.max(thread.updated_at));
}

/// Eight workers claiming from one queue at once never share a delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_share_a_delivery() {
    let (_db, store) = fresh().await;
    let here = tenant(1, 10);
    for i in 0..120 {
        store
            .send_message(&here, staff(format!("queued {i}")))
            .await
            .expect("send");
    }
    let mut workers = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let me = store.register_worker().await.expect("worker");
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim_deliveries(me, Millis::now(), 60_000, 5)
                    .await
                    .expect("claim");
                if batch.is_empty() {
                    break mine;
                }
                for d in batch {
                    store
                        .finish_delivery(
                            me,
                            d.id,
                            Attempt::Accepted {
                                provider_id: format!("SM-{}", d.id),
                            },
                        )
                        .await
                        .expect("finish");
                    mine.push(d.id);
                }
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for w in workers {
        for id in w.await.expect("worker") {
            total += 1;
            assert!(seen.insert(id), "delivery {id} claimed twice");
        }
    }
    assert_eq!(total, 120);
}

/// Processes starting together on a new database: the schema is applied once, all open, and
/// they share one token secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_opens_migrate_once_and_share_one_secret() {
    let admin = convo_store_postgres::scratch::admin_url();
    let client = common::raw(&admin).await;
    let name = format!("convo_first_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&sql).await.expect("create");
    }
    let url = format!(
        "{}/{name}",
        admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(root, _)| root)
    );
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::open(&url, PgOptions::default()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.expect("task").expect("open"));
    }
    let mut secrets = HashSet::new();
    for s in &stores {
        s.check_ready().await.expect("ready");
        secrets.insert(s.jwt_secret().await.expect("secret"));
    }
    assert_eq!(secrets.len(), 1);
    let db_client = common::raw(&url).await;
    let rows = db_client
        .query("SELECT version, count(*) FROM convo_schema GROUP BY 1", &[])
        .await
        .expect("versions");
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.get::<_, i64>(1) == 1));
    drop((stores, db_client));
    client
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .expect("drop");
}

/// After an import, new rows take ids past every imported one (the sequences moved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_continue_after_the_largest_imported_one() {
    let (_db, store) = fresh().await;
    let sent = store
        .send_message(&tenant(1, 10), staff("after the import".into()))
        .await
        .expect("send");
    assert!(
        sent.id > 50030,
        "message id {} reuses the imported range",
        sent.id
    );
    let inbound = store
        .receive_sms(InboundSms {
            to: LOCATION_NUMBER.into(),
            from: "+12025550199".into(),
            body: "new number".into(),
            sid: "SMnew".into(),
            media: None,
        })
        .await
        .expect("inbound");
    assert!(inbound.conversation_id > 2000);
    let q = ListQuery {
        limit: 50,
        ..whole_list()
    };
    let page = store
        .list_conversations(&tenant(1, 10), &q)
        .await
        .expect("list");
    let newcomer = page
        .conversations
        .iter()
        .find(|c| c.id == inbound.conversation_id)
        .expect("new conversation");
    assert!(newcomer.patient.id > 200);
}

/// A database a newer build migrated is refused at open and reported by readiness, never
/// served (its schema may mean something this build does not know).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_not_ready() {
    let db = ScratchDb::create().await.expect("scratch database");
    let store = db.open().await.expect("open");
    store.check_ready().await.expect("ready");
    let client = common::raw(db.url()).await;
    client
        .batch_execute("INSERT INTO convo_schema VALUES (999, 0)")
        .await
        .expect("newer version");
    let refused = PgStore::open(db.url(), PgOptions::default()).await;
    assert!(
        matches!(
            refused,
            Err(convo_core::StoreError::Refused(
                convo_core::Refusal::SchemaMismatch { found: 999, .. }
            ))
        ),
        "{:?}",
        refused.err()
    );
    let e = store.check_ready().await.expect_err("not ready");
    assert!(
        matches!(
            e,
            convo_core::StoreError::Refused(convo_core::Refusal::SchemaMismatch { found: 999, .. })
        ),
        "{e:?}"
    );
}

/// A fault names PostgreSQL's code and words for the operator's log (tokio-postgres alone
/// says "db error"), and nothing of the rows involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_says_what_postgres_said() {
    let (db, store) = fresh().await;
    let client = common::raw(db.url()).await;
    client
        .batch_execute("ALTER TABLE users RENAME TO users_gone")
        .await
        .expect("rename");
    let e = store
        .send_message(&tenant(1, 10), staff("Your crown is ready".into()))
        .await
        .expect_err("no users table");
    let said = e.to_string();
    assert!(
        said.contains("42P01") && said.contains("relation \"users\" does not exist"),
        "{said}"
    );
    assert!(!said.contains("crown"), "{said}");
}

/// The schema's indexes and keys, as PostgreSQL states them (validity aside).
async fn schema_of(url: &str) -> Vec<String> {
    let client = common::raw(url).await;
    client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()
             UNION ALL
             SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
               FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
             ORDER BY 1",
            &[],
        )
        .await
        .expect("schema")
        .iter()
        .map(|r| r.get::<_, String>(0).replace(" NOT VALID", ""))
        .collect()
}

/// A load into an empty database drops the thread indexes and the foreign keys and builds
/// them at the end: what it leaves is the schema the migrations made, and the keys hold for
/// later writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_into_an_empty_database_leaves_the_schema_it_found() {
    let db = ScratchDb::create().await.expect("scratch database");
    let before = schema_of(db.url()).await;
    assert!(
        before.iter().any(|d| d.contains("messages_thread")),
        "{before:#?}"
    );
    let store = db.open().await.expect("open");
    practice(&store).await;
    assert_eq!(schema_of(db.url()).await, before);
    let client = common::raw(db.url()).await;
    let orphan = client
        .batch_execute(
            "INSERT INTO messages (institution_id, id, conversation_id, body, created_at,
                    updated_at, sender_type)
             VALUES (1, 999999, 424242, 'x', 0, 0, 'System')",
        )
        .await
        .expect_err("a message of no conversation");
    assert_eq!(
        orphan.code(),
        Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
    );
}

/// Concurrent writers keep the counts in rows of their own stripe: a send that starts a thread
/// and one that moves an old thread into the current activity slice never wait for another
/// writer's uncommitted counts. (With one row per location and slice, every such send queued
/// on that row's lock until the writer before it committed: three samples of the active
/// backends in four waited there, and 16 connections sent 370 messages/s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_count_in_stripes_of_their_own() {
    let db = ScratchDb::create().await.expect("scratch database");
    let store = common::one_connection(db.url()).await;
    practice(&store).await;
    let raw = common::raw(db.url()).await;
    // Patient 104 has no thread yet; patient 105's is two years old.
    raw.batch_execute(
        r#"INSERT INTO patients (institution_id, id, first_name, bio, created_at, updated_at)
           VALUES (1, 104, 'Dee', '{"cell_phone_number":"+15165550104"}', 0, 0),
                  (1, 105, 'Eli', '{"cell_phone_number":"+15165550105"}', 0, 0);
           INSERT INTO conversations (institution_id, id, location_id, patient_id, created_at,
                                      updated_at)
           VALUES (1, 1005, 10, 105, 1700000000000, 1700000000000);
           INSERT INTO conversation_activity (institution_id, location_id, shift, slice, stripe, n)
           SELECT 1, 10, l.shift, 1700000000000 >> l.shift, 0, 1
             FROM (VALUES (20::smallint), (25::smallint), (30::smallint)) l (shift);
           INSERT INTO conversation_counts (institution_id, location_id, stripe, n)
           VALUES (1, 10, 0, 1)
           ON CONFLICT (institution_id, location_id, stripe)
           DO UPDATE SET n = conversation_counts.n + 1;"#,
    )
    .await
    .expect("patients");
    let to = |patient_id| NewMessage {
        patient_id,
        ..staff("Your crown is ready".into())
    };
    // The first send moves thread 1000 into the current slice: the store's stripe is the one
    // row there, and it is its backend's.
    let first = store
        .send_message(&tenant(1, 10), to(100))
        .await
        .expect("send");
    let at = first.created_at.0;
    let rows = raw
        .query(
            "SELECT stripe::int FROM conversation_activity
              WHERE institution_id = 1 AND location_id = 10 AND shift = 25 AND slice = $1::bigint >> 25",
            &[&at],
        )
        .await
        .expect("stripes");
    assert_eq!(rows.len(), 1, "one writer, one stripe");
    let own: i32 = rows[0].get(0);
    let backends: Vec<i32> = raw
        .query(
            "SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("backends")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        backends.iter().any(|pid| pid % 16 == own),
        "stripe {own} is not a backend's of {backends:?}"
    );
    // Another writer holds every other stripe's counts, uncommitted, at every level.
    raw.batch_execute("BEGIN").await.expect("begin");
    raw.execute(
        "INSERT INTO conversation_activity (institution_id, location_id, shift, slice, stripe, n)
         SELECT 1, 10, l.shift, $1::bigint >> l.shift, s, 0
           FROM generate_series(0, 15) s,
                (VALUES (20::smallint), (25::smallint), (30::smallint)) l (shift)
          WHERE s <> $2
         ON CONFLICT (institution_id, location_id, shift, slice, stripe)
         DO UPDATE SET n = conversation_activity.n",
        &[&at, &own],
    )
    .await
    .expect("hold the slice");
    raw.execute(
        "INSERT INTO conversation_counts (institution_id, location_id, stripe, n)
         SELECT 1, 10, s, 0 FROM generate_series(0, 15) s WHERE s <> $1
         ON CONFLICT (institution_id, location_id, stripe)
         DO UPDATE SET n = conversation_counts.n",
        &[&own],
    )
    .await
    .expect("hold the count");
    for patient in [104, 105] {
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            store.send_message(&tenant(1, 10), to(patient)),
        )
        .await
        .unwrap_or_else(|_| panic!("the send to {patient} waited for the other writer"))
        .expect("send");
    }
    raw.batch_execute("ROLLBACK").await.expect("rollback");
    // The sums are right: 4 + 1 + 1 conversations, 3 of them in the current slice.
    let page = store
        .list_conversations(&tenant(1, 10), &whole_list())
        .await
        .expect("list");
    assert_eq!(page.paging, convo_core::Paging::Count(6));
    // A bucket's count split over stripes, one of them below zero, still places every page.
    raw.execute(
        "INSERT INTO conversation_activity (institution_id, location_id, shift, slice, stripe, n)
         SELECT 1, 10, l.shift, $1::bigint >> l.shift, x.stripe, x.n
           FROM (VALUES (20::smallint), (25::smallint), (30::smallint)) l (shift),
                (VALUES ($2::smallint, -1), ($3::smallint, 1)) x (stripe, n)
         ON CONFLICT (institution_id, location_id, shift, slice, stripe)
         DO UPDATE SET n = conversation_activity.n + excluded.n",
        &[&at, &(((own + 1) % 16) as i16), &(((own + 2) % 16) as i16)],
    )
    .await
    .expect("split");
    for offset in 0..6 {
        let deep = ListQuery {
            limit: 1,
            offset,
            ..whole_list()
        };
        let one = store
            .list_conversations(&tenant(1, 10), &deep)
            .await
            .expect("deep page");
        let at = usize::try_from(offset).expect("offset");
        assert_eq!(
            one.conversations[0].id, page.conversations[at].id,
            "offset {offset}"
        );
    }
}
