//! Nothing a client sends breaks the server: arbitrary queries and headers, half-sent requests.
//! (The list's cost, a constant number of statements each on its index, is the SQLite crate's
//! `tests/plans.rs`.)

use crate::common::TestApp;
use axum::body::Body;
use axum::http::Request;
use convo_store_tests::property::for_all;
use proptest::prelude::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn query_strategy() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "subdomain",
        "location_id",
        "page",
        "per_page",
        "messages",
        "messages_since",
        "updated_since",
        "include_messages",
        "start_cursor",
        "end_cursor",
        "foo",
        "",
        "%00",
        "per%5Fpage",
    ]);
    let value = prop::string::string_regex("[-a-zA-Z0-9%+:. TZ_=]{0,30}").expect("regex");
    prop::collection::vec((name, value), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn header_strategy() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let name = prop::sample::select(vec![
        "accept",
        "authorization",
        "nex-api-version",
        "x-other",
    ]);
    let value = prop::string::string_regex("[ -~]{0,40}").expect("regex");
    prop::collection::vec((name, value), 0..4)
}

/// One app for all 200 cases (building one per case would dominate the run), dropped at the
/// end with its database.
#[tokio::test]
async fn never_a_5xx_always_the_envelope() {
    let app = TestApp::new().await;
    let app = &app;
    let paths = prop::sample::select(vec![
        "/conversations",
        "/authenticates",
        "/conversations/",
        "/x",
    ]);
    let inputs = (
        query_strategy(),
        header_strategy(),
        any::<bool>(),
        any::<bool>(),
        paths,
    );
    for_all(
        200,
        inputs,
        move |(query, headers, good_token, cursor_variant, path)| async move {
            let mut req = Request::get(format!("{path}?{query}"));
            if good_token {
                req = req.header("authorization", format!("Bearer {}", app.token));
            }
            if cursor_variant {
                req = req.header("nex-api-version", "v20240412");
            }
            for (name, value) in &headers {
                req = req.header(*name, value.as_str());
            }
            let Ok(req) = req.body(Body::empty()) else {
                return Ok(());
            };
            let reply = app.send(req).await;
            let v = reply.json();
            if reply.status.as_u16() >= 500
                || !v["code"].is_boolean()
                || !v["error"].is_array()
                || (v["code"] == true) != reply.status.is_success()
            {
                return Err(format!("{} {}", reply.status, reply.text));
            }
            // The server still answers afterwards.
            let after = app.list("subdomain=acme&location_id=10").await.status;
            if after.as_u16() != 200 {
                return Err(format!("the next list answered {after}"));
            }
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_block_others() {
    let app = TestApp::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = app.state.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(convo_server::serve(listener, state, async {
        let _ = stop_rx.await;
    }));
    // A client that sends half a request line and then goes quiet.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET /conversations?subdomain=acme&loc")
        .await
        .expect("write");
    // Another with headers but a body it never finishes.
    let mut slow_body = TcpStream::connect(addr).await.expect("connect");
    slow_body
        .write_all(b"POST /authenticates HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        .await
        .expect("write");
    for _ in 0..3 {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "GET /conversations?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            app.token
        );
        c.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
            .await
            .expect("answered while others stall")
            .expect("read");
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    drop(stalled);
    drop(slow_body);
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("graceful shutdown")
        .expect("join")
        .expect("serve");
}
