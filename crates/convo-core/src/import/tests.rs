use super::*;

#[test]
fn contract_examples_parse() {
    let lines = [
        r#"{"type":"institution","id":1,"subdomain":"bright-smiles","name":"Bright Smiles Dental"}"#,
        r#"{"type":"location","id":10,"institution_id":1,"name":"Downtown","tz":"America/Los_Angeles","phone_number":"+15551230000"}"#,
        r#"{"type":"patient","id":100,"institution_id":1,"first_name":"Ana","middle_name":null,"last_name":"Diaz","email":"ana@example.com","foreign_id":"100437","foreign_id_type":"msg-opendental-DataSource-35","bio":{"cell_phone_number":"+15165550100"},"inactive":false,"guarantor_id":null,"unsubscribe_sms":false,"last_sync_time":null,"created_at":"2024-01-02T10:00:00.000Z","updated_at":"2024-01-02T10:00:00.000Z"}"#,
        r#"{"type":"user","id":5,"institution_id":1,"first_name":"Sam","last_name":"Lee","email":"sam@example.com","image":null}"#,
        r#"{"type":"conversation","id":1000,"location_id":10,"patient_id":100,"created_at":"2024-01-03T09:00:00.000Z"}"#,
        r#"{"type":"message","id":50000,"conversation_id":1000,"body":"See you Tuesday!","created_at":"2024-01-03T09:00:00.000Z","updated_at":"2024-01-03T09:00:00.000Z","sender":{"type":"User","id":5},"seen_by":["5"],"attachment":null,"sms_msg_id":null,"is_custom_reminder_response":false}"#,
    ];
    for l in lines {
        Record::parse_line(l).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
}

#[test]
fn optional_keys_default() {
    let r = Record::parse_line(r#"{"type":"patient","id":1,"institution_id":1}"#).expect("parses");
    let Record::Patient(p) = r else {
        panic!("not a patient")
    };
    assert_eq!(p.bio, None);
    assert!(!p.inactive && !p.unsubscribe_sms);
    assert_eq!(p.created_at, None);
}

#[test]
fn bio_keeps_key_order_and_drops_whitespace() {
    let r = Record::parse_line(
        r#"{"type":"patient","id":1,"institution_id":1,"bio":{ "z": 1, "a" : "x y\"" }}"#,
    )
    .expect("parses");
    let Record::Patient(p) = r else {
        panic!("not a patient")
    };
    assert_eq!(p.bio.as_deref(), Some(r#"{"z":1,"a":"x y\""}"#));
}

#[test]
fn typos_and_bad_values_are_named() {
    let cases = [
        (
            r#"{"type":"user","id":5,"institution_id":1,"frist_name":"Sam"}"#,
            "frist_name",
        ),
        (r#"{"id":5,"type":"user","institution_id":1}"#, "first key"),
        (r#"{"type":"robot","id":5}"#, "robot"),
        (
            r#"{"type":"conversation","id":1,"location_id":1,"patient_id":1,"created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z"}"#,
            "updated_at",
        ),
        (
            r#"{"type":"conversation","id":1,"location_id":1,"patient_id":1,"created_at":"2024-01-01"}"#,
            "RFC 3339",
        ),
        (
            r#"{"type":"message","id":1,"conversation_id":1,"body":"x","created_at":"2024-01-01T00:00:00Z","sender":{"type":"Bot","id":1}}"#,
            "Bot",
        ),
        (
            r#"{"type":"message","id":1,"conversation_id":1,"body":"x","created_at":"2024-01-01T00:00:00Z","sender":{"type":"System","id":1}}"#,
            "System",
        ),
        (
            r#"{"type":"message","id":1,"conversation_id":1,"body":"x","created_at":"2024-01-01T00:00:00Z","sender":{"type":"User"}}"#,
            "needs an id",
        ),
        (
            r#"{"type":"patient","id":1,"institution_id":1,"bio":[1]}"#,
            "bio",
        ),
        (
            r#"{"type":"institution","id":"1","subdomain":"a","name":"b"}"#,
            "invalid type",
        ),
        ("not json", "expected"),
    ];
    for (line, needle) in cases {
        let e = Record::parse_line(line).expect_err(line);
        assert!(e.contains(needle), "{line}: {e}");
        assert!(!e.contains("line 1"), "{e}");
    }
}

#[test]
fn timestamps_truncate_to_the_millisecond() {
    let r = Record::parse_line(
        r#"{"type":"conversation","id":1,"location_id":1,"patient_id":1,"created_at":"2024-01-01T02:00:00.123999+02:00"}"#,
    )
    .expect("parses");
    let Record::Conversation(c) = r else {
        panic!("not a conversation")
    };
    assert_eq!(c.created_at.0.to_utc_string(), "2024-01-01T00:00:00.123Z");
}
