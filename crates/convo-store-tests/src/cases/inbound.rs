//! A patient's SMS (CONTRACT §6): routing by the location's number and the patient's, the
//! carrier keywords, numbers nobody has, and replies to reminders.

use super::sends::{DEE, text};
use crate::Db;
use crate::fixture::{ANA_NUMBER, LOCATION_NUMBER, practice, tenant, thread};
use convo_core::store::import_text;
use convo_core::store::prelude::*;
use convo_core::write::{InboundOutcome, InboundSms, Keyword};
use convo_core::{Missing, Refusal, SenderKind, StoreError};

pub(super) fn sms(from: &str, body: &str, sid: &str) -> InboundSms {
    InboundSms {
        to: LOCATION_NUMBER.into(),
        from: from.into(),
        body: body.into(),
        sid: sid.into(),
        media: None,
    }
}

/// A family sharing one number: 105 is the guarantor of 106.
const FAMILY: &str = r#"{"type":"patient","id":106,"institution_id":1,"first_name":"Kid","guarantor_id":105,"bio":{"cell_phone_number":"+15165550105"}}
{"type":"patient","id":105,"institution_id":1,"first_name":"Parent","bio":{"cell_phone_number":"+15165550105"}}"#;
const FAMILY_NUMBER: &str = "+15165550105";

async fn with_family(db: &Db) {
    practice(db.store.as_ref()).await;
    import_text(db.store.as_ref(), FAMILY)
        .await
        .expect("family");
}

async fn receive(store: &dyn ConversationStore, sms: InboundSms) -> InboundOutcome {
    store.receive_sms(sms).await.expect("received")
}

pub async fn a_patient_sms_is_routed_by_both_numbers(db: Db) {
    with_family(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let got = receive(store, sms(ANA_NUMBER, "Running late", "SM1")).await;
    assert_eq!(
        (got.conversation_id, got.duplicate, got.keyword),
        (1000, false, None)
    );
    let ana = thread(store, &here, 1000, 1).await;
    let m = &ana.messages[0];
    assert_eq!(
        (m.id, m.body.as_str(), m.sender.kind, m.sender.id),
        (
            got.message_id,
            "Running late",
            SenderKind::Patient,
            Some(100)
        )
    );
    assert_eq!(ana.updated_at, m.created_at);
    // The same provider id again is the same message, written once.
    let again = receive(store, sms(ANA_NUMBER, "Running late", "SM1")).await;
    assert_eq!(
        (again.message_id, again.conversation_id, again.duplicate),
        (got.message_id, 1000, true)
    );
    // A shared number goes to the family's guarantor, in a conversation made for it.
    let family = receive(store, sms(FAMILY_NUMBER, "Hi, it's us", "SM2")).await;
    let c = thread(store, &here, family.conversation_id, 0).await;
    assert_eq!(c.patient.id, 105);
}

pub async fn keywords_opt_a_number_out_and_in(db: Db) {
    with_family(&db).await;
    let store = db.store.as_ref();
    let here = tenant(1, 10);
    let stop = receive(store, sms(ANA_NUMBER, " stop\n", "SM1")).await;
    assert_eq!(stop.keyword, Some(Keyword::OptOut));
    let refused = store.send_message(&here, text(100, 5, "x")).await;
    assert!(
        matches!(refused, Err(StoreError::Refused(Refusal::Unsubscribed))),
        "{refused:?}"
    );
    let start = receive(store, sms(ANA_NUMBER, "START", "SM2")).await;
    assert_eq!(start.keyword, Some(Keyword::OptIn));
    store
        .send_message(&here, text(100, 5, "Welcome back"))
        .await
        .expect("a send after START");
    // Everyone texting from a shared number is opted out by its STOP.
    receive(store, sms(FAMILY_NUMBER, "UNSUBSCRIBE", "SM3")).await;
    for patient in [105, 106] {
        let refused = store.send_message(&here, text(patient, 5, "x")).await;
        assert!(
            matches!(refused, Err(StoreError::Refused(Refusal::Unsubscribed))),
            "patient {patient}: {refused:?}"
        );
    }
    // A keyword inside a sentence is just a message.
    let chat = receive(store, sms(ANA_NUMBER, "please stop by later", "SM4")).await;
    assert_eq!(chat.keyword, None);
}

pub async fn unknown_numbers_and_replies_to_reminders(db: Db) {
    practice(db.store.as_ref()).await;
    let reminder = format!(
        "{DEE}\n{}\n{}",
        r#"{"type":"conversation","id":1005,"location_id":10,"patient_id":104,"created_at":"2025-01-01T00:00:00Z"}"#,
        r#"{"type":"message","id":60000,"conversation_id":1005,"body":"Reminder: cleaning tomorrow. Reply C to confirm.","created_at":"2025-01-01T00:00:00Z","sender":{"type":"System","id":null}}"#
    );
    import_text(db.store.as_ref(), &reminder)
        .await
        .expect("reminder");
    let store = db.store.as_ref();
    let here = &tenant(1, 10);
    let newest = |id: i64| thread(store, here, id, 1);
    let reply = receive(store, sms("+15165550104", "C", "SM1")).await;
    assert_eq!(reply.conversation_id, 1005);
    assert!(newest(1005).await.messages[0].is_custom_reminder_response);
    receive(store, sms("+15165550104", "And one more thing", "SM2")).await;
    assert!(!newest(1005).await.messages[0].is_custom_reminder_response);
    // Nobody has this number: a non-patient is made for it, with its own conversation.
    let stranger = receive(store, sms("+15165550999", "Who is this?", "SM3")).await;
    let c = newest(stranger.conversation_id).await;
    assert!(c.patient.id > 200);
    assert!(
        c.patient.bio.contains(r#""non_patient":true"#),
        "{}",
        c.patient.bio
    );
    // A number no location has, and a sender that is not a number.
    let mut lost = sms(ANA_NUMBER, "hello?", "SM4");
    lost.to = "+15550000000".into();
    assert!(matches!(
        store.receive_sms(lost).await,
        Err(StoreError::NotFound(Missing::LocationNumber))
    ));
    assert!(matches!(
        store.receive_sms(sms("hello", "hi", "SM5")).await,
        Err(StoreError::Refused(Refusal::FromNotAPhone))
    ));
}
