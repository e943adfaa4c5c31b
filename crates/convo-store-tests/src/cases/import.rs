//! `convo import` (CONTRACT §5 and §7): atomic, idempotent, derived activity, and every
//! integrity rule refused with its line.

use super::listing::query;
use crate::Db;
use crate::fixture::{tenant, whole_list};
use convo_core::import::{ImportError, ImportItem, ImportSummary, Record};
use convo_core::store::import_text;
use convo_core::store::prelude::*;
use convo_core::{MessageQuery, Millis};
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

/// Everything the API can see of both institutions, for before/after comparisons.
async fn snapshot(store: &dyn Store) -> String {
    let mut out = String::new();
    for (inst, loc) in [(1, 10), (2, 20)] {
        let page = store
            .list_conversations(&tenant(inst, loc), &whole_list())
            .await
            .expect("list");
        out.push_str(&format!("{page:?}\n"));
    }
    out.push_str(&format!(
        "empty: {}\n",
        store.is_empty().await.expect("empty")
    ));
    out
}

/// Location 10's first page, each conversation with up to ten messages.
async fn with_messages(store: &dyn Store) -> convo_core::ConversationPage {
    let mut q = query(10, 0, None);
    q.messages = Some(MessageQuery {
        limit: 10,
        created_since: None,
        updated_since: None,
    });
    store
        .list_conversations(&tenant(1, 10), &q)
        .await
        .expect("list")
}

pub async fn imports_and_derives_activity(db: Db) {
    let store = db.store.as_ref();
    let s = import_text(store, BASE).await.expect("import");
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
    let page = store
        .list_conversations(&tenant(1, 10), &query(10, 0, None))
        .await
        .expect("list");
    assert_eq!(page.count(), Some(1));
    assert_eq!(
        page.conversations[0].updated_at,
        Millis(1_704_326_400_000),
        "the latest message update (2024-01-04)"
    );
    assert!(!store.is_empty().await.expect("empty"));
    // A same-id line replaces its record, and activity follows the edit.
    let newer = r#"{"type":"message","id":1,"conversation_id":1000,"body":"edited","created_at":"2024-01-02T00:00:00Z","updated_at":"2024-02-01T00:00:00Z","sender":{"type":"User","id":5}}"#;
    import_text(store, newer).await.expect("replace");
    let page = with_messages(store).await;
    let c = &page.conversations[0];
    assert_eq!(c.updated_at, Millis(1_706_745_600_000));
    let edited = c.messages.iter().find(|m| m.id == 1).expect("message 1");
    assert_eq!(
        (edited.body.as_str(), edited.seen_by.as_str()),
        ("edited", "[]")
    );
}

pub async fn importing_twice_changes_nothing(db: Db) {
    let store = db.store.as_ref();
    assert!(store.is_empty().await.expect("empty"));
    import_text(store, BASE).await.expect("first");
    let before = snapshot(store).await;
    import_text(store, BASE).await.expect("second");
    assert_eq!(before, snapshot(store).await);
}

pub async fn a_bad_line_anywhere_writes_nothing(db: Db) {
    let store = db.store.as_ref();
    import_text(store, BASE).await.expect("base");
    let before = snapshot(store).await;
    let more = r#"{"type":"patient","id":102,"institution_id":1,"first_name":"Cy"}
{"type":"conversation","id":1001,"location_id":10,"patient_id":102,"created_at":"2024-01-01T00:00:00Z"}
{"type":"message","id":3,"conversation_id":1001,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"User","id":5}}
{"type":"message","id":4,"conversation_id":1001,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"User","id":5},"colour":"red"}
{"type":"message","id":5,"conversation_id":1001,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"User","id":5}}
"#;
    let e = import_text(store, more).await.expect_err("bad line");
    assert!(e.to_string().starts_with("line 4: "), "{e}");
    assert!(e.to_string().contains("colour"), "{e}");
    assert_eq!(before, snapshot(store).await);
    // A rule broken by the store (not the parser) also leaves nothing behind.
    let mut lines: Vec<String> = more.lines().map(str::to_string).collect();
    lines[3] = lines[3].replace(r#","colour":"red""#, "");
    lines[4] = lines[4].replace(r#""id":5}}"#, r#""id":7}}"#);
    let e = import_text(store, &lines.join("\n"))
        .await
        .expect_err("foreign user");
    assert!(e.to_string().starts_with("line 5: "), "{e}");
    assert_eq!(before, snapshot(store).await);
}

/// One record breaking each integrity rule, and words its refusal must contain; each is
/// refused with its line after `BASE`.
const RULES: [(&str, &str); 12] = [
    (
        r#"{"type":"conversation","id":1001,"location_id":10,"patient_id":200,"created_at":"2024-01-01T00:00:00Z"}"#,
        "different institutions",
    ),
    (
        r#"{"type":"conversation","id":1001,"location_id":10,"patient_id":100,"created_at":"2024-01-01T00:00:00Z"}"#,
        "already has conversation 1000",
    ),
    (
        r#"{"type":"message","id":9,"conversation_id":1000,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"Patient","id":101}}"#,
        "not conversation 1000's patient",
    ),
    (
        r#"{"type":"message","id":9,"conversation_id":1000,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"User","id":7}}"#,
        "belongs to institution 2",
    ),
    (
        r#"{"type":"message","id":9,"conversation_id":1000,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"System","id":null},"seen_by":["7"]}"#,
        "seen_by user 7",
    ),
    (
        r#"{"type":"message","id":9,"conversation_id":1000,"body":"x","created_at":"2024-01-05T00:00:00Z","updated_at":"2024-01-04T00:00:00Z","sender":{"type":"System","id":null}}"#,
        "before created_at",
    ),
    (
        r#"{"type":"conversation","id":1001,"location_id":10,"patient_id":101,"created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z"}"#,
        "updated_at",
    ),
    (
        r#"{"type":"location","id":11,"institution_id":1,"name":"X","tz":"Mars/Base"}"#,
        "IANA",
    ),
    (
        r#"{"type":"location","id":11,"institution_id":9,"name":"X","tz":"UTC"}"#,
        "institution 9 does not exist",
    ),
    (
        r#"{"type":"institution","id":3,"subdomain":"ACME","name":"Dup"}"#,
        "already used",
    ),
    (
        r#"{"type":"message","id":9,"conversation_id":4242,"body":"x","created_at":"2024-01-05T00:00:00Z","sender":{"type":"System","id":null}}"#,
        "conversation 4242 does not exist",
    ),
    (
        r#"{"type":"user","id":5,"institution_id":2,"first_name":"Moved"}"#,
        "already belongs",
    ),
];

pub async fn integrity_rules_are_refused_with_their_line(db: Db) {
    let store = db.store.as_ref();
    import_text(store, BASE).await.expect("base");
    let before = snapshot(store).await;
    for (line, needle) in RULES {
        let e = import_text(store, &format!("\n{line}\n"))
            .await
            .expect_err(line);
        let msg = e.to_string();
        assert!(msg.starts_with("line 2: "), "{msg}");
        assert!(msg.contains(needle), "{line}\n{msg}");
        assert_eq!(before, snapshot(store).await, "{line}");
    }
}

/// The same rules in a first load into an empty database, where an engine may take another
/// path (PostgreSQL loads before it indexes and writes fresh runs without staging them): each
/// is refused with its line, and the database stays empty.
pub async fn integrity_rules_hold_on_a_first_load(db: Db) {
    let store = db.store.as_ref();
    let at = BASE.lines().count() + 1;
    for (line, needle) in RULES {
        let e = import_text(store, &format!("{BASE}{line}\n"))
            .await
            .expect_err(line);
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("line {at}: ")), "{msg}");
        assert!(msg.contains(needle), "{line}\n{msg}");
        assert!(store.is_empty().await.expect("empty"), "{line}");
    }
}

/// A first load may take its own path (SQLite stages the messages and writes them in thread
/// order at the end): a message id given twice in one file ends as its later line says, in the
/// later line's conversation, and both conversations' activity follows, just as the same file
/// imported again, record by record, into the filled database leaves it.
pub async fn a_first_load_keeps_the_last_line_of_an_id(db: Db) {
    let store = db.store.as_ref();
    let file = format!(
        "{BASE}{}",
        r#"{"type":"conversation","id":1001,"location_id":10,"patient_id":101,"created_at":"2024-01-01T00:00:00Z"}
{"type":"message","id":2,"conversation_id":1001,"body":"moved","created_at":"2024-01-02T12:00:00Z","sender":{"type":"Patient","id":101}}
"#
    );
    import_text(store, &file).await.expect("first load");
    let page = with_messages(store).await;
    type Thread<'a> = (i64, Millis, Vec<(i64, &'a str)>);
    let threads: Vec<Thread> = page
        .conversations
        .iter()
        .map(|c| {
            let messages = c.messages.iter().map(|m| (m.id, m.body.as_str())).collect();
            (c.id, c.updated_at, messages)
        })
        .collect();
    assert_eq!(
        threads,
        [
            (1001, Millis(1_704_196_800_000), vec![(2, "moved")]),
            (1000, Millis(1_704_153_600_000), vec![(1, "hi")]),
        ]
    );
    let first = snapshot(store).await;
    import_text(store, &file).await.expect("again");
    assert_eq!(first, snapshot(store).await);
}

/// A first load whose kinds interleave and whose records an engine may write by faster
/// means only while it can vouch for them (PostgreSQL copies what the import itself wrote and
/// falls back to its checked path otherwise): patients after conversations, users and a
/// location arriving between messages, an id given again, a message after it. Every record
/// lands as the record-by-record import would write it, and importing the file again into
/// the filled database changes nothing.
pub async fn a_first_load_with_interleaved_kinds_writes_every_record(db: Db) {
    let store = db.store.as_ref();
    let file = r#"{"type":"institution","id":1,"subdomain":"acme","name":"Acme"}
{"type":"location","id":10,"institution_id":1,"name":"A","tz":"America/Chicago"}
{"type":"patient","id":100,"institution_id":1,"first_name":"Ana"}
{"type":"patient","id":101,"institution_id":1,"first_name":"Ben"}
{"type":"user","id":5,"institution_id":1,"first_name":"Sam"}
{"type":"conversation","id":1000,"location_id":10,"patient_id":100,"created_at":"2024-01-01T00:00:00Z"}
{"type":"patient","id":102,"institution_id":1,"first_name":"Cy"}
{"type":"conversation","id":1001,"location_id":10,"patient_id":101,"created_at":"2024-01-01T00:00:00Z"}
{"type":"message","id":1,"conversation_id":1000,"body":"a","created_at":"2024-01-02T00:00:00Z","sender":{"type":"User","id":5}}
{"type":"message","id":2,"conversation_id":1001,"body":"b","created_at":"2024-01-03T00:00:00Z","sender":{"type":"Patient","id":101}}
{"type":"conversation","id":1002,"location_id":10,"patient_id":102,"created_at":"2024-01-01T00:00:00Z"}
{"type":"message","id":3,"conversation_id":1002,"body":"c","created_at":"2024-01-04T00:00:00Z","sender":{"type":"System","id":null}}
{"type":"user","id":6,"institution_id":1,"first_name":"Kim"}
{"type":"message","id":4,"conversation_id":1000,"body":"d","created_at":"2024-01-05T00:00:00Z","sender":{"type":"System","id":null},"seen_by":["6"]}
{"type":"message","id":2,"conversation_id":1001,"body":"b2","created_at":"2024-01-06T00:00:00Z","sender":{"type":"Patient","id":101}}
{"type":"message","id":5,"conversation_id":1002,"body":"e","created_at":"2024-01-07T00:00:00Z","sender":{"type":"System","id":null}}
{"type":"location","id":11,"institution_id":1,"name":"B","tz":"UTC"}
{"type":"patient","id":103,"institution_id":1,"first_name":"Dee"}
{"type":"conversation","id":1003,"location_id":11,"patient_id":103,"created_at":"2024-01-01T00:00:00Z"}
{"type":"message","id":6,"conversation_id":1003,"body":"f","created_at":"2024-01-08T00:00:00Z","sender":{"type":"Patient","id":103}}
"#;
    let s = import_text(store, file).await.expect("first load");
    assert_eq!(
        s,
        ImportSummary {
            institutions: 1,
            locations: 2,
            patients: 4,
            users: 2,
            conversations: 4,
            messages: 7
        }
    );
    type Thread = (i64, Millis, Vec<(i64, String, String)>);
    let threads = |page: convo_core::ConversationPage| -> Vec<Thread> {
        page.conversations
            .iter()
            .map(|c| {
                let messages = c
                    .messages
                    .iter()
                    .map(|m| (m.id, m.body.clone(), m.seen_by.clone()))
                    .collect();
                (c.id, c.updated_at, messages)
            })
            .collect()
    };
    let m = |id: i64, body: &str, seen: &str| (id, body.to_owned(), seen.to_owned());
    let first = threads(with_messages(store).await);
    assert_eq!(
        first,
        [
            (
                1002,
                Millis(1_704_585_600_000),
                vec![m(5, "e", "[]"), m(3, "c", "[]")]
            ),
            (1001, Millis(1_704_499_200_000), vec![m(2, "b2", "[]")]),
            (
                1000,
                Millis(1_704_412_800_000),
                vec![m(4, "d", "[\"6\"]"), m(1, "a", "[]")]
            ),
        ]
    );
    let other = store
        .list_conversations(&tenant(1, 11), &whole_list())
        .await
        .expect("list");
    assert_eq!(
        other
            .conversations
            .iter()
            .map(|c| (c.id, c.updated_at))
            .collect::<Vec<_>>(),
        [(1003, Millis(1_704_672_000_000))]
    );
    import_text(store, file).await.expect("again");
    assert_eq!(first, threads(with_messages(store).await));
}

pub async fn an_input_that_stops_early_writes_nothing(db: Db) {
    let store = db.store.as_ref();
    let (tx, rx) = mpsc::channel(4);
    let record = Record::parse_line(r#"{"type":"institution","id":1,"subdomain":"a","name":"A"}"#)
        .expect("parse");
    tx.send(vec![ImportItem::Record { line: 1, record }])
        .await
        .expect("send");
    drop(tx);
    assert!(matches!(store.import(rx).await, Err(ImportError::Aborted)));
    assert!(store.is_empty().await.expect("empty"));
}
