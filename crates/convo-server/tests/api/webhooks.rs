//! Message webhooks through the real router and worker (CONTRACT §8): the management routes
//! with NexHealth's shapes and statuses, target rules, signed deliveries of real writes to a
//! receiver on loopback (checked by Python too), and the retry schedule under a clock moved by
//! hand: NexHealth's offsets, deactivation, 410, redirects, time limits and `Retry-After`.

use crate::common::receiver::{Answer, ManualClock, Receiver, verified_in_python};
use crate::common::{Reply, TestApp, keys, owners_share_the_database};
use axum::body::Body;
use axum::http::Request;
use convo_core::Millis;
use convo_core::webhook::WebhookStatus;
use convo_server::ApiConfig;
use convo_server::webhooks::address::Cidr;
use convo_server::webhooks::attempt::Rules;
use convo_server::webhooks::schedule::RETRY_OFFSETS_S;
use convo_server::webhooks::sign::{Received, verify};
use convo_server::webhooks::worker::{Clock, SystemClock, WebhookPolicy, Worker};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Deliveries may go to loopback over plain http, as in the demo.
fn loopback(timeout: Duration) -> ApiConfig {
    ApiConfig {
        webhooks: Rules {
            allow: Arc::from(vec!["127.0.0.1/32".parse::<Cidr>().expect("cidr")]),
            allow_http: true,
            timeout,
        },
        ..ApiConfig::default()
    }
}

async fn call(app: &TestApp, method: &str, uri: &str, body: Option<&str>) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", app.token));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    app.send(
        req.body(Body::from(body.unwrap_or_default().to_string()))
            .expect("request"),
    )
    .await
}

fn data(reply: &Reply, status: u16) -> Value {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
    let v = reply.json();
    assert_eq!(v["code"], true, "{}", reply.text);
    v["data"].clone()
}

/// An endpoint for `url` subscribed to both events of `acme`: its id and secret.
async fn subscribed(app: &TestApp, url: &str) -> (i64, String) {
    let made = data(
        &call(
            app,
            "POST",
            "/webhook_endpoints",
            Some(&json!({ "target_url": url }).to_string()),
        )
        .await,
        201,
    );
    let id = made["id"].as_i64().expect("id");
    for event in ["message_created", "message_updated"] {
        data(
            &call(
                app,
                "POST",
                &format!("/webhook_endpoints/{id}/webhook_subscriptions?subdomain=acme"),
                Some(&json!({ "resource_type": "Message", "event": event }).to_string()),
            )
            .await,
            201,
        );
    }
    (id, made["secret_key"].as_str().expect("secret").to_string())
}

/// The tests' worker policy: quick to notice, and a clock moved by days must not make the
/// worker's own live claims look abandoned.
fn test_policy() -> WebhookPolicy {
    WebhookPolicy {
        idle_ms: 20,
        stale_owner_ms: i64::MAX / 4,
        stop_grace_ms: 2_000,
        ..WebhookPolicy::default()
    }
}

/// A worker on `app`'s store with its own claim owner, stopped when the sender drops.
async fn worker(app: &TestApp, clock: Arc<dyn Clock>) -> tokio::sync::oneshot::Sender<()> {
    worker_with(app, clock, test_policy()).await
}

async fn worker_with(
    app: &TestApp,
    clock: Arc<dyn Clock>,
    policy: WebhookPolicy,
) -> tokio::sync::oneshot::Sender<()> {
    let owner = app.store.register_worker().await.expect("owner");
    let w = Worker::new(
        app.store.clone(),
        owner,
        app.state.config.webhooks.clone(),
        app.state.webhooks.clone(),
        clock,
        policy,
    )
    .expect("worker");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(w.run(async move {
        let _ = stopped.await;
    }));
    stop
}

async fn send(app: &TestApp, body: &str) -> Value {
    data(
        &app.post_json(
            "/messages?subdomain=acme&location_id=10",
            &json!({"message": {"patient_id": 100, "user_id": 5, "body": body}}).to_string(),
        )
        .await,
        201,
    )
}

/// Waits until `n` attempts are recorded (the worker records after the receiver answered).
async fn attempts_recorded(app: &TestApp, n: usize) {
    for _ in 0..1_000 {
        let got = app
            .store
            .list_webhook_attempts(None, None, 1_000)
            .await
            .expect("attempts");
        if got.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} attempts were not recorded");
}

async fn endpoint_active(app: &TestApp) -> bool {
    let list = call(app, "GET", "/webhook_endpoints", None).await;
    list.ok_list()["data"][0]["active"]
        .as_bool()
        .expect("active")
}

#[tokio::test]
async fn endpoints_are_managed_with_nexhealths_routes_and_shapes() {
    let app = TestApp::new().await;
    let made = call(
        &app,
        "POST",
        "/webhook_endpoints",
        Some(r#"{"target_url":"https://hooks.example.com/convo"}"#),
    )
    .await;
    let e = data(&made, 201);
    assert_eq!(made.json()["description"], "Created");
    assert_eq!(
        keys(&e),
        [
            "id",
            "target_url",
            "secret_key",
            "active",
            "created_at",
            "updated_at"
        ]
    );
    assert_eq!(e["target_url"], "https://hooks.example.com/convo");
    assert_eq!(e["active"], true);
    let secret = e["secret_key"].as_str().expect("secret");
    let raw = secret.strip_prefix("whsec_").expect("whsec_ prefix");
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, raw)
            .expect("base64")
            .len(),
        32
    );
    let id = e["id"].as_i64().expect("id");
    let list = call(&app, "GET", "/webhook_endpoints", None).await;
    assert_eq!(list.ok_list()["count"], 1);
    assert_eq!(list.ok_list()["data"][0], e, "secret_key on every answer");
    let inactive = call(&app, "GET", "/webhook_endpoints?active=false", None).await;
    assert_eq!(inactive.ok_list()["count"], 0);
    assert_eq!(
        call(&app, "GET", "/webhook_endpoints?active=maybe", None)
            .await
            .errors(400),
        ["active must be true or false"]
    );
    let off = data(
        &call(
            &app,
            "PATCH",
            &format!("/webhook_endpoints/{id}"),
            Some(r#"{"active":false}"#),
        )
        .await,
        200,
    );
    assert_eq!(
        (off["active"].clone(), off["target_url"].clone()),
        (json!(false), e["target_url"].clone())
    );
    assert_eq!(
        call(
            &app,
            "PATCH",
            &format!("/webhook_endpoints/{id}"),
            Some(r#"{"target_url":"http://hooks.example.com/"}"#),
        )
        .await
        .errors(400),
        ["target_url must use https"]
    );
    assert_eq!(
        call(&app, "PATCH", "/webhook_endpoints/999", Some("{}"))
            .await
            .errors(404),
        ["no webhook endpoint has id 999"]
    );
    assert_eq!(
        call(
            &app,
            "POST",
            "/webhook_endpoints",
            Some(r#"{"active":true,"url":"x"}"#)
        )
        .await
        .status
        .as_u16(),
        400
    );
    assert_eq!(
        call(&app, "POST", "/webhook_endpoints", Some("{}"))
            .await
            .errors(400),
        ["target_url is missing"]
    );
    // Another key's endpoint is not there for this key.
    let other = app
        .store
        .create_api_key(&["acme".to_string()])
        .await
        .expect("key");
    let theirs = app
        .store
        .create_endpoint(
            other.id,
            "https://elsewhere.example.com",
            "whsec_AAAA",
            true,
        )
        .await
        .expect("endpoint");
    for (method, path) in [
        ("PATCH", format!("/webhook_endpoints/{}", theirs.id)),
        ("DELETE", format!("/webhook_endpoints/{}", theirs.id)),
        (
            "GET",
            format!("/webhook_endpoints/{}/webhook_subscriptions", theirs.id),
        ),
    ] {
        let body = (method == "PATCH").then_some(r#"{"active":false}"#);
        assert_eq!(
            call(&app, method, &path, body).await.status.as_u16(),
            404,
            "{method} {path}"
        );
    }
    assert_eq!(
        call(&app, "GET", "/webhook_endpoints", None)
            .await
            .ok_list()["count"],
        1
    );
    // Deleted: 204 and no body; then gone.
    let gone = call(&app, "DELETE", &format!("/webhook_endpoints/{id}"), None).await;
    assert_eq!((gone.status.as_u16(), gone.text.as_str()), (204, ""));
    assert_eq!(
        call(&app, "DELETE", &format!("/webhook_endpoints/{id}"), None)
            .await
            .status
            .as_u16(),
        404
    );
    // No token: 401 before anything else; a revoked key too, before a 400.
    let anonymous = app
        .send(
            Request::get("/webhook_endpoints")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    anonymous.errors(401);
    app.store.revoke_api_key(app.key_id).await.expect("revoke");
    call(&app, "POST", "/webhook_endpoints", Some("{}"))
        .await
        .errors(401);
}

#[tokio::test]
async fn subscriptions_belong_to_one_institution_of_the_key() {
    let app = TestApp::new().await;
    let e = data(
        &call(
            &app,
            "POST",
            "/webhook_endpoints",
            Some(r#"{"target_url":"https://hooks.example.com/convo"}"#),
        )
        .await,
        201,
    );
    let id = e["id"].as_i64().expect("id");
    let path = format!("/webhook_endpoints/{id}/webhook_subscriptions");
    let made = call(
        &app,
        "POST",
        &format!("{path}?subdomain=ACME"),
        Some(r#"{"resource_type":"Message","event":"message_created"}"#),
    )
    .await;
    let s = data(&made, 201);
    assert_eq!(
        keys(&s),
        [
            "id",
            "webhook_endpoint_id",
            "institution_id",
            "resource_type",
            "event",
            "active",
            "created_at",
            "updated_at"
        ]
    );
    assert_eq!(
        (
            &s["webhook_endpoint_id"],
            &s["institution_id"],
            &s["resource_type"],
            &s["event"],
            &s["active"]
        ),
        (
            &json!(id),
            &json!(1),
            &json!("Message"),
            &json!("message_created"),
            &json!(true)
        )
    );
    let sid = s["id"].as_i64().expect("id");
    // Every 400 at once, before the subdomain's 403.
    assert_eq!(
        call(
            &app,
            "POST",
            &path,
            Some(r#"{"resource_type":"Patient","event":"patient_created"}"#)
        )
        .await
        .errors(400),
        [
            "subdomain is missing",
            "resource_type must be Message",
            "event must be message_created or message_updated"
        ]
    );
    assert_eq!(
        call(
            &app,
            "POST",
            &format!("{path}?subdomain=other"),
            Some(r#"{"resource_type":"Message","event":"message_updated"}"#)
        )
        .await
        .errors(403),
        ["This API key may not access subdomain other"]
    );
    assert_eq!(
        call(
            &app,
            "POST",
            "/webhook_endpoints/999/webhook_subscriptions?subdomain=acme",
            Some(r#"{"resource_type":"Message","event":"message_updated"}"#)
        )
        .await
        .errors(404),
        ["no webhook endpoint has id 999"]
    );
    let listed = call(
        &app,
        "GET",
        &format!("{path}?subdomain=acme&event=message_created"),
        None,
    )
    .await;
    assert_eq!(listed.ok_list()["count"], 1);
    assert_eq!(listed.ok_list()["data"][0], s);
    assert_eq!(
        call(&app, "GET", &format!("{path}?event=patient_created"), None)
            .await
            .errors(400),
        ["event must be message_created or message_updated"]
    );
    call(&app, "GET", &format!("{path}?subdomain=other"), None)
        .await
        .errors(403);
    let off = data(
        &call(
            &app,
            "PATCH",
            &format!("{path}/{sid}?subdomain=acme"),
            Some(r#"{"active":false}"#),
        )
        .await,
        200,
    );
    assert_eq!(off["active"], false);
    assert_eq!(
        call(
            &app,
            "PATCH",
            &format!("{path}/{sid}?subdomain=acme"),
            Some(r#"{"new_endpoint_id":999}"#)
        )
        .await
        .errors(404),
        ["no webhook endpoint has id 999"]
    );
    assert_eq!(
        call(
            &app,
            "PATCH",
            &format!("{path}/77?subdomain=acme"),
            Some("{}")
        )
        .await
        .errors(404),
        ["no webhook subscription has id 77"]
    );
    let gone = call(&app, "DELETE", &format!("{path}/{sid}"), None).await;
    assert_eq!((gone.status.as_u16(), gone.text.as_str()), (204, ""));
    assert_eq!(
        call(&app, "DELETE", &format!("{path}/{sid}"), None)
            .await
            .errors(404),
        [format!("no webhook subscription has id {sid}")]
    );
}

#[tokio::test]
async fn targets_that_are_not_global_are_refused_in_every_spelling() {
    let app = TestApp::new().await;
    let not_global = "target_url's host is not a global address";
    for (url, why) in [
        ("https://127.0.0.1/hook", not_global),
        ("https://2130706433/hook", not_global),
        ("https://0x7f.1/hook", not_global),
        ("https://0177.0.0.1/hook", not_global),
        ("https://[::1]/hook", not_global),
        ("https://[::ffff:127.0.0.1]/hook", not_global),
        ("https://[::ffff:a9fe:a9fe]/hook", not_global),
        ("https://10.1.2.3/hook", not_global),
        ("https://172.16.0.1/hook", not_global),
        ("https://192.168.1.1/hook", not_global),
        ("https://169.254.169.254/latest/meta-data", not_global),
        ("https://100.64.0.1/hook", not_global),
        ("https://0.0.0.0/hook", not_global),
        ("https://224.0.0.1/hook", not_global),
        ("https://[fe80::1]/hook", not_global),
        ("https://[fc00::1]/hook", not_global),
        ("https://localhost/hook", not_global),
        ("https://api.localhost/hook", not_global),
        ("http://hooks.example.com/", "target_url must use https"),
        ("ftp://hooks.example.com/", "target_url must use https"),
        (
            "https://user:pw@hooks.example.com/",
            "target_url must not carry a user name or password",
        ),
        (
            "hooks.example.com/hook",
            "target_url must be an absolute URL",
        ),
    ] {
        let reply = call(
            &app,
            "POST",
            "/webhook_endpoints",
            Some(&json!({ "target_url": url }).to_string()),
        )
        .await;
        assert_eq!(reply.errors(400), [why], "{url}");
    }
    assert_eq!(
        call(&app, "GET", "/webhook_endpoints", None)
            .await
            .ok_list()["count"],
        0
    );
    // Allowed networks and plain http are the server's choice.
    let allowed = TestApp::with_config(loopback(Duration::from_secs(1))).await;
    data(
        &call(
            &allowed,
            "POST",
            "/webhook_endpoints",
            Some(r#"{"target_url":"http://127.0.0.1:9/hook"}"#),
        )
        .await,
        201,
    );
    assert_eq!(
        call(
            &allowed,
            "POST",
            "/webhook_endpoints",
            Some(r#"{"target_url":"http://10.0.0.1/hook"}"#),
        )
        .await
        .errors(400),
        [not_global]
    );
}

#[tokio::test]
async fn a_send_a_seen_and_a_reply_arrive_signed_and_verified_by_python() {
    let app = TestApp::with_config(loopback(Duration::from_secs(5))).await;
    let receiver = Receiver::start(204).await;
    let (_, secret) = subscribed(&app, &receiver.url).await;
    let _stop = worker(&app, Arc::new(SystemClock::default())).await;
    let sent = send(&app, "Your crown is ready \"today\" 😀").await;
    app.state.webhook_wakeup();
    let seen = data(
        &app.post_json(
            &format!(
                "/messages/{}/seen?subdomain=acme&location_id=10",
                sent["id"]
            ),
            r#"{"user_id":6}"#,
        )
        .await,
        200,
    );
    app.state.webhook_wakeup();
    let reply = app
        .store
        .receive_sms(convo_core::write::InboundSms {
            to: "+15551230000".into(),
            from: "+15163042196".into(),
            body: "On my way".into(),
            sid: "SM-webhooks-1".into(),
            media: None,
        })
        .await
        .expect("inbound");
    app.state.webhook_wakeup();
    let got = receiver.wait_for(3).await;
    attempts_recorded(&app, 3).await;
    let mut bodies = Vec::new();
    for g in &got {
        assert_eq!(g.path, "/hook");
        assert_eq!(g.header("content-type"), "application/json");
        assert!(g.header("user-agent").starts_with("convo/"));
        let received = Received {
            timestamp: Some(g.header("timestamp")),
            signature: Some(g.header("signature")),
            webhook_id: Some(g.header("webhook-id")),
            webhook_timestamp: Some(g.header("webhook-timestamp")),
            webhook_signature: Some(g.header("webhook-signature")),
        };
        verify(&secret, &received, &g.body, Millis::now().0 / 1000).expect("our verifier");
        verified_in_python(&secret, g).expect("Python's verifiers");
        let v = g.json();
        assert_eq!(
            keys(&v),
            [
                "resource_type",
                "event_name",
                "event_time",
                "subdomain",
                "institution_id",
                "data",
                "delivery_errors",
                "event_id"
            ]
        );
        assert_eq!(v["event_id"], g.header("webhook-id"));
        assert_eq!(
            (&v["resource_type"], &v["subdomain"], &v["institution_id"]),
            (&json!("Message"), &json!("acme"), &json!(1))
        );
        assert_eq!(v["delivery_errors"], json!([]));
        bodies.push(v);
    }
    let by = |name: &str, id: &Value| {
        bodies
            .iter()
            .find(|b| b["event_name"] == name && &b["data"]["messages"][0]["id"] == id)
            .unwrap_or_else(|| panic!("no {name} of message {id}"))
            .clone()
    };
    let created = by("message_created", &sent["id"]);
    let m = &created["data"]["messages"][0];
    // The §3 message object as the send answered it, then where it belongs and its delivery.
    let mut message_keys: Vec<&str> = keys(&sent);
    message_keys.extend(["location_id", "patient_id", "delivery"]);
    assert_eq!(keys(m), message_keys);
    for k in keys(&sent) {
        assert_eq!(m[k], sent[k], "{k}");
    }
    assert_eq!(
        (&m["location_id"], &m["patient_id"]),
        (&json!(10), &json!(100))
    );
    assert_eq!(
        m["delivery"],
        json!({"status": "queued", "error_code": null})
    );
    let updated = by("message_updated", &sent["id"]);
    assert_eq!(updated["data"]["messages"][0]["seen_by"], seen["seen_by"]);
    let inbound = by("message_created", &json!(reply.message_id));
    let m = &inbound["data"]["messages"][0];
    assert_eq!(
        (&m["body"], &m["delivery"]),
        (&json!("On my way"), &Value::Null)
    );
}

/// A receiver that always fails sees NexHealth's schedule (here at the early edge of its
/// jitter, −10 %), then the endpoint goes inactive and gets nothing more.
#[tokio::test]
async fn an_always_failing_receiver_sees_the_schedule_then_is_deactivated() {
    let app = TestApp::with_config(loopback(Duration::from_secs(5))).await;
    let receiver = Receiver::start(500).await;
    subscribed(&app, &receiver.url).await;
    let t0 = Millis(Millis::now().0 + 1_000);
    let clock = ManualClock::new(t0, -1.0);
    let _stop = worker(&app, clock.clone()).await;
    send(&app, "are you there?").await;
    for i in 0..=RETRY_OFFSETS_S.len() {
        app.state.webhook_wakeup();
        let got = receiver.wait_for(i + 1).await;
        attempts_recorded(&app, i + 1).await;
        let at: i64 = got[i].header("webhook-timestamp").parse().expect("seconds");
        assert_eq!(
            at,
            clock.now().0 / 1000,
            "attempt {} signed at its time",
            i + 1
        );
        let errors = got[i].json()["delivery_errors"]
            .as_array()
            .expect("errors")
            .len();
        assert_eq!(
            errors,
            i.min(10),
            "attempt {} carries the earlier errors",
            i + 1
        );
        let next = app.store.next_webhook_at().await.expect("next");
        match RETRY_OFFSETS_S.get(i) {
            Some(offset) => {
                let next = next.expect("a retry is scheduled");
                assert_eq!(next.0 - t0.0, offset * 900, "retry {}", i + 1);
                clock.set(next);
            }
            None => assert_eq!(next, None, "the schedule is spent"),
        }
    }
    assert!(!endpoint_active(&app).await, "a spent schedule deactivates");
    send(&app, "anyone?").await;
    clock.set(Millis(clock.now().0 + 86_400_000));
    app.state.webhook_wakeup();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.got().len(), RETRY_OFFSETS_S.len() + 1);
    assert_eq!(
        app.store
            .webhook_stats(clock.now(), i64::MAX / 4)
            .await
            .expect("stats")
            .pending,
        0,
        "nothing is queued for an inactive endpoint"
    );
}

/// A success in between resets the 48 hours: an endpoint that fails before and after one is
/// still active when the failures started 48 hours earlier.
#[tokio::test]
async fn a_success_mid_way_resets_the_failing_clock() {
    let app = TestApp::with_config(loopback(Duration::from_secs(5))).await;
    let receiver = Receiver::start(500).await;
    subscribed(&app, &receiver.url).await;
    let hour = 3_600_000;
    let t0 = Millis(Millis::now().0 + 1_000);
    let clock = ManualClock::new(t0, 0.0);
    let _stop = worker(&app, clock.clone()).await;
    send(&app, "first").await;
    app.state.webhook_wakeup();
    receiver.wait_for(1).await;
    attempts_recorded(&app, 1).await;
    // 47 hours on: every retry up to 24 h is overdue and fails at once; the next is at 48 h.
    clock.set(Millis(t0.0 + 47 * hour));
    app.state.webhook_wakeup();
    receiver.wait_for(10).await;
    attempts_recorded(&app, 10).await;
    assert!(endpoint_active(&app).await);
    receiver.answer(|_| Answer::status(200));
    send(&app, "second").await;
    app.state.webhook_wakeup();
    receiver.wait_for(11).await;
    attempts_recorded(&app, 11).await;
    receiver.answer(|_| Answer::status(500));
    // 48 h after the first failure: the first message's last attempt fails; without the
    // success in between this is 48 hours of failure.
    clock.set(Millis(t0.0 + 48 * hour));
    app.state.webhook_wakeup();
    receiver.wait_for(12).await;
    attempts_recorded(&app, 12).await;
    assert_eq!(app.store.next_webhook_at().await.expect("next"), None);
    assert!(
        endpoint_active(&app).await,
        "the success reset the 48 hours"
    );
}

#[tokio::test]
async fn a_410_deactivates_at_once() {
    let app = TestApp::with_config(loopback(Duration::from_secs(5))).await;
    let receiver = Receiver::start(410).await;
    subscribed(&app, &receiver.url).await;
    let _stop = worker(&app, Arc::new(SystemClock::default())).await;
    send(&app, "gone?").await;
    app.state.webhook_wakeup();
    receiver.wait_for(1).await;
    attempts_recorded(&app, 1).await;
    assert!(!endpoint_active(&app).await);
    let attempts = app
        .store
        .list_webhook_attempts(None, Some(WebhookStatus::Failed), 10)
        .await
        .expect("attempts");
    assert_eq!(
        (attempts[0].http_status, attempts[0].error.as_deref()),
        (Some(410), Some("HTTP 410"))
    );
    assert_eq!(app.store.next_webhook_at().await.expect("next"), None);
    // Re-activated, it gets new events again.
    receiver.answer(|_| Answer::status(204));
    let id = call(&app, "GET", "/webhook_endpoints", None).await.ids()[0];
    data(
        &call(
            &app,
            "PATCH",
            &format!("/webhook_endpoints/{id}"),
            Some(r#"{"active":true}"#),
        )
        .await,
        200,
    );
    send(&app, "back?").await;
    app.state.webhook_wakeup();
    receiver.wait_for(2).await;
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let app = TestApp::with_config(loopback(Duration::from_secs(5))).await;
    let receiver = Receiver::scripted(|_| Answer {
        status: 302,
        headers: vec![("location", "/elsewhere".into())],
        delay: Duration::ZERO,
    })
    .await;
    subscribed(&app, &receiver.url).await;
    let clock = ManualClock::new(Millis(Millis::now().0 + 1_000), 0.0);
    let _stop = worker(&app, clock.clone()).await;
    send(&app, "moved?").await;
    app.state.webhook_wakeup();
    receiver.wait_for(1).await;
    attempts_recorded(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = receiver.got();
    assert_eq!(got.len(), 1, "not followed");
    assert_eq!(got[0].path, "/hook");
    let attempts = app
        .store
        .list_webhook_attempts(None, None, 10)
        .await
        .expect("attempts");
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 302"));
    assert!(
        app.store.next_webhook_at().await.expect("next").is_some(),
        "retried"
    );
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_is_retried() {
    let app = TestApp::with_config(loopback(Duration::from_secs(1))).await;
    let receiver = Receiver::scripted(|n| Answer {
        status: 204,
        headers: Vec::new(),
        delay: if n == 0 {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        },
    })
    .await;
    subscribed(&app, &receiver.url).await;
    let t0 = Millis(Millis::now().0 + 1_000);
    let clock = ManualClock::new(t0, 0.0);
    let _stop = worker(&app, clock.clone()).await;
    send(&app, "slow?").await;
    app.state.webhook_wakeup();
    receiver.wait_for(1).await;
    attempts_recorded(&app, 1).await;
    let attempts = app
        .store
        .list_webhook_attempts(None, None, 10)
        .await
        .expect("attempts");
    assert_eq!(attempts[0].error.as_deref(), Some("timed out after 1 s"));
    let next = app
        .store
        .next_webhook_at()
        .await
        .expect("next")
        .expect("a retry");
    assert_eq!(next.0 - t0.0, 30_000);
    clock.set(next);
    app.state.webhook_wakeup();
    let got = receiver.wait_for(2).await;
    attempts_recorded(&app, 2).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(
        got[1].json()["delivery_errors"],
        json!(["timed out after 1 s"])
    );
    assert_eq!(
        app.store.next_webhook_at().await.expect("next"),
        None,
        "delivered"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_when_it_asks_for_later() {
    let app = TestApp::with_config(loopback(Duration::from_secs(5))).await;
    let receiver = Receiver::scripted(|_| Answer {
        status: 503,
        headers: vec![("retry-after", "120".into())],
        delay: Duration::ZERO,
    })
    .await;
    subscribed(&app, &receiver.url).await;
    let t0 = Millis(Millis::now().0 + 1_000);
    let clock = ManualClock::new(t0, 0.0);
    let _stop = worker(&app, clock.clone()).await;
    send(&app, "busy?").await;
    app.state.webhook_wakeup();
    receiver.wait_for(1).await;
    attempts_recorded(&app, 1).await;
    let next = app
        .store
        .next_webhook_at()
        .await
        .expect("next")
        .expect("a retry");
    assert_eq!(next.0 - t0.0, 120_000, "120 s asked, not the schedule's 30");
}

/// A subscribed receiver that answers 204 after `delay_ms`, and `sends` staff sends queued for
/// it before any worker runs: the app, the receiver, the endpoint's id.
async fn slow_receiver_with_sends(delay_ms: u64, sends: usize) -> (TestApp, Receiver, i64) {
    let app = TestApp::with_config(loopback(Duration::from_secs(5))).await;
    let receiver = Receiver::scripted(move |_| Answer {
        status: 204,
        headers: Vec::new(),
        delay: Duration::from_millis(delay_ms),
    })
    .await;
    let (ep, _) = subscribed(&app, &receiver.url).await;
    for i in 0..sends {
        send(&app, &format!("waiting {i}")).await;
    }
    (app, receiver, ep)
}

#[tokio::test]
async fn at_most_four_attempts_are_in_flight_to_an_endpoint_across_workers() {
    let (app, receiver, _) = slow_receiver_with_sends(150, 16).await;
    // Each worker holds up to 256 claims of an endpoint, yet 4 attempts at most are out at once. Where the
    // engine lets several processes share a database, two workers with owners of their own,
    // as two server processes have: one of them leases the endpoint.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let _a = worker(&app, clock.clone()).await;
    let _b = if owners_share_the_database() {
        Some(worker(&app, clock).await)
    } else {
        None
    };
    app.state.webhook_wakeup();
    receiver.wait_for(16).await;
    attempts_recorded(&app, 16).await;
    assert_eq!(
        receiver.most_at_once(),
        4,
        "four slots, all used, never more"
    );
    let ids: std::collections::HashSet<String> = receiver
        .got()
        .iter()
        .map(|g| g.header("webhook-id").to_string())
        .collect();
    assert_eq!(ids.len(), 16, "each event once");
    // The worker's trips and its lanes are in /metrics.
    let metrics = app
        .send(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    for name in ["convo_webhook_trip_seconds_count", "convo_webhook_queued"] {
        assert!(
            metrics.text.contains(name),
            "{name} missing:\n{}",
            metrics.text
        );
    }
}

#[tokio::test]
async fn queued_deliveries_of_a_deleted_subscription_are_not_sent() {
    // The receiver takes a second per request: the deletes below have that long to commit.
    let (app, receiver, ep) = slow_receiver_with_sends(1_000, 12).await;
    // One claim takes all 12: 4 go out, 8 wait in the endpoint's lane, checked again before
    // they start once they have waited 100 ms.
    let policy = WebhookPolicy {
        recheck_after_ms: 100,
        ..test_policy()
    };
    let _stop = worker_with(&app, Arc::new(SystemClock::default()), policy).await;
    app.state.webhook_wakeup();
    receiver.wait_for(1).await;
    let subs = call(
        &app,
        "GET",
        &format!("/webhook_endpoints/{ep}/webhook_subscriptions"),
        None,
    )
    .await;
    for s in subs.ok_list()["data"].as_array().expect("subscriptions") {
        let id = s["id"].as_i64().expect("id");
        let gone = call(
            &app,
            "DELETE",
            &format!("/webhook_endpoints/{ep}/webhook_subscriptions/{id}"),
            None,
        )
        .await;
        assert_eq!(gone.status.as_u16(), 204);
    }
    // The four out end at 1 s (their attempts are not recorded: their deliveries went with
    // the subscription); the next four would start then, and arrive at once.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(receiver.got().len(), 4, "only those already out");
    let stats = app
        .store
        .webhook_stats(Millis::now(), 60_000)
        .await
        .expect("stats");
    assert_eq!((stats.pending, stats.claimed), (0, 0), "nothing left held");
}
