//! Operations endpoints (CONTRACT §9): `/healthz`, `/readyz` (503 with the envelope when the
//! database cannot be read or its schema is not this build's) and `/metrics` (Prometheus text
//! with nothing from the data in it).

use crate::common::{TestApp, engine, faults};
use axum::body::Body;
use axum::http::Request;
use convo_core::{Refusal, StoreError};
use convo_server::ApiConfig;
use std::collections::BTreeSet;

async fn get_plain(app: &TestApp, uri: &str) -> crate::common::Reply {
    app.send(Request::get(uri).body(Body::empty()).expect("request"))
        .await
}

#[tokio::test]
async fn healthz_and_readyz_need_no_token() {
    let app = TestApp::new().await;
    let reply = get_plain(&app, "/healthz").await;
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(reply.text, r#"{"status":"ok"}"#);
    let reply = get_plain(&app, "/readyz").await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(reply.text, r#"{"status":"ready"}"#);
}

/// The app on a store whose readiness check answers `error` (each engine's own detection of a
/// wrong schema or an unreadable database is tested in its crate).
async fn not_ready(error: fn() -> StoreError) -> TestApp {
    let (db, faults) = faults::wrap(engine().fresh().await);
    let app = TestApp::on(db, ApiConfig::default()).await;
    assert_eq!(get_plain(&app, "/readyz").await.status.as_u16(), 200);
    faults.fail_ready(error);
    app
}

#[tokio::test]
async fn readyz_is_503_when_the_schema_is_not_this_builds() {
    let app = not_ready(|| {
        Refusal::SchemaMismatch {
            found: 999,
            expected: 6,
        }
        .into()
    })
    .await;
    let errors = get_plain(&app, "/readyz").await.errors(503);
    assert_eq!(
        errors,
        ["the database schema is version 999, this server expects 6"]
    );
}

#[tokio::test]
async fn readyz_is_503_when_the_database_cannot_be_read() {
    let app = not_ready(|| StoreError::broken("database disk image is malformed")).await;
    let errors = get_plain(&app, "/readyz").await.errors(503);
    assert_eq!(errors, ["The database cannot be read"]);
}

#[tokio::test]
async fn metrics_are_prometheus_text_without_anything_from_the_data() {
    let app = TestApp::with_config(convo_server::ApiConfig {
        twilio_auth_token: Some(convo_core::Secret::new("tok")),
        ..convo_server::ApiConfig::default()
    })
    .await;
    // Traffic that carries names, bodies, numbers and ids.
    assert_eq!(
        app.list("subdomain=acme&location_id=10&messages=5")
            .await
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        app.get("/conversations/1000?subdomain=acme&location_id=10")
            .await
            .status
            .as_u16(),
        200
    );
    let sent = app
        .post_json(
            "/messages?subdomain=acme&location_id=10",
            r#"{"message":{"patient_id":100,"user_id":5,"body":"Zebra-secret-body"}}"#,
        )
        .await;
    assert_eq!(sent.status.as_u16(), 201, "{}", sent.text);
    let url = "http://127.0.0.1:8080/sms/inbound";
    let inbound = app
        .post_twilio(
            "/sms/inbound",
            &[
                ("From", "+15163042196"),
                ("To", "+15551230000"),
                ("Body", "Quokka-reply-body"),
                ("MessageSid", "SMmetrics1"),
            ],
            Some(("tok", url)),
        )
        .await;
    assert_eq!(inbound.status.as_u16(), 200, "{}", inbound.text);
    let _ = app
        .get("/conversations/424242?subdomain=acme&location_id=10")
        .await;
    let _ = get_plain(&app, "/no/such/path/5163042196").await;

    let reply = get_plain(&app, "/metrics").await;
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(
        reply.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = &reply.text;
    let mut names = BTreeSet::new();
    let mut label_keys = BTreeSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP convo_") || rest.starts_with("TYPE convo_"),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "{line}"
        );
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        names.insert(name.to_string());
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label pair");
            assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            label_keys.insert(k.to_string());
        }
    }
    for expected in [
        "convo_http_requests_total",
        "convo_http_request_duration_seconds_bucket",
        "convo_http_request_duration_seconds_count",
        "convo_outbox_pending",
        "convo_outbox_due",
        "convo_outbox_claimed",
        "convo_outbox_oldest_due_seconds",
        "convo_db_pool_wait_seconds_bucket",
    ] {
        assert!(names.contains(expected), "{expected} missing:\n{text}");
    }
    let allowed: BTreeSet<String> = [
        "route", "method", "status", "outcome", "pool", "reason", "le",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert!(label_keys.is_subset(&allowed), "{label_keys:?}");
    assert!(text.contains(
        r#"convo_http_requests_total{route="/conversations",method="GET",status="200"}"#
    ));
    // Paths are routes, never the ids or numbers in them.
    assert!(text.contains(r#"route="/conversations/{id}""#), "{text}");
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    assert!(text.contains(r#"convo_outbox_pending 1"#), "{text}");
    for secret in [
        "Zebra",
        "Quokka",
        "Ana",
        "Diaz",
        "5163042196",
        "5551230000",
        "acme",
        "424242",
        "SMmetrics1",
        app.token.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} leaked into /metrics");
    }
}
