//! Authentication, versioning and every 4xx with the envelope, in the contract's precedence.

use crate::common::TestApp;
use axum::body::Body;
use axum::http::Request;
use convo_server::{ApiConfig, Tokens};

const OK_QUERY: &str = "/conversations?subdomain=acme&location_id=10";

fn get(uri: &str) -> axum::http::request::Builder {
    Request::get(uri)
}

#[tokio::test]
async fn authenticates_issues_a_working_token() {
    let app = TestApp::new().await;
    let key = app
        .store
        .create_api_key(&["acme".into()])
        .await
        .expect("key");
    let reply = app
        .send(
            Request::post("/authenticates")
                .header("authorization", &key.raw)
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
    let v = reply.json();
    let keys: Vec<&str> = v
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["code", "description", "error", "data"]);
    assert_eq!(v["description"], "Authenticated");
    let token = v["data"]["token"].as_str().expect("token");
    assert_eq!(token.split('.').count(), 3);
    let listed = app
        .send(
            get(OK_QUERY)
                .header("authorization", format!("bearer {token}"))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(listed.status.as_u16(), 200);
}

#[tokio::test]
async fn authenticates_refuses_wrong_or_missing_keys() {
    let app = TestApp::new().await;
    for header in [Some("cvk_nope"), Some(""), None, Some("Bearer cvk_nope")] {
        let mut req = Request::post("/authenticates");
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let e = app
            .send(req.body(Body::empty()).expect("req"))
            .await
            .errors(401);
        assert_eq!(e, ["API key is missing or invalid"]);
    }
}

#[tokio::test]
async fn bearer_tokens_are_checked() {
    let app = TestApp::new().await;
    let forged = Tokens::new(b"another-secret", 3600)
        .issue(app.key_id)
        .expect("token");
    let cases: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Basic abc".into()),
        Some(format!("Token {}", app.token)),
        Some("Bearer not-a-jwt".into()),
        Some(format!("Bearer {forged}")),
        Some(format!(
            "Bearer {}",
            app.state.tokens.issue(99_999).expect("token")
        )),
    ];
    for auth in cases {
        let mut req = get(OK_QUERY);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let reply = app.send(req.body(Body::empty()).expect("req")).await;
        reply.errors(401);
    }
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let app = TestApp::with_config(ApiConfig {
        token_ttl: 1,
        ..ApiConfig::default()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    app.list("subdomain=acme&location_id=10").await.errors(401);
}

#[tokio::test]
async fn revoking_a_key_stops_its_tokens_at_once() {
    let app = TestApp::new().await;
    assert_eq!(
        app.list("subdomain=acme&location_id=10")
            .await
            .status
            .as_u16(),
        200
    );
    assert!(app.store.revoke_api_key(app.key_id).await.expect("revoke"));
    let e = app.list("subdomain=acme&location_id=10").await.errors(401);
    assert_eq!(e, ["Bearer token is invalid, expired or revoked"]);
    // Revoked beats bad parameters (401 before 400).
    app.list("page=0").await.errors(401);
}

#[tokio::test]
async fn unknown_route_and_wrong_method() {
    let app = TestApp::new().await;
    assert_eq!(app.get("/nope").await.errors(404), ["Route not found"]);
    assert_eq!(app.get("/").await.errors(404), ["Route not found"]);
    let reply = app
        .send(Request::post(OK_QUERY).body(Body::empty()).expect("req"))
        .await;
    assert_eq!(reply.errors(405), ["Method not allowed"]);
    let reply = app
        .send(
            Request::delete("/authenticates")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    reply.errors(405);
    // Wrong method beats a bad Accept version (405 before 404).
    let reply = app
        .send(
            Request::put(OK_QUERY)
                .header("accept", "application/vnd.Nexhealth+json;version=3")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    reply.errors(405);
}

#[tokio::test]
async fn accept_versions() {
    let app = TestApp::new().await;
    let with_accept = |accept: &'static str| {
        get(OK_QUERY)
            .header("authorization", format!("Bearer {}", app.token))
            .header("accept", accept)
            .body(Body::empty())
            .expect("req")
    };
    for ok in [
        "application/vnd.Nexhealth+json;version=2",
        "*/*",
        "application/json",
        "application/vnd.nexhealth+json",
    ] {
        assert_eq!(app.send(with_accept(ok)).await.status.as_u16(), 200, "{ok}");
    }
    app.send(with_accept("application/vnd.Nexhealth+json;version=3"))
        .await
        .errors(404);
    // A bad version beats a missing token (404 before 401).
    let reply = app
        .send(
            get(OK_QUERY)
                .header("accept", "application/vnd.Nexhealth+json;version=1")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    reply.errors(404);
}

#[tokio::test]
async fn strict_version_requires_the_vendor_type() {
    let app = TestApp::with_config(ApiConfig {
        strict_version: true,
        ..ApiConfig::default()
    })
    .await;
    app.list("subdomain=acme&location_id=10").await.errors(404);
    let reply = app
        .send(
            get(OK_QUERY)
                .header("authorization", format!("Bearer {}", app.token))
                .header("accept", "application/vnd.Nexhealth+json;version=2")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200);
}

#[tokio::test]
async fn precedence_401_400_403_404() {
    let app = TestApp::new().await;
    // No token and bad parameters: 401.
    app.send(
        get("/conversations?page=0")
            .body(Body::empty())
            .expect("req"),
    )
    .await
    .errors(401);
    // Bad parameters and a forbidden subdomain: 400.
    app.list("subdomain=other&location_id=20&page=0")
        .await
        .errors(400);
    // Forbidden subdomain and a foreign location: 403.
    app.list("subdomain=other&location_id=10").await.errors(403);
    // Allowed subdomain, foreign location: 404.
    app.list("subdomain=acme&location_id=20").await.errors(404);
}

#[tokio::test]
async fn nex_api_version_selects_the_cursor_variant_or_is_ignored() {
    let app = TestApp::new().await;
    for (version, paged_by) in [
        ("v20240412", "page_info"),
        ("V3.0.0", "page_info"),
        ("v2", "count"),
        ("nonsense", "count"),
    ] {
        let reply = app
            .send(
                get(OK_QUERY)
                    .header("authorization", format!("Bearer {}", app.token))
                    .header("nex-api-version", version)
                    .body(Body::empty())
                    .expect("req"),
            )
            .await;
        assert_eq!(reply.status.as_u16(), 200, "{version}: {}", reply.text);
        let v = reply.json();
        assert!(v.get(paged_by).is_some(), "{version}: {v}");
    }
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = TestApp::new().await;
    let reply = app.list("subdomain=acme&location_id=10").await;
    assert!(reply.headers.contains_key("x-request-id"));
    let err = app.get("/nope").await;
    assert!(err.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let app = TestApp::with_config(ApiConfig {
        rate_limits: convo_server::ratelimit::parse("3/min").expect("spec"),
        ..ApiConfig::default()
    })
    .await;
    // Invalid tokens are refused before the limit and spend nothing.
    for _ in 0..5 {
        let reply = app
            .send(
                get(OK_QUERY)
                    .header("authorization", "Bearer forged")
                    .body(Body::empty())
                    .expect("req"),
            )
            .await;
        assert_eq!(reply.status.as_u16(), 401);
    }
    for _ in 0..3 {
        assert_eq!(app.get(OK_QUERY).await.status.as_u16(), 200);
    }
    // Every authenticated endpoint shares the key's budget.
    let reply = app
        .post_json(
            "/messages?subdomain=acme&location_id=10",
            r#"{"message":{"patient_id":100,"user_id":5,"body":"hi"}}"#,
        )
        .await;
    let retry_after = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("Retry-After in whole seconds");
    // One request comes back every 20 s.
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(
        reply.errors(429),
        [format!("Rate limit exceeded; retry after {retry_after} s")]
    );
    let reply = app.get(OK_QUERY).await;
    assert_eq!(reply.status.as_u16(), 429);
    assert_eq!(reply.json()["code"], false);
    // Another key has its own budget.
    let other = app
        .store
        .create_api_key(&["acme".into()])
        .await
        .expect("key");
    let token = app.state.tokens.issue(other.id).expect("token");
    let reply = app
        .send(
            get(OK_QUERY)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200);
}

#[tokio::test]
async fn without_a_rate_limit_nothing_is_refused() {
    let app = TestApp::new().await;
    for _ in 0..300 {
        assert_eq!(app.get(OK_QUERY).await.status.as_u16(), 200);
    }
}
