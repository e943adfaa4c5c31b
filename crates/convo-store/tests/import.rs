//! `Store::import`: atomic, idempotent, and every integrity rule of CONTRACT §7 refused with its
//! line number.

use convo_core::Store;
use convo_core::import::{ImportItem, Record};
use convo_core::store::{ImportError, ImportSummary};
use convo_store::{SqliteOptions, SqliteStore};
use rusqlite::Connection;
use std::path::PathBuf;
use tokio::sync::mpsc;

const BASE: &str = r#"{"type":"institution","id":1,"subdomain":"acme","name":"Acme"}
{"type":"institution","id":2,"subdomain":"other","name":"Other"}
{"type":"location","id":10,"institution_id":1,"name":"A","tz":"America/Chicago"}
{"type":"location","id":20,"institution_id":2,"name":"B","tz":"Europe/Paris"}
{"type":"patient","id":100,"institution_id":1,"first_name":"Ana"}
{"type":"patient","id":101,"institution_id":1,"first_name":"Ben"}
{"type":"patient","id":200,"institution_id":2,"first_name":"Zed"}
{"type":"user","id":5,"institution_id":1,"first_name":"Sam"}
{"type":"user","id":7,"institution_id":2,"first_name":"Olga"}
{"type":"conversation","id":1000,"location_id":10,"patient_id":100,"created_at":"2024-01-01T00:00:00Z"}
{"type":"message","id":1,"conversation_id":1000,"body":"hi","created_at":"2024-01-02T00:00:00Z","sender":{"type":"User","id":5},"seen_by":["5"]}
{"type":"message","id":2,"conversation_id":1000,"body":"yo","created_at":"2024-01-03T00:00:00Z","updated_at":"2024-01-04T00:00:00Z","sender":{"type":"Patient","id":100}}
"#;

async fn open() -> (SqliteStore, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .expect("open");
    (store, dir, path)
}

async fn import(store: &dyn Store, text: &str) -> Result<ImportSummary, ImportError> {
    convo_core::import::import_text(store, text).await
}

/// Every row of every data table, as text, for before/after comparisons.
fn dump(path: &PathBuf) -> String {
    let conn = Connection::open(path).expect("open");
    let mut out = String::new();
    for table in [
        "institutions",
        "locations",
        "patients",
        "users",
        "conversations",
        "messages",
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY id"))
            .expect("prepare");
        let n = stmt.column_count();
        let mut rows = stmt.query([]).expect("query");
        while let Some(row) = rows.next().expect("row") {
            let cols: Vec<String> = (0..n)
                .map(|i| format!("{:?}", row.get_ref(i).expect("col")))
                .collect();
            out.push_str(&format!("{table}: {}\n", cols.join(" | ")));
        }
    }
    out
}

#[tokio::test]
async fn imports_and_derives_activity_and_counts() {
    let (store, _dir, path) = open().await;
    let s = import(&store, BASE).await.expect("import");
    assert_eq!(
        s,
        ImportSummary {
            institutions: 2,
            locations: 2,
            patients: 3,
            users: 2,
            conversations: 1,
            messages: 2
        }
    );
    let conn = Connection::open(&path).expect("open");
    let (updated, count): (i64, i64) = conn
        .query_row(
            "SELECT c.updated_at, l.conversation_count FROM conversations c JOIN locations l ON l.id = c.location_id WHERE c.id = 1000",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(
        updated, 1_704_326_400_000,
        "the latest message update (2024-01-04)"
    );
    assert_eq!(count, 1);
}

#[tokio::test]
async fn importing_twice_changes_nothing() {
    let (store, _dir, path) = open().await;
    import(&store, BASE).await.expect("first");
    let before = dump(&path);
    import(&store, BASE).await.expect("second");
    assert_eq!(before, dump(&path));
}

#[tokio::test]
async fn a_bad_line_in_the_middle_writes_nothing() {
    let (store, _dir, path) = open().await;
    import(&store, BASE).await.expect("base");
    let before = dump(&path);
    let more = r#"{"type":"patient","id":102,"institution_id":1,"first_name":"Cy"}
{"type":"conversation","id":1001,"location_id":10,"patient_id":102,"created_at":"2024-01-01T00:00:00Z"}
{"type":"message","id":3,"conversation_id":1001,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"User","id":5}}
{"type":"message","id":4,"conversation_id":1001,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"User","id":5},"colour":"red"}
{"type":"message","id":5,"conversation_id":1001,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"User","id":5}}
"#;
    let e = import(&store, more).await.expect_err("bad line");
    assert!(e.to_string().starts_with("line 4: "), "{e}");
    assert!(e.to_string().contains("colour"), "{e}");
    assert_eq!(before, dump(&path));
    // A rule broken by the store (not the parser) also leaves nothing behind.
    let mut lines: Vec<String> = more.lines().map(str::to_string).collect();
    lines[3] = lines[3].replace(r#","colour":"red""#, "");
    lines[4] = lines[4].replace(r#""id":5}}"#, r#""id":7}}"#);
    let broken = lines.join("\n");
    let e = import(&store, &broken).await.expect_err("foreign user");
    assert!(e.to_string().starts_with("line 5: "), "{e}");
    assert_eq!(before, dump(&path));
}

async fn refused(line: &str, needle: &str) {
    let (store, _dir, path) = open().await;
    import(&store, BASE).await.expect("base");
    let before = dump(&path);
    let text = format!("\n{line}\n");
    let e = import(&store, &text).await.expect_err(line);
    let msg = e.to_string();
    assert!(msg.starts_with("line 2: "), "{msg}");
    assert!(msg.contains(needle), "{line}\n{msg}");
    assert_eq!(before, dump(&path));
}

#[tokio::test]
async fn integrity_rules_are_refused_with_their_line() {
    refused(
        r#"{"type":"conversation","id":1001,"location_id":10,"patient_id":200,"created_at":"2024-01-01T00:00:00Z"}"#,
        "different institutions",
    )
    .await;
    refused(
        r#"{"type":"conversation","id":1001,"location_id":10,"patient_id":100,"created_at":"2024-01-01T00:00:00Z"}"#,
        "already has conversation 1000",
    )
    .await;
    refused(
        r#"{"type":"message","id":9,"conversation_id":1000,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"Patient","id":101}}"#,
        "not conversation 1000's patient",
    )
    .await;
    refused(
        r#"{"type":"message","id":9,"conversation_id":1000,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"User","id":7}}"#,
        "belongs to institution 2",
    )
    .await;
    refused(
        r#"{"type":"message","id":9,"conversation_id":1000,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"System","id":null},"seen_by":["7"]}"#,
        "seen_by user 7",
    )
    .await;
    refused(
        r#"{"type":"message","id":9,"conversation_id":1000,"body":"x","created_at":"2024-01-05T00:00:00Z","updated_at":"2024-01-04T00:00:00Z","sender":{"type":"System","id":null}}"#,
        "before created_at",
    )
    .await;
    refused(
        r#"{"type":"conversation","id":1001,"location_id":10,"patient_id":101,"created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z"}"#,
        "updated_at",
    )
    .await;
    refused(
        r#"{"type":"location","id":11,"institution_id":1,"name":"X","tz":"Mars/Base"}"#,
        "IANA",
    )
    .await;
    refused(
        r#"{"type":"location","id":11,"institution_id":9,"name":"X","tz":"UTC"}"#,
        "institution 9 does not exist",
    )
    .await;
    refused(
        r#"{"type":"institution","id":3,"subdomain":"ACME","name":"Dup"}"#,
        "already used",
    )
    .await;
    refused(
        r#"{"type":"message","id":9,"conversation_id":4242,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"System","id":null}}"#,
        "conversation 4242 does not exist",
    )
    .await;
    refused(
        r#"{"type":"user","id":5,"institution_id":2,"first_name":"Moved"}"#,
        "already belongs",
    )
    .await;
}

#[tokio::test]
async fn a_same_id_line_replaces_the_record() {
    let (store, _dir, path) = open().await;
    import(&store, BASE).await.expect("base");
    let newer = r#"{"type":"message","id":1,"conversation_id":1000,"body":"edited","created_at":"2024-01-02T00:00:00Z","updated_at":"2024-02-01T00:00:00Z","sender":{"type":"User","id":5}}"#;
    import(&store, newer).await.expect("replace");
    let conn = Connection::open(&path).expect("open");
    let (body, seen, conv_updated): (String, String, i64) = conn
        .query_row(
            "SELECT m.body, m.seen_by, c.updated_at FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("row");
    assert_eq!((body.as_str(), seen.as_str()), ("edited", "[]"));
    assert_eq!(conv_updated, 1_706_745_600_000);
}

#[tokio::test]
async fn an_input_that_stops_early_writes_nothing() {
    let (store, _dir, path) = open().await;
    let before = dump(&path);
    let (tx, rx) = mpsc::channel(4);
    let record = Record::parse_line(r#"{"type":"institution","id":1,"subdomain":"a","name":"A"}"#)
        .expect("parse");
    tx.send(vec![ImportItem::Record { line: 1, record }])
        .await
        .expect("send");
    drop(tx);
    assert!(matches!(store.import(rx).await, Err(ImportError::Aborted)));
    assert_eq!(before, dump(&path));
}
