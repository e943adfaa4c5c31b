//! The write side through the real router (CONTRACT §6): staff sends,
//! seen, one conversation, Twilio's inbound and status webhooks, and every bad input refused
//! with its status and nothing written.

use crate::common::{TestApp, import_text};
use convo_core::Millis;
use convo_core::outbox::Attempt;
use convo_server::ApiConfig;

const SCOPE: &str = "subdomain=acme&location_id=10";
const TOKEN: &str = "twilio-test-token";
const PUBLIC: &str = "https://convo.example.org";

async fn app() -> TestApp {
    TestApp::with_config(ApiConfig {
        twilio_auth_token: Some(convo_core::Secret::new(TOKEN)),
        public_url: Some(PUBLIC.into()),
        ..ApiConfig::default()
    })
    .await
}

fn send_body(patient: i64, user: i64, body: &str) -> String {
    serde_json::json!({"message": {"patient_id": patient, "user_id": user, "body": body}})
        .to_string()
}

#[tokio::test]
async fn a_staff_message_is_written_queued_and_listed_first() {
    let app = app().await;
    import_text(
        app.store.as_ref(),
        r#"{"type":"patient","id":101,"institution_id":1,"first_name":"Ben","middle_name":"Jo","last_name":"Okafor","guarantor_id":100,"bio":{"phone_number":"516.555.0101"}}"#,
    )
    .await
    .expect("import");
    let reply = app
        .post_json(
            &format!("/messages?{SCOPE}"),
            &send_body(101, 5, "  Hi Ben, your crown is ready. "),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
    let v = reply.json();
    assert_eq!(v["description"], "Created");
    let m = &v["data"];
    assert_eq!(m["body"], "Hi Ben, your crown is ready.");
    assert_eq!(m["conversation_id"], 1001);
    assert_eq!(m["sender_info"]["name"], "Sam Lee");
    assert_eq!(m["sender_info"]["meta_type"], "User");
    assert_eq!(m["user_id"], 5);
    assert_eq!(m["seen_by"], serde_json::json!([]));
    let delivery = m["sms_msg_id"]
        .as_i64()
        .expect("sms_msg_id is the delivery id");
    let status = app.delivery(delivery).await.status.as_str().to_string();
    let outgoing = app.outgoing().await;
    let (to, from) = (outgoing[0].to.clone(), outgoing[0].from.clone());
    assert_eq!(
        (status.as_str(), to.as_str(), from.as_str()),
        ("queued", "+15165550101", "+15551230000")
    );
    let list = app.list(&format!("{SCOPE}&messages=1")).await.ok_list();
    assert_eq!(list["data"][0]["id"], 1001);
    assert_eq!(list["data"][0]["updated_at"], m["created_at"]);
    assert_eq!(list["data"][0]["messages"][0]["id"], m["id"]);
}

#[tokio::test]
async fn a_send_creates_the_conversation_when_there_is_none() {
    let app = app().await;
    import_text(
        app.store.as_ref(),
        r#"{"type":"patient","id":104,"institution_id":1,"first_name":"Dev","bio":{"cell_phone_number":"(516) 555-0104"}}"#,
    )
    .await
    .expect("import");
    let before = app.list(SCOPE).await.ok_list()["count"]
        .as_i64()
        .expect("count");
    let reply = app
        .post_json(
            &format!("/messages?{SCOPE}"),
            &send_body(104, 6, "Welcome!"),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
    let conversation = reply.json()["data"]["conversation_id"]
        .as_i64()
        .expect("id");
    let list = app.list(SCOPE).await.ok_list();
    assert_eq!(list["count"].as_i64(), Some(before + 1));
    assert_eq!(list["data"][0]["id"].as_i64(), Some(conversation));
    assert_eq!(list["data"][0]["patient"]["id"], 104);
    let to = app.outgoing().await[0].to.clone();
    assert_eq!(to, "+15165550104");
}

#[tokio::test]
async fn bad_sends_get_their_status_and_write_nothing() {
    let app = app().await;
    let before = app.snapshot().await;
    let uri = format!("/messages?{SCOPE}");
    let cases: Vec<(u16, String, &str)> = vec![
        (400, "{\"message\":".into(), "the body is not valid"),
        (400, "[1,2]".into(), "the body is not valid"),
        (
            400,
            r#"{"message":{"patient_id":100,"user_id":5,"body":"x","extra":1}}"#.into(),
            "unknown field `extra`",
        ),
        (
            400,
            send_body(999, 5, "hi"),
            "patient_id 999 is not a patient of this institution",
        ),
        (
            400,
            send_body(200, 5, "hi"),
            "patient_id 200 is not a patient of this institution",
        ),
        (
            400,
            send_body(100, 7, "hi"),
            "user_id 7 is not a staff user of this institution",
        ),
        (
            400,
            send_body(100, 999, "hi"),
            "user_id 999 is not a staff user of this institution",
        ),
        (
            400,
            send_body(103, 5, "hi"),
            "Patient has unsubscribed from SMS",
        ),
        (
            400,
            send_body(102, 5, "hi"),
            "Patient has no phone number to text",
        ),
        (
            400,
            send_body(100, 5, &"a".repeat(1601)),
            "message.body must be at most 1600 characters",
        ),
        (
            400,
            send_body(100, 5, "   "),
            "message.body must be 1 to 1600 characters",
        ),
    ];
    for (status, body, expected) in cases {
        let errors = app.post_json(&uri, &body).await.errors(status);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{body}: {errors:?}"
        );
    }
    // Location 11 has no number to send from.
    let errors = app
        .post_json(
            "/messages?subdomain=acme&location_id=11",
            &send_body(100, 5, "hi"),
        )
        .await
        .errors(400);
    assert_eq!(errors, ["Location has no phone number to text from"]);
    // Wrong content type, too large, another tenant, no token.
    let req = axum::http::Request::post(&uri)
        .header("authorization", format!("Bearer {}", app.token))
        .header("content-type", "text/plain")
        .body(axum::body::Body::from(send_body(100, 5, "hi")))
        .expect("request");
    assert_eq!(
        app.send(req).await.errors(415),
        ["Content-Type must be application/json"]
    );
    let huge = send_body(100, 5, &"a".repeat(70 * 1024));
    assert_eq!(app.post_json(&uri, &huge).await.errors(413).len(), 1);
    app.post_json(
        "/messages?subdomain=other&location_id=20",
        &send_body(200, 7, "hi"),
    )
    .await
    .errors(403);
    app.post_json(
        "/messages?subdomain=acme&location_id=20",
        &send_body(100, 5, "hi"),
    )
    .await
    .errors(404);
    let errors = app
        .post_json("/messages", &send_body(100, 5, "hi"))
        .await
        .errors(400);
    assert_eq!(errors, ["subdomain is missing", "location_id is missing"]);
    let req = axum::http::Request::post(&uri)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(send_body(100, 5, "hi")))
        .expect("request");
    app.send(req).await.errors(401);
    assert_eq!(before, app.snapshot().await);
}

#[tokio::test]
async fn seen_adds_the_user_once_and_moves_activity() {
    let app = app().await;
    let uri = format!("/messages/50000/seen?{SCOPE}");
    let reply = app.post_json(&uri, r#"{"user_id":6}"#).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    let m = reply.json()["data"].clone();
    assert_eq!(m["seen_by"], serde_json::json!(["6"]));
    assert_ne!(m["updated_at"], m["created_at"]);
    let again = app.post_json(&uri, r#"{"user_id":6}"#).await.json();
    assert_eq!(again["data"]["seen_by"], serde_json::json!(["6"]));
    assert_eq!(again["data"]["updated_at"], m["updated_at"]);
    let both = app.post_json(&uri, r#"{"user_id":5}"#).await.json();
    assert_eq!(both["data"]["seen_by"], serde_json::json!(["6", "5"]));
    let list = app.list(SCOPE).await.ok_list();
    assert_eq!(list["data"][0]["id"], 1000);
    assert_eq!(list["data"][0]["updated_at"], both["data"]["updated_at"]);

    let before = app.snapshot().await;
    app.post_json(&format!("/messages/50020/seen?{SCOPE}"), r#"{"user_id":6}"#)
        .await
        .errors(404);
    app.post_json(&format!("/messages/50030/seen?{SCOPE}"), r#"{"user_id":6}"#)
        .await
        .errors(404);
    app.post_json(&format!("/messages/nope/seen?{SCOPE}"), r#"{"user_id":6}"#)
        .await
        .errors(404);
    let errors = app.post_json(&uri, r#"{"user_id":7}"#).await.errors(400);
    assert_eq!(
        errors,
        ["user_id 7 is not a staff user of this institution"]
    );
    app.post_json(&uri, r#"{"user":6}"#).await.errors(400);
    assert_eq!(before, app.snapshot().await);
}

#[tokio::test]
async fn one_conversation_with_the_lists_message_parameters() {
    let app = app().await;
    let reply = app
        .get(&format!("/conversations/1000?{SCOPE}&messages=2&foo=1"))
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    let v = reply.json();
    assert_eq!(
        v["description"],
        "Note that following parameters are ignored: foo."
    );
    assert!(v.get("count").is_none());
    assert_eq!(v["data"]["id"], 1000);
    let ids: Vec<i64> = v["data"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [50003, 50002]);
    // The same object as in the list.
    let list = app.list(&format!("{SCOPE}&messages=2")).await.ok_list();
    let listed = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|c| c["id"] == 1000)
        .expect("listed")
        .clone();
    assert_eq!(v["data"], listed);
    for other in ["1003", "2000", "999999", "x"] {
        app.get(&format!("/conversations/{other}?{SCOPE}"))
            .await
            .errors(404);
    }
}

#[tokio::test]
async fn an_inbound_sms_lands_first_once_and_routes_by_numbers() {
    let app = app().await;
    let url = format!("{PUBLIC}/sms/inbound");
    let sign = Some((TOKEN, url.as_str()));
    let params = [
        ("From", "(516) 304-2196"),
        ("To", "+15551230000"),
        ("Body", "Can I come at 3?"),
        ("MessageSid", "SM0001"),
        ("NumMedia", "0"),
    ];
    let reply = app.post_twilio("/sms/inbound", &params, sign).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/xml")
    );
    assert!(reply.text.ends_with("<Response/>"), "{}", reply.text);
    let list = app.list(&format!("{SCOPE}&messages=1")).await.ok_list();
    let first = &list["data"][0];
    assert_eq!(first["id"], 1000);
    assert_eq!(first["messages"][0]["body"], "Can I come at 3?");
    assert_eq!(first["messages"][0]["sender_info"]["meta_type"], "Patient");
    assert_eq!(first["messages"][0]["user_id"], 100);
    assert_eq!(first["messages"][0]["is_custom_reminder_response"], false);
    // Twilio retries: the same MessageSid stores nothing new.
    let before = app.snapshot().await;
    let again = app.post_twilio("/sms/inbound", &params, sign).await;
    assert_eq!(again.status.as_u16(), 200);
    assert_eq!(before, app.snapshot().await);

    // An unknown number becomes a non-patient with a new conversation, media as attachment.
    let reply = app
        .post_twilio(
            "/sms/inbound",
            &[
                ("From", "+12025550199"),
                ("To", "+1 555 123 0000"),
                ("Body", ""),
                ("MessageSid", "SM0002"),
                ("NumMedia", "1"),
                ("MediaUrl0", "https://api.twilio.com/media/ME1"),
                ("MediaContentType0", "image/png"),
            ],
            sign,
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    let list = app.list(&format!("{SCOPE}&messages=1")).await.ok_list();
    let first = &list["data"][0];
    assert_eq!(first["patient"]["name"], serde_json::Value::Null);
    assert_eq!(
        first["patient"]["bio"],
        serde_json::json!({"cell_phone_number": "+12025550199", "non_patient": true})
    );
    let m = &first["messages"][0];
    assert_eq!(m["attachment_url"], "https://api.twilio.com/media/ME1");
    assert_eq!(m["attachment_content_type"], "image/png");
}

#[tokio::test]
async fn a_reply_to_a_reminder_is_flagged() {
    let app = app().await;
    import_text(
        app.store.as_ref(),
        r#"{"type":"message","id":60000,"conversation_id":1000,"body":"Reminder: tomorrow 9am","created_at":"2024-04-01T00:00:00Z","sender":{"type":"System","id":null}}"#,
    )
    .await
    .expect("import");
    let url = format!("{PUBLIC}/sms/inbound");
    let reply = app
        .post_twilio(
            "/sms/inbound",
            &[
                ("From", "+15163042196"),
                ("To", "+15551230000"),
                ("Body", "C"),
                ("MessageSid", "SM9"),
            ],
            Some((TOKEN, &url)),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    let one = app
        .get(&format!("/conversations/1000?{SCOPE}&messages=1"))
        .await
        .json();
    assert_eq!(one["data"]["messages"][0]["body"], "C");
    assert_eq!(
        one["data"]["messages"][0]["is_custom_reminder_response"],
        true
    );
}

#[tokio::test]
async fn stop_and_start_flip_every_patient_with_that_number() {
    let app = app().await;
    // Ben shares Ana's number (a family); Zed, of another institution, has it too.
    import_text(
        app.store.as_ref(),
        r#"{"type":"patient","id":101,"institution_id":1,"first_name":"Ben","guarantor_id":100,"bio":{"cell_phone_number":"+15163042196"}}
{"type":"patient","id":200,"institution_id":2,"first_name":"Zed","bio":{"cell_phone_number":"+15163042196"}}"#,
    )
    .await
    .expect("import");
    let url = format!("{PUBLIC}/sms/inbound");
    let flags = || async {
        {
            let mut all = app.conversations(1, 10).await;
            all.extend(app.conversations(2, 20).await);
            let mut flags: Vec<(i64, bool)> = all
                .iter()
                .map(|c| (c.patient.id, c.patient.unsubscribe_sms))
                .filter(|(id, _)| [100, 101, 200].contains(id))
                .collect();
            flags.sort_unstable();
            flags.dedup();
            flags
        }
    };
    let stop = app
        .post_twilio(
            "/sms/inbound",
            &[
                ("From", "+15163042196"),
                ("To", "+15551230000"),
                ("Body", " Stop "),
                ("MessageSid", "SM-stop"),
            ],
            Some((TOKEN, &url)),
        )
        .await;
    assert_eq!(stop.status.as_u16(), 200, "{}", stop.text);
    assert!(
        stop.text.contains("<Message>You have been unsubscribed"),
        "{}",
        stop.text
    );
    assert_eq!(flags().await, [(100, true), (101, true), (200, false)]);
    // The keyword is stored like any message, in the guarantor's conversation.
    let one = app
        .get(&format!("/conversations/1000?{SCOPE}&messages=1"))
        .await
        .json();
    assert_eq!(one["data"]["messages"][0]["body"], " Stop ");
    let errors = app
        .post_json(&format!("/messages?{SCOPE}"), &send_body(100, 5, "hello?"))
        .await
        .errors(400);
    assert_eq!(errors, ["Patient has unsubscribed from SMS"]);
    let start = app
        .post_twilio(
            "/sms/inbound",
            &[
                ("From", "+15163042196"),
                ("To", "+15551230000"),
                ("Body", "start"),
                ("MessageSid", "SM-start"),
            ],
            Some((TOKEN, &url)),
        )
        .await;
    assert!(
        start.text.contains("<Message>You have been resubscribed"),
        "{}",
        start.text
    );
    assert_eq!(flags().await, [(100, false), (101, false), (200, false)]);
}

#[tokio::test]
async fn webhooks_refuse_bad_signatures_and_unknown_numbers_writing_nothing() {
    let app = app().await;
    let before = app.snapshot().await;
    let url = format!("{PUBLIC}/sms/inbound");
    let params = [
        ("From", "+15163042196"),
        ("To", "+15551230000"),
        ("Body", "hi"),
        ("MessageSid", "SMx"),
    ];
    for signed in [
        None,
        Some(("wrong-token", url.as_str())),
        Some((TOKEN, "http://127.0.0.1:8080/sms/inbound")),
    ] {
        let reply = app.post_twilio("/sms/inbound", &params, signed).await;
        assert_eq!(reply.status.as_u16(), 403, "{}", reply.text);
        assert!(reply.text.contains("X-Twilio-Signature"), "{}", reply.text);
    }
    let reply = app
        .post_twilio(
            "/sms/inbound",
            &[
                ("From", "+15163042196"),
                ("To", "+19998887777"),
                ("Body", "hi"),
                ("MessageSid", "SMy"),
            ],
            Some((TOKEN, &url)),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 404, "{}", reply.text);
    assert!(reply.text.contains("To is not the number of any location"));
    let reply = app
        .post_twilio(
            "/sms/inbound",
            &[("From", "+15163042196"), ("Body", "hi")],
            Some((TOKEN, &url)),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 400);
    assert!(
        reply.text.contains("missing parameters: To, MessageSid"),
        "{}",
        reply.text
    );
    let req = axum::http::Request::post("/sms/inbound")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{}"))
        .expect("request");
    assert_eq!(app.send(req).await.status.as_u16(), 415);
    let huge = "a".repeat(70 * 1024);
    let reply = app
        .post_twilio(
            "/sms/inbound",
            &[
                ("From", "+15163042196"),
                ("To", "+15551230000"),
                ("Body", &huge),
                ("MessageSid", "SMbig"),
            ],
            Some((TOKEN, &url)),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 413, "{}", reply.text);
    assert!(reply.text.contains("too large"), "{}", reply.text);
    assert_eq!(before, app.snapshot().await);

    // Without a configured auth token nothing can be verified: 403.
    let plain = TestApp::new().await;
    let reply = plain
        .post_twilio("/sms/inbound", &params, Some((TOKEN, &url)))
        .await;
    assert_eq!(reply.status.as_u16(), 403);
}

#[tokio::test]
async fn status_callbacks_update_the_delivery_record() {
    let app = app().await;
    let reply = app
        .post_json(
            &format!("/messages?{SCOPE}"),
            &send_body(100, 5, "Your x-rays look great"),
        )
        .await;
    let delivery = reply.json()["data"]["sms_msg_id"]
        .as_i64()
        .expect("delivery");
    let worker = app.store.register_worker().await.expect("worker");
    let claimed = app
        .store
        .claim_deliveries(worker, Millis::now(), 60_000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    app.store
        .finish_delivery(
            worker,
            delivery,
            Attempt::Accepted {
                provider_id: "SMabc".into(),
            },
        )
        .await
        .expect("finish");
    let status = || async {
        {
            let d = app.delivery(delivery).await;
            (d.status.as_str().to_string(), d.error)
        }
    };
    assert_eq!(status().await.0, "sent");
    let url = format!("{PUBLIC}/sms/status");
    let post = |s: &'static str, sid: &'static str| {
        let url = url.clone();
        let app = &app;
        async move {
            app.post_twilio(
                "/sms/status",
                &[("MessageSid", sid), ("MessageStatus", s)],
                Some((TOKEN, &url)),
            )
            .await
        }
    };
    assert_eq!(post("delivered", "SMabc").await.status.as_u16(), 200);
    assert_eq!(status().await.0, "delivered");
    // A late `sent` never replaces a final status.
    assert_eq!(post("sent", "SMabc").await.status.as_u16(), 200);
    assert_eq!(status().await.0, "delivered");
    assert_eq!(post("delivered", "SMnope").await.status.as_u16(), 404);
    assert_eq!(post("exploded", "SMabc").await.status.as_u16(), 400);
    let reply = app
        .post_twilio(
            "/sms/status",
            &[
                ("MessageSid", "SMabc"),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "30003"),
            ],
            Some((TOKEN, &url)),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(
        status().await,
        ("undelivered".into(), Some("provider error 30003".into()))
    );
    let forged = app
        .post_twilio(
            "/sms/status",
            &[("MessageSid", "SMabc"), ("MessageStatus", "delivered")],
            Some(("forged", &url)),
        )
        .await;
    assert_eq!(forged.status.as_u16(), 403);
}

#[tokio::test]
async fn a_send_still_queued_when_the_patient_texts_stop_is_never_sent() {
    let app = app().await;
    let queued = app
        .post_json(&format!("/messages?{SCOPE}"), &send_body(100, 5, "Promo!"))
        .await
        .json()["data"]["sms_msg_id"]
        .as_i64()
        .expect("delivery");
    let url = format!("{PUBLIC}/sms/inbound");
    let reply = app
        .post_twilio(
            "/sms/inbound",
            &[
                ("From", "+15163042196"),
                ("To", "+15551230000"),
                ("Body", "STOP"),
                ("MessageSid", "SMstop"),
            ],
            Some((TOKEN, &url)),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    let worker = app.store.register_worker().await.expect("worker");
    let claimed = app
        .store
        .claim_deliveries(worker, Millis::now(), 60_000, 10)
        .await
        .expect("claim");
    assert!(claimed.is_empty(), "{claimed:?}");
    let record = app.delivery(queued).await;
    let (status, error) = (record.status.as_str(), record.error);
    assert_eq!(status, "failed");
    assert_eq!(
        error.as_deref(),
        Some("the patient unsubscribed from SMS before it was sent")
    );
    // Nor can an operator push it out by hand.
    assert!(matches!(
        app.store.retry_delivery(queued).await,
        Err(e @ convo_core::StoreError::Refused(_)) if e.to_string().contains("unsubscribed")
    ));
}

/// (status, provider id, next attempt) of a delivery.
async fn outbox_row(app: &TestApp, id: i64) -> (String, Option<String>, Option<i64>) {
    let d = app.delivery(id).await;
    (
        d.status.as_str().to_string(),
        d.provider_id,
        d.next_attempt_at.map(|t| t.0),
    )
}

#[tokio::test]
async fn a_callback_that_beats_the_workers_record_is_kept_and_ends_resends() {
    let app = app().await;
    let send = || async {
        app.post_json(&format!("/messages?{SCOPE}"), &send_body(100, 5, "hello"))
            .await
            .json()["data"]["sms_msg_id"]
            .as_i64()
            .expect("delivery")
    };
    let callback = |delivery: i64, sid: &'static str, status: &'static str| {
        let app = &app;
        async move {
            let path = format!("/sms/status?delivery={delivery}");
            let url = format!("{PUBLIC}{path}");
            app.post_twilio(
                &path,
                &[("MessageSid", sid), ("MessageStatus", status)],
                Some((TOKEN, &url)),
            )
            .await
        }
    };
    // The provider accepts and calls back before the worker has recorded its answer.
    let early = send().await;
    let now = Millis::now();
    let worker = app.store.register_worker().await.expect("worker");
    let claimed = app
        .store
        .claim_deliveries(worker, now, 60_000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let reply = callback(early, "SMearly", "delivered").await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(
        outbox_row(&app, early).await,
        ("delivered".into(), Some("SMearly".into()), None)
    );
    // The worker saw a timeout: no second send is scheduled, the status stays.
    app.store
        .finish_delivery(
            worker,
            early,
            Attempt::Retry {
                error: "the provider timed out".into(),
                at: now,
            },
        )
        .await
        .expect("finish");
    assert_eq!(
        outbox_row(&app, early).await,
        ("delivered".into(), Some("SMearly".into()), None)
    );
    let later = Millis(now.0 + 10 * 60_000);
    assert!(
        app.store
            .claim_deliveries(worker, later, 60_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );

    // A timeout recorded first, then the callback proving the provider has it: no resend.
    let late = send().await;
    app.store
        .claim_deliveries(worker, Millis::now(), 60_000, 10)
        .await
        .expect("claim");
    app.store
        .finish_delivery(
            worker,
            late,
            Attempt::Retry {
                error: "the provider timed out".into(),
                at: Millis::now(),
            },
        )
        .await
        .expect("finish");
    assert_eq!(callback(late, "SMlate", "sent").await.status.as_u16(), 200);
    assert_eq!(
        outbox_row(&app, late).await,
        ("sent".into(), Some("SMlate".into()), None)
    );
    assert!(
        app.store
            .claim_deliveries(worker, later, 60_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    // A callback naming another delivery's provider id keeps both records intact.
    let third = send().await;
    assert_eq!(callback(third, "SMlate", "sent").await.status.as_u16(), 200);
    assert_eq!(outbox_row(&app, third).await.1, None);

    assert_eq!(callback(9_999, "SMx", "sent").await.status.as_u16(), 404);
    let path = "/sms/status?delivery=abc";
    let reply = app
        .post_twilio(
            path,
            &[("MessageSid", "SMx"), ("MessageStatus", "sent")],
            Some((TOKEN, &format!("{PUBLIC}{path}"))),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 400);
    assert!(
        reply.text.contains("delivery query parameter"),
        "{}",
        reply.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inbound_loses_and_duplicates_nothing() {
    let app = std::sync::Arc::new(app().await);
    let url = format!("{PUBLIC}/sms/inbound");
    let mut tasks = Vec::new();
    // 60 replies on one conversation, 40 from new numbers, and every MessageSid sent twice.
    for i in 0..100 {
        for _copy in 0..2 {
            let (app, url) = (app.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let from = if i < 60 {
                    "+15163042196".to_string()
                } else {
                    format!("+1202555{:04}", i)
                };
                let body = format!("message {i}");
                let sid = format!("SMconc{i}");
                let reply = app
                    .post_twilio(
                        "/sms/inbound",
                        &[
                            ("From", &from),
                            ("To", "+15551230000"),
                            ("Body", &body),
                            ("MessageSid", &sid),
                        ],
                        Some((TOKEN, &url)),
                    )
                    .await;
                assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
    let conversations = app.conversations(1, 10).await;
    let ours = |m: &&convo_core::Message| m.body.starts_with("message ");
    let messages: Vec<&convo_core::Message> = conversations
        .iter()
        .flat_map(|c| c.messages.iter())
        .filter(ours)
        .collect();
    let stored = messages.len();
    assert_eq!(stored, 100);
    let mut bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    bodies.dedup();
    let distinct = bodies.len();
    assert_eq!(distinct, 100);
    // One conversation per new number, one new patient each; Ana's 60 in conversation 1000.
    let in_1000 = messages
        .iter()
        .filter(|m| m.conversation_id == 1000)
        .count();
    assert_eq!(in_1000, 60);
    let non_patients = conversations
        .iter()
        .filter(|c| c.patient.bio.contains(r#""non_patient":true"#))
        .count();
    assert_eq!(non_patients, 40);
    // Ids follow arrival: within a conversation, newer id never means older time.
    let disorder = conversations
        .iter()
        .flat_map(|c| {
            c.messages.iter().flat_map(move |a| {
                c.messages
                    .iter()
                    .filter(move |b| a.id < b.id && a.created_at > b.created_at)
            })
        })
        .count();
    assert_eq!(disorder, 0);
    // The list agrees: conversation 1000's activity is its newest message.
    let list = app
        .list(&format!("{SCOPE}&per_page=100&messages=1"))
        .await
        .ok_list();
    assert_eq!(list["count"], 44);
    for c in list["data"].as_array().expect("data") {
        if c["messages"][0]["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("message "))
        {
            assert_eq!(c["updated_at"], c["messages"][0]["created_at"], "{c}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_from_many_sockets_at_once_is_all_stored() {
    use std::io::{Read, Write};
    let app = app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(convo_server::serve(
        listener,
        app.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let url = format!("{PUBLIC}/sms/inbound");
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..10 {
                    let params: Vec<(String, String)> = [
                        ("From", "+15163042196".to_string()),
                        ("To", "+15551230000".to_string()),
                        ("Body", format!("socket {c}-{i}")),
                        ("MessageSid", format!("SMsock{c}x{i}")),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                    let body = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(params.iter())
                        .finish();
                    let signature = convo_server::twilio::signature(TOKEN, &url, &params);
                    let mut s = std::net::TcpStream::connect(addr).expect("connect");
                    write!(
                        s,
                        "POST /sms/inbound HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .expect("write");
                    let mut answer = String::new();
                    s.read_to_string(&mut answer).expect("read");
                    statuses.push(answer.lines().next().unwrap_or("").to_string());
                }
                statuses
            })
        })
        .collect();
    for client in clients {
        let statuses = tokio::task::spawn_blocking(move || client.join().expect("client"))
            .await
            .expect("join");
        assert!(
            statuses.iter().all(|s| s == "HTTP/1.1 200 OK"),
            "{statuses:?}"
        );
    }
    let thread = app
        .conversations(1, 10)
        .await
        .into_iter()
        .find(|c| c.id == 1000)
        .expect("conversation 1000");
    let mut bodies: Vec<&str> = thread
        .messages
        .iter()
        .map(|m| m.body.as_str())
        .filter(|b| b.starts_with("socket "))
        .collect();
    bodies.sort_unstable();
    bodies.dedup();
    let stored = bodies.len();
    assert_eq!(stored, 80);
    let _ = stop.send(());
    server.await.expect("server").expect("serve");
}

fn keyed_send(token: &str, key: &str, body: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post(format!("/messages?{SCOPE}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(axum::body::Body::from(body.to_string()))
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_send_with_its_idempotency_key_texts_once() {
    let app = app().await;
    let body = send_body(100, 5, "Your crown is ready");
    let first = app.send(keyed_send(&app.token, "send-7f3a", &body)).await;
    assert_eq!(first.status.as_u16(), 201, "{}", first.text);
    let written = app.snapshot().await;
    // The client never saw the answer and retries, several times at once.
    let mut retries = Vec::new();
    for _ in 0..8 {
        let router = app.router.clone();
        let req = keyed_send(&app.token, "send-7f3a", &body);
        retries.push(tokio::spawn(async move {
            use tower::ServiceExt;
            router.oneshot(req).await.expect("infallible").status()
        }));
    }
    for r in retries {
        assert_eq!(r.await.expect("join").as_u16(), 201);
    }
    let again = app.send(keyed_send(&app.token, "send-7f3a", &body)).await;
    assert_eq!(
        again.json()["data"],
        first.json()["data"],
        "the first message"
    );
    assert_eq!(
        app.snapshot().await,
        written,
        "nothing written by the retries"
    );

    // The same key for a different message is a client bug: 400, nothing written.
    let other = app
        .send(keyed_send(
            &app.token,
            "send-7f3a",
            &send_body(100, 5, "Something else"),
        ))
        .await;
    assert_eq!(
        other.errors(400),
        ["Idempotency-Key was already used for a different message"]
    );
    assert_eq!(app.snapshot().await, written);

    // Keys belong to their API key: another key's identical string is a new send.
    let key = app
        .store
        .create_api_key(&["acme".into()])
        .await
        .expect("key");
    let token = app.state.tokens.issue(key.id).expect("token");
    let theirs = app.send(keyed_send(&token, "send-7f3a", &body)).await;
    assert_eq!(theirs.status.as_u16(), 201);
    assert_ne!(theirs.json()["data"]["id"], first.json()["data"]["id"]);

    for bad in ["", "has space", &"k".repeat(256)] {
        let reply = app.send(keyed_send(&app.token, bad, &body)).await;
        assert_eq!(
            reply.errors(400),
            ["Idempotency-Key must be 1 to 255 visible ASCII characters"],
            "{bad:?}"
        );
    }
}
