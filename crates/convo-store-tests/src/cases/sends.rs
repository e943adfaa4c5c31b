//! Staff sends and seen (CONTRACT §6): what one write changes, and every refusal by its type.

use super::listing::query;
use crate::Db;
use crate::fixture::{practice, tenant, thread};
use convo_core::outbox::DeliveryStatus;
use convo_core::store::import_text;
use convo_core::write::NewMessage;
use convo_core::{Missing, Refusal, SenderKind, StoreError};

pub(super) fn text(patient_id: i64, user_id: i64, body: &str) -> NewMessage {
    NewMessage::parse(patient_id, user_id, Some(body), None).expect("a valid message")
}

/// Dee: a patient of institution 1 with a number and no conversation yet.
pub(super) const DEE: &str = r#"{"type":"patient","id":104,"institution_id":1,"first_name":"Dee","bio":{"cell_phone_number":"+15165550104"}}"#;

pub async fn a_send_writes_message_thread_and_outbox(db: Db) {
    practice(db.store.as_ref()).await;
    import_text(db.store.as_ref(), DEE).await.expect("Dee");
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let before = store
        .list_conversations(&here, &query(100, 0, None))
        .await
        .expect("list");
    let sent = store
        .send_message(&here, text(100, 5, "See you at 3"))
        .await
        .expect("send");
    assert_eq!(
        (sent.body.as_str(), sent.sender.kind, sent.sender.id),
        ("See you at 3", SenderKind::User, Some(5))
    );
    assert_eq!(sent.conversation_id, 1000);
    let delivery = sent.sms_msg_id.expect("an outbox entry");
    // The thread shows it first, and its conversation leads the list.
    let after = store
        .list_conversations(&here, &query(100, 0, None))
        .await
        .expect("list");
    assert_eq!(after.conversations[0].id, 1000);
    assert_eq!(after.conversations[0].updated_at, sent.created_at);
    assert_eq!(after.count(), before.count());
    let one = thread(store, &here, 1000, 1).await;
    assert_eq!(one.messages[0], sent);
    let records = store.list_deliveries(None, 10).await.expect("deliveries");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            r.id,
            r.message_id,
            r.institution_id,
            r.location_id,
            r.status
        ),
        (delivery, sent.id, 1, 10, DeliveryStatus::Queued)
    );
    // A patient with no conversation here gets one, and the count grows by it.
    let first = store
        .send_message(&here, text(104, 6, "Welcome, Dee"))
        .await
        .expect("send");
    assert_ne!(first.conversation_id, 1000);
    let fresh = thread(store, &here, first.conversation_id, 0).await;
    assert_eq!(fresh.patient.id, 104);
    let grown = store
        .list_conversations(&here, &query(1, 0, None))
        .await
        .expect("list");
    assert_eq!(grown.count(), before.count().map(|n| n + 1));
    assert_eq!(grown.conversations[0].id, first.conversation_id);
    // Ids never repeat, and never collide with imported ones.
    assert!(first.id > sent.id && sent.id > 50030);
}

pub async fn each_refusal_of_a_send_is_typed(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let cases = [
        (
            tenant(1, 10),
            text(200, 5, "x"),
            Refusal::PatientNotInInstitution(200),
        ),
        (
            tenant(1, 10),
            text(999, 5, "x"),
            Refusal::PatientNotInInstitution(999),
        ),
        (tenant(1, 10), text(100, 7, "x"), Refusal::UserNotStaff(7)),
        (tenant(1, 10), text(103, 5, "x"), Refusal::Unsubscribed),
        (tenant(1, 10), text(102, 5, "x"), Refusal::NoPatientPhone),
        (tenant(1, 11), text(100, 5, "x"), Refusal::NoLocationPhone),
    ];
    for (tenant, message, refusal) in cases {
        match store.send_message(&tenant, message).await {
            Err(StoreError::Refused(got)) => assert_eq!(got, refusal),
            other => panic!("expected {refusal:?}, got {other:?}"),
        }
    }
    assert!(
        store
            .list_deliveries(None, 10)
            .await
            .expect("deliveries")
            .is_empty(),
        "a refused send writes nothing"
    );
}

pub async fn seen_adds_a_user_once_and_moves_activity(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let seen = store.mark_seen(&here, 50000, 6).await.expect("seen");
    assert_eq!(seen.seen_by, r#"["6"]"#);
    assert!(seen.updated_at > seen.created_at);
    let conversation = store
        .get_conversation(&here, 1000, None)
        .await
        .expect("get")
        .expect("1000");
    assert_eq!(conversation.updated_at, seen.updated_at);
    // Twice is once, and changes nothing.
    let again = store.mark_seen(&here, 50000, 6).await.expect("seen");
    assert_eq!(again, seen);
    // Added after those who saw it first.
    store.mark_seen(&here, 50002, 6).await.expect("seen");
    let more = store.mark_seen(&here, 50002, 5).await.expect("seen");
    assert_eq!(more.seen_by, r#"["6","5"]"#);
    let refusals = [
        (50030, 5, StoreError::NotFound(Missing::Message(50030))),
        (50020, 5, StoreError::NotFound(Missing::Message(50020))),
        (77, 5, StoreError::NotFound(Missing::Message(77))),
        (50000, 7, StoreError::Refused(Refusal::UserNotStaff(7))),
    ];
    for (message, user, want) in refusals {
        let got = store
            .mark_seen(&here, message, user)
            .await
            .expect_err("refused");
        assert_eq!(got.to_string(), want.to_string(), "message {message}");
        assert_eq!(std::mem::discriminant(&got), std::mem::discriminant(&want));
    }
}
