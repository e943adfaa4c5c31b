//! A delivery's body (CONTRACT §8): NexHealth's envelope (`resource_type`, `event_name`,
//! `event_time`, `subdomain`, `institution_id`, `data`, `delivery_errors`) around one §3 message
//! object, followed by the keys a receiver needs to route it without a second call
//! (`location_id`, `patient_id`, `delivery`), and the event's id, the same as `webhook-id`.

use crate::dto;
use crate::json::Json;
use convo_core::outbox::DeliveryStatus;
use convo_core::tz::Zone;
use convo_core::webhook::{ERRORS_KEPT, WebhookEvent};
use convo_core::{Message, Millis};

/// What an event froze at commit: the message as it was, where it belongs, and, for a staff
/// message, its delivery's status and error code then.
pub struct Event<'a> {
    pub id: i64,
    pub name: WebhookEvent,
    /// The commit time of the change.
    pub time: Millis,
    pub subdomain: &'a str,
    pub institution_id: i64,
    pub message: &'a Message,
    /// The location's zone, for `created_at_with_tz`.
    pub zone: &'a Zone,
    pub location_id: i64,
    pub patient_id: i64,
    pub delivery: Option<(DeliveryStatus, Option<&'a str>)>,
}

/// The body of one attempt: `errors` are the delivery's earlier attempts' errors, oldest first.
pub fn body(e: &Event<'_>, errors: &[String]) -> Vec<u8> {
    let mut j = Json::with_capacity(1024 + e.message.body.len());
    j.raw("{\"resource_type\":\"Message\",\"event_name\":");
    j.str(e.name.as_str());
    j.raw(",\"event_time\":");
    j.utc(e.time);
    j.raw(",\"subdomain\":");
    j.str(e.subdomain);
    j.raw(",\"institution_id\":");
    j.int(e.institution_id);
    j.raw(",\"data\":{\"messages\":[");
    dto::message_fields(&mut j, e.message, e.zone);
    j.raw(",\"location_id\":");
    j.int(e.location_id);
    j.raw(",\"patient_id\":");
    j.int(e.patient_id);
    j.raw(",\"delivery\":");
    match e.delivery {
        None => j.raw("null"),
        Some((status, code)) => {
            j.raw("{\"status\":");
            j.str(status.as_str());
            j.raw(",\"error_code\":");
            j.opt_str(code);
            j.raw("}");
        }
    }
    j.raw("}]},\"delivery_errors\":[");
    let kept = &errors[errors.len().saturating_sub(ERRORS_KEPT)..];
    for (i, error) in kept.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.str(error);
    }
    j.raw("],\"event_id\":\"evt_");
    j.int(e.id);
    j.raw("\"}");
    j.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use convo_core::{Sender, SenderKind};

    fn staff_message() -> Message {
        Message {
            id: 50001,
            conversation_id: 1000,
            body: "Your crown is ready \"today\"".into(),
            created_at: Millis(1_795_521_600_000),
            updated_at: Millis(1_795_521_660_500),
            seen_by: r#"["6"]"#.into(),
            sender: Sender {
                kind: SenderKind::User,
                id: Some(5),
                name: Some("Sam Lee".into()),
                image: None,
            },
            attachment: None,
            sms_msg_id: None,
            is_custom_reminder_response: false,
        }
    }

    #[test]
    fn a_staff_message_event_carries_the_message_its_place_and_its_delivery() {
        let m = staff_message();
        let zone = Zone::get("America/New_York").expect("zone");
        let e = Event {
            id: 42,
            name: WebhookEvent::MessageUpdated,
            time: Millis(1_795_521_660_500),
            subdomain: "bright-smiles",
            institution_id: 1,
            message: &m,
            zone: &zone,
            location_id: 10,
            patient_id: 100,
            delivery: Some((DeliveryStatus::Failed, Some("30003"))),
        };
        let errors = ["HTTP 500".to_string(), "timed out after 15 s".to_string()];
        let body = String::from_utf8(body(&e, &errors)).expect("utf-8");
        assert_eq!(
            body,
            concat!(
                r#"{"resource_type":"Message","event_name":"message_updated","#,
                r#""event_time":"2026-11-24T12:01:00.500Z","subdomain":"bright-smiles","#,
                r#""institution_id":1,"data":{"messages":[{"id":50001,"#,
                r#""body":"Your crown is ready \"today\"","created_at":"2026-11-24T12:00:00.000Z","#,
                r#""updated_at":"2026-11-24T12:01:00.500Z","conversation_id":1000,"seen_by":["6"],"#,
                r#""user_id":5,"attachment_file_name":null,"attachment_content_type":null,"#,
                r#""attachment_file_size":null,"attachment_updated_at":null,"sms_msg_id":null,"#,
                r#""sender_info":{"name":"Sam Lee","image":null,"meta_type":"User","user_id":5},"#,
                r#""attachment_url":null,"is_custom_reminder_response":false,"#,
                r#""created_at_with_tz":"2026-11-24T07:00:00.000-05:00","timezone_offset":"-05:00","#,
                r#""location_id":10,"patient_id":100,"#,
                r#""delivery":{"status":"failed","error_code":"30003"}}]},"#,
                r#""delivery_errors":["HTTP 500","timed out after 15 s"],"event_id":"evt_42"}"#
            )
        );
        // The message part is the §3 object byte for byte, keys in its order.
        let mut j = Json::with_capacity(0);
        dto::message(&mut j, &m, &zone);
        let object = String::from_utf8(j.into_bytes()).expect("utf-8");
        let inner = object.trim_end_matches('}');
        assert!(body.contains(inner));
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(
            parsed["data"]["messages"][0]["delivery"]["status"],
            "failed"
        );
    }

    #[test]
    fn a_patient_message_has_no_delivery_and_errors_keep_the_newest_ten() {
        let mut m = staff_message();
        m.sender = Sender {
            kind: SenderKind::Patient,
            id: Some(100),
            name: Some("Ana Diaz".into()),
            image: None,
        };
        let zone = Zone::get("America/New_York").expect("zone");
        let e = Event {
            id: 7,
            name: WebhookEvent::MessageCreated,
            time: Millis(1_795_521_600_000),
            subdomain: "demo",
            institution_id: 3,
            message: &m,
            zone: &zone,
            location_id: 30,
            patient_id: 100,
            delivery: None,
        };
        let errors: Vec<String> = (1..=12).map(|i| format!("HTTP 5{i:02}")).collect();
        let parsed: serde_json::Value =
            serde_json::from_slice(&body(&e, &errors)).expect("valid JSON");
        assert_eq!(parsed["event_name"], "message_created");
        assert_eq!(
            parsed["data"]["messages"][0]["delivery"],
            serde_json::Value::Null
        );
        let kept: Vec<&str> = parsed["delivery_errors"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(kept.len(), 10);
        assert_eq!(kept[0], "HTTP 503");
        assert_eq!(kept[9], "HTTP 512");
        assert_eq!(parsed["event_id"], "evt_7");
    }
}
