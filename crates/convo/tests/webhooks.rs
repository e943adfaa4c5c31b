//! Message webhooks across crashes (issue 15): real `convo serve` processes deliver to a
//! receiver on loopback that answers slowly, so deliveries are in flight when a process is
//! SIGKILLed. Every committed event arrives after the restart (or at the other process), a
//! repeat always carries the same `webhook-id` and `event_id`, and every delivery verifies.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{TestDb, http, practice, send, start_server_with, terminate, token_for};
use convo_server::webhooks::sign::{Received, verify};
use std::collections::BTreeMap;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One delivery as the receiver read it: its `webhook-id`, the body's `event_id`, the
/// message's text, and whether both signatures verified.
#[derive(Clone, Debug)]
struct Seen {
    webhook_id: String,
    event_id: String,
    event_name: String,
    body: String,
    verified: bool,
}

#[derive(Default)]
struct Sink {
    seen: Mutex<Vec<Seen>>,
    secret: Mutex<String>,
    delay_ms: AtomicU64,
}

async fn take(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let secret = sink.secret.lock().expect("lock").clone();
    let got = Received {
        timestamp: h("timestamp"),
        signature: h("signature"),
        webhook_id: h("webhook-id"),
        webhook_timestamp: h("webhook-timestamp"),
        webhook_signature: h("webhook-signature"),
    };
    let verified = verify(&secret, &got, &body, convo_core::Millis::now().0 / 1000).is_ok();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    sink.seen.lock().expect("lock").push(Seen {
        webhook_id: h("webhook-id").unwrap_or_default().to_string(),
        event_id: v["event_id"].as_str().unwrap_or_default().to_string(),
        event_name: v["event_name"].as_str().unwrap_or_default().to_string(),
        body: v["data"]["messages"][0]["body"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        verified,
    });
    tokio::time::sleep(Duration::from_millis(sink.delay_ms.load(Ordering::SeqCst))).await;
    StatusCode::NO_CONTENT
}

/// A receiver on its own thread and runtime, answering 204 after `delay_ms`.
fn receiver(delay_ms: u64) -> (String, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    sink.delay_ms.store(delay_ms, Ordering::SeqCst);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let state = sink.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let router = Router::new().fallback(take).with_state(state);
            let _ = axum::serve(listener, router).await;
        });
    });
    (url, sink)
}

const ALLOW: &[&str] = &[
    "--webhook-allow-net",
    "127.0.0.1/32",
    "--webhook-allow-http",
];

fn start(db: &TestDb) -> (Child, String, JoinHandle<String>) {
    start_server_with(db, &[], ALLOW)
}

fn call(addr: &str, token: &str, method: &str, path: &str, json: &str) -> String {
    http(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        ),
    )
}

/// Registers `url` for message_created of `acme`; the endpoint's secret.
fn register(addr: &str, token: &str, url: &str) -> String {
    let made = call(
        addr,
        token,
        "POST",
        "/webhook_endpoints",
        &format!(r#"{{"target_url":"{url}"}}"#),
    );
    assert!(made.starts_with("HTTP/1.1 201"), "{made}");
    let field = |name: &str| {
        made.split(&format!("\"{name}\":"))
            .nth(1)
            .and_then(|t| t.split([',', '}']).next())
            .expect("field")
            .trim_matches('"')
            .to_string()
    };
    let (id, secret) = (field("id"), field("secret_key"));
    let sub = call(
        addr,
        token,
        "POST",
        &format!("/webhook_endpoints/{id}/webhook_subscriptions?subdomain=acme"),
        r#"{"resource_type":"Message","event":"message_created"}"#,
    );
    assert!(sub.starts_with("HTTP/1.1 201"), "{sub}");
    secret
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every message in `bodies` arrived; no event arrived under two ids; all verified. The
/// number of repeats.
fn check(sink: &Sink, bodies: &[String]) -> (usize, usize) {
    let seen = sink.seen.lock().expect("lock").clone();
    let mut by_event: BTreeMap<String, Vec<&Seen>> = BTreeMap::new();
    for s in &seen {
        assert!(s.verified, "a delivery did not verify: {s:?}");
        assert_eq!(s.event_name, "message_created");
        assert_eq!(s.webhook_id, s.event_id, "webhook-id is the event's id");
        by_event.entry(s.event_id.clone()).or_default().push(s);
    }
    for (event, all) in &by_event {
        assert!(
            all.iter().all(|s| s.body == all[0].body),
            "event {event} arrived with different messages"
        );
    }
    for body in bodies {
        let events: Vec<&String> = by_event
            .iter()
            .filter(|(_, all)| all[0].body == *body)
            .map(|(e, _)| e)
            .collect();
        assert_eq!(events.len(), 1, "`{body}` arrived as {events:?}");
    }
    (by_event.len(), seen.len() - by_event.len())
}

fn sends(addr: &str, token: &str, tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let body = format!("{tag} {i}");
            let reply = send(addr, token, 100, &body);
            assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
            body
        })
        .collect()
}

#[test]
fn sigkill_with_deliveries_in_flight_loses_no_event_and_repeats_keep_their_ids() {
    let db = TestDb::sqlite("webhooks-kill");
    let key = practice(&db, "");
    let (url, sink) = receiver(400);
    let mut total_repeats = 0;
    let mut total_events = 0;
    let mut all_bodies = Vec::new();
    // Several trials: the kill lands at a different point of the deliveries each time.
    for trial in 0..3 {
        let (mut server, addr, drain) = start(&db);
        let token = token_for(&addr, &key);
        if trial == 0 {
            *sink.secret.lock().expect("lock") = register(&addr, &token, &url);
        }
        let bodies = sends(&addr, &token, &format!("trial {trial}"), 12);
        let before = sink.seen.lock().expect("lock").len();
        wait_for("deliveries in flight", Duration::from_secs(20), || {
            sink.seen.lock().expect("lock").len() >= before + 2 + trial
        });
        server.kill().expect("SIGKILL");
        let _ = server.wait();
        let _ = drain.join();
        all_bodies.extend(bodies);
        // Restarted: what was claimed or queued goes out at once.
        let (server, _, drain) = start(&db);
        wait_for(
            "every event after the restart",
            Duration::from_secs(60),
            || {
                let seen = sink.seen.lock().expect("lock");
                all_bodies.iter().all(|b| seen.iter().any(|s| &s.body == b))
            },
        );
        // Let the restarted server record its last answers before it stops.
        std::thread::sleep(Duration::from_millis(600));
        let (status, logs) = terminate(server, drain);
        assert!(status.success(), "{logs}");
        let (events, repeats) = check(&sink, &all_bodies);
        total_events = events;
        total_repeats = repeats;
    }
    eprintln!(
        "webhooks: {total_events} events over 3 SIGKILL trials, {total_repeats} delivered twice \
         ({:.1} %)",
        100.0 * total_repeats as f64 / total_events as f64
    );
    // Nothing is left behind: every delivery was recorded as delivered.
    let out = common::convo(&db, &["webhooks", "deliveries", "--status", "failed"]);
    assert!(out.status.success());
    assert_eq!(
        common::text(&out.stdout).lines().count(),
        1,
        "no failed attempts"
    );
}

#[test]
fn two_processes_on_postgresql_one_killed_deliver_every_event() {
    let db = TestDb::postgres(false);
    let key = practice(&db, "");
    let (url, sink) = receiver(1_500);
    let (mut doomed, addr, doomed_drain) = start(&db);
    let (survivor, survivor_addr, survivor_drain) = start(&db);
    let token = token_for(&addr, &key);
    *sink.secret.lock().expect("lock") = register(&addr, &token, &url);
    let mut bodies = sends(&addr, &token, "through the doomed", 8);
    bodies.extend(sends(&survivor_addr, &token, "through the survivor", 8));
    wait_for("deliveries in flight", Duration::from_secs(20), || {
        sink.seen.lock().expect("lock").len() >= 4
    });
    doomed.kill().expect("SIGKILL");
    let _ = doomed.wait();
    let _ = doomed_drain.join();
    let killed = Instant::now();
    // The survivor takes over the dead process's claims once its heartbeat is stale.
    wait_for(
        "every event at the survivor",
        Duration::from_secs(60),
        || {
            let seen = sink.seen.lock().expect("lock");
            bodies.iter().all(|b| seen.iter().any(|s| &s.body == b))
        },
    );
    std::thread::sleep(Duration::from_millis(1_800));
    let (events, repeats) = check(&sink, &bodies);
    eprintln!(
        "webhooks on PostgreSQL: {events} events, {repeats} delivered twice, all in {:?} \
         after the kill",
        killed.elapsed()
    );
    let (status, logs) = terminate(survivor, survivor_drain);
    assert!(status.success(), "{logs}");
}
