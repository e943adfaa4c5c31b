//! `GET /conversations` through the real router on a fresh database: every rule of
//! CONTRACT §3 and §7.

use crate::common::TestApp;
use serde_json::{Value, json};

const L10: &str = "subdomain=acme&location_id=10";

fn message_ids(conv: &Value) -> Vec<i64> {
    conv["messages"]
        .as_array()
        .expect("messages array")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn full_response_snapshot() {
    let app = TestApp::new().await;
    let reply = app.list(&format!("{L10}&per_page=2&messages=3")).await;
    let v = reply.ok_list();
    assert_eq!(
        reply.headers["content-type"],
        "application/json; charset=utf-8"
    );
    insta::assert_snapshot!(serde_json::to_string_pretty(&v).expect("pretty"));
}

#[tokio::test]
async fn keys_are_in_contract_order() {
    let app = TestApp::new().await;
    let v = app.list(&format!("{L10}&messages=5")).await.ok_list();
    let conv = &v["data"][0];
    let keys =
        |o: &Value| -> Vec<String> { o.as_object().expect("object").keys().cloned().collect() };
    assert_eq!(
        keys(conv),
        ["id", "created_at", "updated_at", "patient", "messages"]
    );
    assert_eq!(
        keys(&conv["patient"]),
        [
            "id",
            "email",
            "first_name",
            "middle_name",
            "last_name",
            "name",
            "created_at",
            "updated_at",
            "institution_id",
            "foreign_id",
            "foreign_id_type",
            "bio",
            "inactive",
            "last_sync_time",
            "guarantor_id",
            "unsubscribe_sms"
        ]
    );
    assert_eq!(
        keys(&conv["messages"][0]),
        [
            "id",
            "body",
            "created_at",
            "updated_at",
            "conversation_id",
            "seen_by",
            "user_id",
            "attachment_file_name",
            "attachment_content_type",
            "attachment_file_size",
            "attachment_updated_at",
            "sms_msg_id",
            "sender_info",
            "attachment_url",
            "is_custom_reminder_response",
            "created_at_with_tz",
            "timezone_offset"
        ]
    );
    assert_eq!(
        keys(&conv["messages"][0]["sender_info"]),
        ["name", "image", "meta_type", "user_id"]
    );
    // Bio comes back exactly as imported, keys in their order.
    assert_eq!(
        keys(&conv["patient"]["bio"]),
        [
            "phone_number",
            "cell_phone_number",
            "date_of_birth",
            "gender",
            "new_patient",
            "non_patient"
        ]
    );
}

#[tokio::test]
async fn ordering_count_and_tie_breaks() {
    let app = TestApp::new().await;
    // 1000 (last message 03-12), then 1004 and 1002 tie on 03-01 (id desc), then 1001 (02-02).
    let reply = app.list(&format!("{L10}&per_page=10")).await;
    assert_eq!(reply.ids(), [1000, 1004, 1002, 1001]);
    let v = reply.ok_list();
    assert_eq!(v["count"], 4);
    assert_eq!(v["description"], "Success");
    assert_eq!(v["data"][0]["updated_at"], "2024-03-12T08:05:00.000Z");
    assert_eq!(v["data"][1]["updated_at"], "2024-03-01T00:00:00.000Z");
}

#[tokio::test]
async fn paging_and_count_is_the_total() {
    let app = TestApp::new().await;
    assert_eq!(
        app.list(&format!("{L10}&per_page=3")).await.ids(),
        [1000, 1004, 1002]
    );
    let page2 = app.list(&format!("{L10}&per_page=3&page=2")).await;
    assert_eq!(page2.ids(), [1001]);
    assert_eq!(page2.ok_list()["count"], 4);
    let past = app.list(&format!("{L10}&per_page=3&page=3")).await;
    assert_eq!(past.ids(), Vec::<i64>::new());
    assert_eq!(past.ok_list()["count"], 4);
    let far = app.list(&format!("{L10}&page=4294967297")).await.ok_list();
    assert_eq!(
        (far["data"].clone(), far["count"].clone()),
        (json!([]), json!(4))
    );
    let max = app
        .list(&format!("{L10}&page=9223372036854775807&per_page=100"))
        .await
        .ok_list();
    assert_eq!(max["data"], json!([]));
    // Default page size is 5.
    assert_eq!(
        app.list("subdomain=acme&location_id=10").await.ids().len(),
        4
    );
}

#[tokio::test]
async fn notes_in_description() {
    let app = TestApp::new().await;
    let v = app
        .list(&format!(
            "{L10}&foo=1&per_page=101&bar=2&foo=3&messages=1000"
        ))
        .await
        .ok_list();
    assert_eq!(
        v["description"],
        "Note that following parameters are ignored: foo, bar. per_page is capped at 100. messages is capped at 100."
    );
    let v = app
        .list(&format!("{L10}&messages=1000&include_messages=false"))
        .await
        .ok_list();
    assert_eq!(v["description"], "Success");
}

#[tokio::test]
async fn messages_are_off_by_default_and_an_empty_array() {
    let app = TestApp::new().await;
    for q in [
        "",
        "&include_messages=false&messages=3",
        "&include_messages=0",
        "&messages=0",
        "&messages=",
    ] {
        let v = app.list(&format!("{L10}{q}")).await.ok_list();
        for conv in v["data"].as_array().expect("data") {
            assert_eq!(conv["messages"], json!([]), "{q}");
        }
    }
    let v = app
        .list(&format!("{L10}&include_messages=true"))
        .await
        .ok_list();
    assert_eq!(message_ids(&v["data"][0]), [50003, 50002, 50001, 50000]);
}

#[tokio::test]
async fn newest_messages_first_and_capped() {
    let app = TestApp::new().await;
    let v = app.list(&format!("{L10}&messages=2")).await.ok_list();
    assert_eq!(message_ids(&v["data"][0]), [50003, 50002]);
    assert_eq!(message_ids(&v["data"][3]), [50011, 50010]);
    assert_eq!(message_ids(&v["data"][1]), Vec::<i64>::new());
}

#[tokio::test]
async fn messages_since_filters_messages_not_conversations() {
    let app = TestApp::new().await;
    let v = app
        .list(&format!(
            "{L10}&messages=10&messages_since=2024-03-10T10:00:00Z"
        ))
        .await
        .ok_list();
    assert_eq!(v["count"], 4);
    assert_eq!(message_ids(&v["data"][0]), [50003, 50002, 50001]);
    assert_eq!(message_ids(&v["data"][3]), Vec::<i64>::new());
    // Exact comparison: .9991 is after the message at .999, .999 is not.
    let v = app
        .list(&format!(
            "{L10}&messages=10&messages_since=2024-03-10T09:59:59.9991Z"
        ))
        .await
        .ok_list();
    assert_eq!(message_ids(&v["data"][0]), [50003, 50002, 50001]);
    let v = app
        .list(&format!(
            "{L10}&messages=10&messages_since=2024-03-10T09:59:59.999Z"
        ))
        .await
        .ok_list();
    assert_eq!(message_ids(&v["data"][0]), [50003, 50002, 50001, 50000]);
}

#[tokio::test]
async fn updated_since_filters_and_counts() {
    let app = TestApp::new().await;
    let reply = app
        .list(&format!("{L10}&messages=10&updated_since=2024-03-11"))
        .await;
    assert_eq!(reply.ids(), [1000]);
    let v = reply.ok_list();
    assert_eq!(v["count"], 1);
    // Messages updated since: 50001 was seen on 03-11, 50002 and 50003 were written after.
    assert_eq!(message_ids(&v["data"][0]), [50003, 50002, 50001]);
    let v = app
        .list(&format!("{L10}&updated_since=2024-03-01"))
        .await
        .ok_list();
    assert_eq!(v["count"], 3);
    let v = app
        .list(&format!("{L10}&updated_since=2030-01-01"))
        .await
        .ok_list();
    assert_eq!(
        (v["data"].clone(), v["count"].clone()),
        (json!([]), json!(0))
    );
}

#[tokio::test]
async fn unencoded_plus_in_dates_means_an_offset() {
    let app = TestApp::new().await;
    // 2024-03-11T05:30:00+05:30 is 2024-03-11T00:00Z; the `+` arrives as a space.
    for q in [
        "updated_since=2024-03-11T05:30:00+05:30",
        "updated_since=2024-03-11T05:30:00%2B05:30",
        "updated_since=2024-03-11T05:30:00+0530",
        "updated_since=2024-03-10T17:00:00-0700",
        "updated_since=2024-03-11%2000:00:00+0000",
        "updated_since=2024-03-11T00:00:00.000Z",
    ] {
        let v = app.list(&format!("{L10}&{q}")).await.ok_list();
        assert_eq!(v["count"], 1, "{q}");
    }
}

#[tokio::test]
async fn created_at_with_tz_across_dst() {
    let app = TestApp::new().await;
    let v = app.list(&format!("{L10}&messages=10")).await.ok_list();
    let msgs = &v["data"][0]["messages"];
    // 50000 is the last millisecond of PST, 50001 the first of PDT.
    assert_eq!(
        msgs[3]["created_at_with_tz"],
        "2024-03-10T01:59:59.999-08:00"
    );
    assert_eq!(msgs[3]["timezone_offset"], "-08:00");
    assert_eq!(
        msgs[2]["created_at_with_tz"],
        "2024-03-10T03:00:00.000-07:00"
    );
    assert_eq!(msgs[2]["timezone_offset"], "-07:00");
    let v = app
        .list("subdomain=acme&location_id=11&messages=1")
        .await
        .ok_list();
    let m = &v["data"][0]["messages"][0];
    assert_eq!(m["created_at_with_tz"], "2024-01-05T05:30:00.000+05:30");
    assert_eq!(m["timezone_offset"], "+05:30");
}

#[tokio::test]
async fn senders_names_and_attachments() {
    let app = TestApp::new().await;
    let v = app
        .list(&format!("{L10}&messages=10&per_page=10"))
        .await
        .ok_list();
    let m = &v["data"][0]["messages"];
    assert_eq!(
        m[3]["sender_info"],
        json!({"name":"Sam Lee","image":"https://img.example.com/sam.png","meta_type":"User","user_id":5})
    );
    assert_eq!(m[3]["user_id"], 5);
    assert_eq!(
        m[2]["sender_info"],
        json!({"name":"Ana Diaz","image":null,"meta_type":"Patient","user_id":100})
    );
    assert_eq!(m[2]["seen_by"], json!(["6", "5"]));
    assert_eq!(m[2]["updated_at"], "2024-03-11T00:00:00.000Z");
    assert_eq!(
        m[1]["sender_info"],
        json!({"name":null,"image":null,"meta_type":"System","user_id":null})
    );
    assert_eq!(m[1]["user_id"], Value::Null);
    assert_eq!(m[0]["attachment_file_name"], "card.jpg");
    assert_eq!(m[0]["attachment_content_type"], "image/jpeg");
    assert_eq!(m[0]["attachment_file_size"], 48213);
    assert_eq!(m[0]["attachment_url"], "https://files.example.com/card.jpg");
    assert_eq!(m[0]["attachment_updated_at"], "2024-03-12T08:05:01.000Z");
    assert_eq!(m[0]["sms_msg_id"], 777);
    assert_eq!(m[0]["is_custom_reminder_response"], true);
    for field in [
        "attachment_file_name",
        "attachment_content_type",
        "attachment_file_size",
        "attachment_updated_at",
        "attachment_url",
        "sms_msg_id",
    ] {
        assert_eq!(m[1][field], Value::Null, "{field}");
    }
    // A staff user without a last name; a patient with a middle name; one without any name.
    let ben = &v["data"][3];
    assert_eq!(ben["messages"][1]["sender_info"]["name"], "Dana");
    assert_eq!(ben["patient"]["name"], "Ben Jo Okafor");
    assert_eq!(ben["patient"]["guarantor_id"], 100);
    assert_eq!(ben["patient"]["bio"], json!({}));
    let nameless = &v["data"][2]["patient"];
    assert_eq!(nameless["id"], 102);
    assert_eq!(nameless["name"], Value::Null);
    assert_eq!(nameless["first_name"], Value::Null);
    assert_eq!(v["data"][1]["patient"]["unsubscribe_sms"], true);
}

#[tokio::test]
async fn subdomain_is_case_insensitive_and_parameter_names_are_not() {
    let app = TestApp::new().await;
    assert_eq!(
        app.list("subdomain=ACME&location_id=10").await.ids().len(),
        4
    );
    let e = app.list("Subdomain=acme&location_id=10").await.errors(400);
    assert_eq!(e, ["subdomain is missing"]);
}

#[tokio::test]
async fn other_tenants_never_leak() {
    let app = TestApp::new().await;
    assert_eq!(
        app.list("subdomain=other&location_id=20").await.errors(403),
        ["This API key may not access subdomain other"]
    );
    assert_eq!(
        app.list("subdomain=nope&location_id=20").await.errors(403),
        ["This API key may not access subdomain nope"]
    );
    assert_eq!(
        app.list("subdomain=acme&location_id=20").await.errors(404),
        ["location_id 20 is not a location of this institution"]
    );
    assert_eq!(app.list("subdomain=acme&location_id=999").await.status, 404);
}

#[tokio::test]
async fn bad_parameters_are_all_listed() {
    let app = TestApp::new().await;
    let e = app
        .list("location_id=x&page=0&per_page=-1&include_messages=maybe&messages=abc&messages_since=yesterday&updated_since=2024-01-01T10:00")
        .await
        .errors(400);
    assert_eq!(e.len(), 8, "{e:?}");
    assert_eq!(
        app.list(&format!("{L10}&per_page=abc")).await.errors(400),
        ["per_page must be a positive integer"]
    );
    assert_eq!(
        app.list(&format!("{L10}&messages_since=2024-01-01Z"))
            .await
            .errors(400),
        ["messages_since is not a valid date/time"]
    );
    assert_eq!(
        app.list("subdomain=acme&location_id=99999999999999999999")
            .await
            .errors(400),
        ["location_id must be a positive integer"]
    );
}

#[tokio::test]
async fn empty_values_mean_absent() {
    let app = TestApp::new().await;
    let v = app
        .list(&format!(
            "{L10}&page=&per_page=&messages=&messages_since=&updated_since=&include_messages="
        ))
        .await
        .ok_list();
    assert_eq!(v["description"], "Success");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(4));
}

/// GET /conversations in the cursor variant (`Nex-Api-Version: v20240412`).
async fn cursor_list(app: &TestApp, query: &str) -> crate::common::Reply {
    app.send(
        axum::http::Request::get(format!("/conversations?{query}"))
            .header("authorization", format!("Bearer {}", app.token))
            .header("nex-api-version", "v20240412")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await
}

fn cursor_page(reply: &crate::common::Reply) -> (Vec<i64>, Value) {
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    let v = reply.json();
    assert_eq!(
        v.as_object().expect("object").keys().collect::<Vec<_>>(),
        ["code", "description", "error", "data", "page_info"]
    );
    let info = v["page_info"].clone();
    assert_eq!(
        info.as_object().expect("object").keys().collect::<Vec<_>>(),
        [
            "has_previous_page",
            "has_next_page",
            "start_cursor",
            "end_cursor"
        ]
    );
    let ids = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect();
    (ids, info)
}

#[tokio::test]
async fn cursors_walk_forward_and_back_through_ties() {
    let app = TestApp::new().await;
    // Order: 1000, then 1004 and 1002 tied on one instant (id desc), then 1001.
    let (ids, info) = cursor_page(&cursor_list(&app, &format!("{L10}&per_page=2")).await);
    assert_eq!(ids, [1000, 1004]);
    assert_eq!(
        (
            info["has_previous_page"].clone(),
            info["has_next_page"].clone()
        ),
        (json!(false), json!(true))
    );
    let end = info["end_cursor"].as_str().expect("end cursor").to_string();
    let (ids, info) =
        cursor_page(&cursor_list(&app, &format!("{L10}&per_page=2&end_cursor={end}")).await);
    assert_eq!(ids, [1002, 1001], "the tie is split across pages exactly");
    assert_eq!(
        (
            info["has_previous_page"].clone(),
            info["has_next_page"].clone()
        ),
        (json!(true), json!(false))
    );
    let start = info["start_cursor"]
        .as_str()
        .expect("start cursor")
        .to_string();
    let (ids, info) =
        cursor_page(&cursor_list(&app, &format!("{L10}&per_page=2&start_cursor={start}")).await);
    assert_eq!(ids, [1000, 1004], "back to the first page");
    assert_eq!(
        (
            info["has_previous_page"].clone(),
            info["has_next_page"].clone()
        ),
        (json!(false), json!(true))
    );
    // Past the end: an empty page with null cursors that still knows what lies behind it.
    let last = cursor_page(&cursor_list(&app, &format!("{L10}&per_page=2&end_cursor={end}")).await)
        .1["end_cursor"]
        .as_str()
        .expect("end")
        .to_string();
    let (ids, info) =
        cursor_page(&cursor_list(&app, &format!("{L10}&per_page=2&end_cursor={last}")).await);
    assert!(ids.is_empty());
    assert_eq!(
        info,
        json!({"has_previous_page": true, "has_next_page": false,
               "start_cursor": null, "end_cursor": null})
    );
}

#[tokio::test]
async fn the_cursor_variant_keeps_the_lists_other_parameters() {
    let app = TestApp::new().await;
    let reply = cursor_list(
        &app,
        &format!("{L10}&per_page=1&messages=2&page=3&updated_since=2024-02-15&end_cursor="),
    )
    .await;
    let (ids, info) = cursor_page(&reply);
    assert_eq!(
        ids,
        [1000],
        "an empty cursor is no cursor; page means nothing here"
    );
    let v = reply.json();
    assert_eq!(
        v["description"],
        "Note that following parameters are ignored: page."
    );
    assert_eq!(message_ids(&v["data"][0]), [50003, 50002]);
    assert_eq!(info["has_next_page"], true);
    // In version 2 the cursors are unknown parameters.
    let v = app
        .list(&format!("{L10}&per_page=1&end_cursor=abc"))
        .await
        .ok_list();
    assert_eq!(
        v["description"],
        "Note that following parameters are ignored: end_cursor."
    );
}

#[tokio::test]
async fn bad_cursors_are_400s_naming_the_parameter() {
    let app = TestApp::new().await;
    let first = cursor_page(&cursor_list(&app, L10).await).1;
    let good = first["end_cursor"].as_str().expect("cursor");
    for (query, expected) in [
        (
            format!("{L10}&end_cursor=nope"),
            vec!["end_cursor is not a valid cursor"],
        ),
        (
            format!("{L10}&start_cursor=%21%21&per_page=0"),
            vec![
                "start_cursor is not a valid cursor",
                "per_page must be a positive integer",
            ],
        ),
        (
            format!("{L10}&start_cursor={good}&end_cursor={good}"),
            vec!["start_cursor and end_cursor cannot be used together"],
        ),
    ] {
        assert_eq!(cursor_list(&app, &query).await.errors(400), expected);
    }
    // Another tenant's scope still answers 403, cursor or not.
    cursor_list(
        &app,
        &format!("subdomain=other&location_id=20&end_cursor={good}"),
    )
    .await
    .errors(403);
}
