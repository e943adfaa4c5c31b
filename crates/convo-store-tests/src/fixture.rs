//! The data the cases start from: a small practice whose every record is known (two
//! institutions, so tenancy can be tried), and generated practice groups for the list.

use crate::oracle::Oracle;
use convo_core::dataset::{Plan, Spec};
use convo_core::import::Record;
use convo_core::store::{ConversationStore, ImportSink, import_records, import_text};
use convo_core::tz::Zone;
use convo_core::{Conversation, MessageQuery, Millis, TenantCtx};

/// Institution 1 (`acme`): locations 10 (Los Angeles, has a number) and 11 (Kolkata, none);
/// staff 5 and 6; patients 100 (Ana, a cell number), 101 (Ben, whose guarantor is 100), 102
/// (no number), 103 (unsubscribed). Institution 2 (`other`): location 20, staff 7, patient 200.
pub const PRACTICE: &str = r#"
{"type":"institution","id":1,"subdomain":"acme","name":"Acme Dental"}
{"type":"institution","id":2,"subdomain":"other","name":"Other Clinic"}
{"type":"location","id":10,"institution_id":1,"name":"Downtown","tz":"America/Los_Angeles","phone_number":"+15551230000"}
{"type":"location","id":11,"institution_id":1,"name":"Mumbai","tz":"Asia/Kolkata"}
{"type":"location","id":20,"institution_id":2,"name":"Elsewhere","tz":"Europe/London"}
{"type":"user","id":5,"institution_id":1,"first_name":"Sam","last_name":"Lee","email":"sam@example.com","image":"https://img.example.com/sam.png"}
{"type":"user","id":6,"institution_id":1,"first_name":"Dana","last_name":null}
{"type":"user","id":7,"institution_id":2,"first_name":"Olga","last_name":"Other"}
{"type":"patient","id":100,"institution_id":1,"first_name":"Ana","middle_name":null,"last_name":"Diaz","email":"ana@example.com","foreign_id":"100437","foreign_id_type":"msg-opendental-DataSource-35","bio":{"phone_number":"5163042196","cell_phone_number":"+15163042196","date_of_birth":"1990-02-14","gender":"Female","new_patient":false,"non_patient":false},"inactive":false,"guarantor_id":null,"unsubscribe_sms":false,"last_sync_time":"2024-01-02T11:00:00.000Z","created_at":"2024-01-02T10:00:00.000Z","updated_at":"2024-01-02T10:30:00.000Z"}
{"type":"patient","id":101,"institution_id":1,"first_name":"Ben","middle_name":"Jo","last_name":"Okafor","guarantor_id":100,"created_at":"2024-01-02T10:00:00Z","updated_at":"2024-01-02T10:00:00Z"}
{"type":"patient","id":102,"institution_id":1,"created_at":"2024-01-02T10:00:00Z","updated_at":"2024-01-02T10:00:00Z"}
{"type":"patient","id":103,"institution_id":1,"first_name":"Cleo","last_name":"Stone","unsubscribe_sms":true,"created_at":"2024-01-02T10:00:00Z","updated_at":"2024-01-02T10:00:00Z"}
{"type":"patient","id":200,"institution_id":2,"first_name":"Zed","created_at":"2024-01-02T10:00:00Z","updated_at":"2024-01-02T10:00:00Z"}
{"type":"conversation","id":1000,"location_id":10,"patient_id":100,"created_at":"2024-01-03T09:00:00.000Z"}
{"type":"conversation","id":1001,"location_id":10,"patient_id":101,"created_at":"2024-02-01T00:00:00.000Z"}
{"type":"conversation","id":1002,"location_id":10,"patient_id":102,"created_at":"2024-03-01T00:00:00.000Z"}
{"type":"conversation","id":1004,"location_id":10,"patient_id":103,"created_at":"2024-03-01T00:00:00.000Z"}
{"type":"conversation","id":1003,"location_id":11,"patient_id":100,"created_at":"2024-01-04T00:00:00.000Z"}
{"type":"conversation","id":2000,"location_id":20,"patient_id":200,"created_at":"2024-01-04T00:00:00.000Z"}
{"type":"message","id":50000,"conversation_id":1000,"body":"See you Tuesday!","created_at":"2024-03-10T09:59:59.999Z","sender":{"type":"User","id":5}}
{"type":"message","id":50001,"conversation_id":1000,"body":"Thanks, see you","created_at":"2024-03-10T10:00:00.000Z","updated_at":"2024-03-11T00:00:00.000Z","sender":{"type":"Patient","id":100},"seen_by":["6","5"]}
{"type":"message","id":50002,"conversation_id":1000,"body":"Reminder: cleaning on 3/14 at 9am. Reply C to confirm.","created_at":"2024-03-12T08:00:00.000Z","sender":{"type":"System","id":null}}
{"type":"message","id":50003,"conversation_id":1000,"body":"C","created_at":"2024-03-12T08:05:00.000Z","sender":{"type":"Patient","id":100},"is_custom_reminder_response":true,"sms_msg_id":777,"attachment":{"file_name":"card.jpg","content_type":"image/jpeg","file_size":48213,"url":"https://files.example.com/card.jpg","updated_at":"2024-03-12T08:05:01.000Z"}}
{"type":"message","id":50010,"conversation_id":1001,"body":"Hello Ben","created_at":"2024-02-01T10:00:00.000Z","sender":{"type":"User","id":6}}
{"type":"message","id":50011,"conversation_id":1001,"body":"Hi!","created_at":"2024-02-02T10:00:00.000Z","sender":{"type":"Patient","id":101}}
{"type":"message","id":50020,"conversation_id":1003,"body":"Namaste","created_at":"2024-01-05T00:00:00.000Z","sender":{"type":"User","id":5}}
{"type":"message","id":50030,"conversation_id":2000,"body":"Other tenant's secret","created_at":"2024-01-05T00:00:00.000Z","sender":{"type":"User","id":7}}
"#;

/// The number of location 10, and Ana's.
pub const LOCATION_NUMBER: &str = "+15551230000";
pub const ANA_NUMBER: &str = "+15163042196";

/// Loads `PRACTICE`.
pub async fn practice(sink: &dyn ImportSink) {
    import_text(sink, PRACTICE)
        .await
        .expect("the practice imports");
}

/// A tenant as the key check would resolve it (the cases test tenancy on the store itself).
pub fn tenant(institution: i64, location: i64) -> TenantCtx {
    let tz = match (institution, location) {
        (1, 10) => "America/Los_Angeles",
        (1, 11) => "Asia/Kolkata",
        (2, 20) => "Europe/London",
        _ => "America/New_York",
    };
    TenantCtx::resolved(institution, location, Zone::get(tz).expect("zone"))
}

/// Where generated data ends (2026-09-21): every generated instant is before it.
pub const UNTIL: i64 = 1_790_000_000_000;
pub const HOUR: i64 = 3_600_000;

/// A generated practice group (`convo generate`'s plan) of `conversations` over `days`.
pub fn generated(conversations: u32, days: u32) -> Vec<Record> {
    let mut out = Vec::new();
    Plan::new(Spec {
        conversations,
        seed: 11,
        until: Millis(UNTIL),
        days,
    })
    .emit(|r| {
        out.push(r);
        Ok::<_, ()>(())
    })
    .expect("emit into a Vec");
    out
}

/// Imports a generated group and returns the oracle of what it holds.
pub async fn seeded(sink: &dyn ImportSink, conversations: u32, days: u32) -> Oracle {
    let records = generated(conversations, days);
    let oracle = Oracle::from_records(&records);
    import_records(sink, records).await.expect("import");
    oracle
}

/// One conversation of the tenant with its newest `limit` messages; it must exist.
pub async fn thread(
    store: &dyn ConversationStore,
    tenant: &TenantCtx,
    id: i64,
    limit: i64,
) -> Conversation {
    let q = MessageQuery {
        limit,
        created_since: None,
        updated_since: None,
    };
    store
        .get_conversation(tenant, id, Some(&q))
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("conversation {id} of the tenant"))
}

/// Later activity on a generated group (`generated`): new messages on old conversations, a
/// message moved between conversations, and a new conversation with its patient.
pub fn later_activity() -> String {
    let later = |h: i64| Millis(UNTIL + h * HOUR).to_utc_string();
    format!(
        r#"{{"type":"message","id":900001,"conversation_id":1,"body":"back again","created_at":"{}","sender":{{"type":"Patient","id":1}}}}
{{"type":"message","id":900002,"conversation_id":2,"body":"hello","created_at":"{}","sender":{{"type":"System","id":null}}}}
{{"type":"message","id":900001,"conversation_id":3,"body":"moved","created_at":"{}","sender":{{"type":"System","id":null}}}}
{{"type":"patient","id":5000,"institution_id":1,"first_name":"New"}}
{{"type":"conversation","id":5000,"location_id":3,"patient_id":5000,"created_at":"{}"}}
"#,
        later(1),
        later(50),
        later(2),
        later(3)
    )
}

/// The whole of a small location's list in one page: every conversation, each with up to 100
/// of its newest messages.
pub fn whole_list() -> convo_core::ListQuery {
    convo_core::ListQuery {
        limit: 1_000,
        offset: 0,
        cursor: None,
        updated_since: None,
        messages: Some(MessageQuery {
            limit: 100,
            created_since: None,
            updated_since: None,
        }),
    }
}

/// The delivery record `matching` picks, read through the operators' view (`convo deliveries
/// list`); it must exist.
pub async fn delivery_where(
    store: &dyn convo_core::OutboxStore,
    matching: impl Fn(&convo_core::outbox::DeliveryRecord) -> bool,
) -> convo_core::outbox::DeliveryRecord {
    store
        .list_deliveries(None, 10_000)
        .await
        .expect("deliveries")
        .into_iter()
        .find(|d| matching(d))
        .expect("a delivery that matches")
}
