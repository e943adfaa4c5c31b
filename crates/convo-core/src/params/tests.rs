use super::*;
use crate::Millis;
use proptest::prelude::*;

fn parse(q: &str) -> Result<ListParams, Vec<String>> {
    ListParams::parse(Some(q))
}

fn ok(q: &str) -> ListParams {
    parse(q).unwrap_or_else(|e| panic!("{q}: {e:?}"))
}

fn errs(q: &str) -> Vec<String> {
    parse(q).err().unwrap_or_else(|| panic!("{q} was accepted"))
}

const BASE: &str = "subdomain=acme&location_id=10";

#[test]
fn defaults() {
    let p = ok(BASE);
    assert_eq!(
        p.scope,
        Scope {
            subdomain: "acme".into(),
            location_id: 10
        }
    );
    assert_eq!(p.query.limit, 5);
    assert_eq!(p.query.offset, 0);
    assert_eq!(p.query.messages, None);
    assert_eq!(p.query.updated_since, None);
    assert!(p.notes.is_empty());
    assert_eq!(description(&p.notes), "Success");
}

#[test]
fn paging() {
    let p = ok(&format!("{BASE}&page=3&per_page=20"));
    assert_eq!((p.query.limit, p.query.offset), (20, 40));
    let p = ok(&format!("{BASE}&page=4294967297&per_page=100"));
    assert_eq!(p.query.offset, 4_294_967_296 * 100);
    let p = ok(&format!("{BASE}&page=9223372036854775807&per_page=100"));
    assert_eq!(p.query.offset, i64::MAX);
}

#[test]
fn per_page_is_clamped_with_a_note() {
    let p = ok(&format!("{BASE}&per_page=101"));
    assert_eq!(p.query.limit, 100);
    assert_eq!(p.notes, vec!["per_page is capped at 100."]);
    assert!(ok(&format!("{BASE}&per_page=100")).notes.is_empty());
}

#[test]
fn messages_inclusion_rules() {
    let inc = |q: &str| ok(&format!("{BASE}{q}")).query.messages;
    assert_eq!(inc(""), None);
    assert_eq!(inc("&messages=3").map(|m| m.limit), Some(3));
    assert_eq!(inc("&include_messages=true").map(|m| m.limit), Some(10));
    assert_eq!(inc("&include_messages=TRUE").map(|m| m.limit), Some(10));
    assert_eq!(
        inc("&include_messages=1&messages=0").map(|m| m.limit),
        Some(0)
    );
    assert_eq!(inc("&include_messages=false&messages=3"), None);
    assert_eq!(inc("&include_messages=0&messages=3"), None);
    assert_eq!(
        inc("&include_messages=&messages=3").map(|m| m.limit),
        Some(3)
    );
    assert_eq!(
        inc("&messages=&include_messages=True").map(|m| m.limit),
        Some(10)
    );
}

#[test]
fn messages_cap_note_only_when_included() {
    let p = ok(&format!("{BASE}&messages=10000000000"));
    assert_eq!(p.query.messages.map(|m| m.limit), Some(100));
    assert_eq!(p.notes, vec!["messages is capped at 100."]);
    let p = ok(&format!("{BASE}&messages=500&include_messages=false"));
    assert!(p.notes.is_empty());
}

#[test]
fn notes_come_in_the_contract_order() {
    let p = ok(&format!(
        "{BASE}&messages=101&zeta=1&per_page=500&alpha=2&zeta=3&=x&Page=2"
    ));
    assert_eq!(
        description(&p.notes),
        "Note that following parameters are ignored: zeta, alpha, Page. per_page is capped at 100. messages is capped at 100."
    );
}

#[test]
fn ignored_names_are_percent_decoded() {
    let p = ok(&format!("{BASE}&f%6Fo=1&b+r=2"));
    assert_eq!(
        p.notes,
        vec!["Note that following parameters are ignored: foo, b r."]
    );
}

#[test]
fn since_filters() {
    let p = ok(&format!(
        "{BASE}&messages_since=2024-01-01&updated_since=2024-01-02T00:00:00 0000&messages=2"
    ));
    let m = p.query.messages.expect("included");
    assert_eq!(m.created_since, Some(Millis(1_704_067_200_000)));
    assert_eq!(m.updated_since, Some(Millis(1_704_153_600_000)));
    assert_eq!(p.query.updated_since, Some(Millis(1_704_153_600_000)));
    // `+` sent unencoded decodes to a space and still means an offset.
    let p = ok(&format!("{BASE}&updated_since=2024-01-01T05:30:00+05:30"));
    assert_eq!(p.query.updated_since, Some(Millis(1_704_067_200_000)));
    let p = ok(&format!("{BASE}&updated_since=2024-01-01T05:30:00%2B05:30"));
    assert_eq!(p.query.updated_since, Some(Millis(1_704_067_200_000)));
}

#[test]
fn missing_scope() {
    assert_eq!(
        errs(""),
        vec!["subdomain is missing", "location_id is missing"]
    );
    assert_eq!(
        errs("subdomain=&location_id="),
        vec!["subdomain is missing", "location_id is missing"]
    );
    assert_eq!(errs("location_id=1"), vec!["subdomain is missing"]);
}

#[test]
fn every_bad_parameter_is_listed_in_table_order() {
    let e = errs(
        "location_id=x&page=0&per_page=-1&include_messages=maybe&messages=abc&messages_since=nope&updated_since=2024-13-01",
    );
    assert_eq!(
        e,
        vec![
            "subdomain is missing",
            "location_id must be a positive integer",
            "page must be a positive integer",
            "per_page must be a positive integer",
            "include_messages must be true, false, 1 or 0",
            "messages must be a non-negative integer",
            "messages_since is not a valid date/time",
            "updated_since is not a valid date/time",
        ]
    );
}

#[test]
fn integers_are_strict() {
    for bad in [
        "0",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1.0",
        "1e3",
        "0x10",
        "9223372036854775808",
        "abc",
    ] {
        let e = errs(&format!(
            "subdomain=a&location_id={}",
            bad.replace(' ', "%20").replace('+', "%2B")
        ));
        assert_eq!(e, vec!["location_id must be a positive integer"], "{bad}");
    }
    assert_eq!(ok("subdomain=a&location_id=007").scope.location_id, 7);
    assert_eq!(
        ok("subdomain=a&location_id=9223372036854775807")
            .scope
            .location_id,
        i64::MAX
    );
}

#[test]
fn last_value_wins() {
    let p = ok("subdomain=a&location_id=x&location_id=5&page=0&page=2");
    assert_eq!(p.scope.location_id, 5);
    assert_eq!(p.query.offset, 5);
    assert_eq!(
        errs("subdomain=a&location_id=5&location_id=y"),
        vec!["location_id must be a positive integer"]
    );
}

#[test]
fn known_parameters_are_never_ignored() {
    let p = ok(&format!(
        "{BASE}&include_messages=false&messages=4&messages_since=2024-01-01"
    ));
    assert!(p.notes.is_empty(), "{:?}", p.notes);
}

proptest! {
    #[test]
    fn parsing_never_panics(q in "[a-z_=&%+0-9A-F:. -]{0,80}") {
        let _ = ListParams::parse(Some(&q));
    }

    #[test]
    fn valid_pages_round_trip(page in 1i64..1_000_000, per_page in 1i64..1000, messages in 0i64..1000) {
        let p = ok(&format!("{BASE}&page={page}&per_page={per_page}&messages={messages}"));
        let limit = per_page.min(100);
        prop_assert_eq!(p.query.limit, limit);
        prop_assert_eq!(p.query.offset, (page - 1) * limit);
        prop_assert_eq!(p.query.messages.map(|m| m.limit), Some(messages.min(100)));
    }

    #[test]
    fn any_integer_text_is_all_digits(s in "\\PC{0,25}") {
        if let Some(n) = parse_int(&s) {
            prop_assert!(s.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(s.trim_start_matches('0').parse::<i64>().unwrap_or(0), n);
        }
    }
}

#[test]
fn webhook_routes_read_their_own_parameters() {
    let p =
        WebhookParams::parse(Some("active=false&x=1"), WebhookRoute::ListEndpoints).expect("valid");
    assert_eq!(p.active, Some(false));
    assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    assert_eq!(
        WebhookParams::parse(Some("active=maybe"), WebhookRoute::ListEndpoints),
        Err(vec!["active must be true or false".to_string()])
    );
    assert_eq!(
        WebhookParams::parse(Some("active="), WebhookRoute::ListEndpoints)
            .expect("empty is absent")
            .active,
        None
    );
    let p = WebhookParams::parse(
        Some("subdomain=acme&resource_type=Message&event=message_created"),
        WebhookRoute::ListSubscriptions,
    )
    .expect("valid");
    assert_eq!(
        (
            p.subdomain.as_deref(),
            p.resource_type.as_deref(),
            p.event.as_deref()
        ),
        (Some("acme"), Some("Message"), Some("message_created"))
    );
    assert_eq!(
        WebhookParams::parse(Some("subdomain="), WebhookRoute::Institution),
        Err(vec!["subdomain is missing".to_string()])
    );
    let p = WebhookParams::parse(Some("subdomain=acme"), WebhookRoute::Bare).expect("valid");
    assert_eq!(p.subdomain, None);
    assert_eq!(p.notes.len(), 1);
}
