//! Webhook delivery under load (issue 15's bar): 10 endpoints on loopback receive every message
//! of 500 staff sends per second for 60 s. Reported: the sends' own rate and latency with and
//! without the subscriptions, and for deliveries the time from commit (the event's time) to the
//! receiver's answer, the number lost and the number repeated.
//!
//!   cargo bench -p convo-server --bench webhooks
//!   BENCH_ENGINE=postgres BENCH_SECONDS=20 BENCH_RATE=500 cargo bench -p convo-server --bench webhooks
//!
//! The server, its workers, the load and the receivers share the machine (2 cores here): the
//! figures are for that machine, not a ceiling.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use convo_core::Millis;
use convo_core::store::import_text;
use convo_core::store::prelude::*;
use convo_core::webhook::WebhookEvent;
use convo_server::webhooks::address::Cidr;
use convo_server::webhooks::attempt::Rules;
use convo_server::webhooks::worker::WebhookPolicy;
use convo_server::{ApiConfig, AppState, FrontDoor, Server};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ENDPOINTS: usize = 10;
const PATIENTS: i64 = 2_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn practice() -> String {
    let mut out = String::from(
        r#"{"type":"institution","id":1,"subdomain":"bench","name":"Bench Dental"}
{"type":"location","id":1,"institution_id":1,"name":"Main","tz":"America/New_York","phone_number":"+12125550100"}
{"type":"user","id":1,"institution_id":1,"first_name":"Sam","last_name":"Lee"}
"#,
    );
    for p in 1..=PATIENTS {
        out.push_str(&format!(
            "{{\"type\":\"patient\",\"id\":{p},\"institution_id\":1,\"first_name\":\"P{p}\",\"bio\":{{\"cell_phone_number\":\"+1516{:07}\"}}}}\n",
            p
        ));
    }
    out
}

/// Arrivals at one receiver: event id → (times seen, ms from the event's time to the answer).
#[derive(Default)]
struct Arrivals {
    by_event: Mutex<HashMap<String, (u32, i64)>>,
}

/// The two fields a receiver here reads: a stand-in for an integrator's server, kept cheap since
/// it shares the cores with the server it measures.
#[derive(serde::Deserialize)]
struct Delivered<'a> {
    event_id: &'a str,
    event_time: &'a str,
}

async fn take(State(a): State<Arc<Arrivals>>, body: Bytes) -> StatusCode {
    let Ok(d) = serde_json::from_slice::<Delivered>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let at = d
        .event_time
        .parse::<jiff::Timestamp>()
        .map_or(0, |t| t.as_millisecond());
    let took = Millis::now().0 - at;
    let id = d.event_id.to_string();
    let mut map = a.by_event.lock().expect("lock");
    let e = map.entry(id).or_insert((0, took));
    e.0 += 1;
    StatusCode::NO_CONTENT
}

async fn receiver() -> (String, Arc<Arrivals>) {
    let arrivals = Arc::new(Arrivals::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let router = Router::new().fallback(take).with_state(arrivals.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, arrivals)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct SendRun {
    sent: usize,
    errors: usize,
    rate: f64,
    latencies_us: Vec<i64>,
}

/// `rate` sends per second for `seconds`, each to the next patient, at most 128 at once.
async fn load(addr: &str, token: &str, rate: u64, seconds: u64, tag: &str) -> SendRun {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let url = format!("http://{addr}/messages?subdomain=bench&location_id=1");
    let gate = Arc::new(tokio::sync::Semaphore::new(128));
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
        let permit = gate.clone().acquire_owned().await.expect("gate");
        let (client, url, token, results) = (
            client.clone(),
            url.clone(),
            token.to_string(),
            results.clone(),
        );
        let patient = 1 + (i as i64 % PATIENTS);
        let body =
            format!(r#"{{"message":{{"patient_id":{patient},"user_id":1,"body":"{tag} {i}"}}}}"#);
        tasks.spawn(async move {
            let began = Instant::now();
            let ok = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status() == 201);
            let us = i64::try_from(began.elapsed().as_micros()).unwrap_or(i64::MAX);
            let mut r = results.lock().expect("lock");
            if ok {
                r.0.push(us);
            } else {
                r.1 += 1;
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let (mut latencies_us, errors) = {
        let r = results.lock().expect("lock");
        (r.0.clone(), r.1)
    };
    latencies_us.sort_unstable();
    SendRun {
        sent: latencies_us.len(),
        errors,
        rate: latencies_us.len() as f64 / elapsed,
        latencies_us,
    }
}

async fn store(engine: &str) -> (Arc<dyn Store>, Box<dyn std::any::Any>) {
    match engine {
        "postgres" => {
            let scratch = convo_store_postgres::scratch::ScratchDb::create()
                .await
                .expect("scratch database");
            let store = scratch.open().await.expect("open");
            (Arc::new(store), Box::new(scratch))
        }
        _ => {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = convo_store_sqlite::SqliteStore::open(
                dir.path().join("bench.db"),
                convo_store_sqlite::SqliteOptions::default(),
            )
            .await
            .expect("open");
            (Arc::new(store), Box::new(dir))
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let engine = std::env::var("BENCH_ENGINE").unwrap_or_else(|_| "sqlite".into());
    let seconds = env("BENCH_SECONDS", 60);
    let rate = env("BENCH_RATE", 500);
    let deliver = env("BENCH_DELIVER", 1) != 0;
    let (store, _keep) = store(&engine).await;
    import_text(store.as_ref(), &practice())
        .await
        .expect("practice");
    // What `convo serve` does at start: fresh planner statistics after the import.
    store.optimize().await.expect("optimize");
    let key = store
        .create_api_key(&["bench".to_string()])
        .await
        .expect("key");
    let config = ApiConfig {
        webhooks: Rules {
            allow: Arc::from(vec!["127.0.0.1/32".parse::<Cidr>().expect("cidr")]),
            allow_http: true,
            timeout: Duration::from_secs(15),
        },
        ..ApiConfig::default()
    };
    let state = AppState::new(store.clone(), Some(b"bench-secret"), config)
        .await
        .expect("state");
    let token = state.tokens.issue(key.id).expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = Server {
        listener,
        state,
        door: FrontDoor::default(),
        provider: Arc::new(convo_server::outbox::LogProvider),
        policy: convo_server::outbox::RetryPolicy::default(),
        // BENCH_DELIVER=0 leaves the deliveries queued: what freezing the events costs the
        // sends, apart from delivering them.
        webhook_policy: {
            let p = WebhookPolicy::default();
            WebhookPolicy {
                held: if deliver { p.held } else { 0 },
                ..p
            }
        },
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(convo_server::run(server, async move {
        let _ = stopped.await;
    }));
    eprintln!("{engine}: {rate} sends/s for {seconds} s, first without subscriptions");
    let baseline = load(&addr, &token, rate, seconds, "baseline").await;
    let mut receivers = Vec::new();
    for _ in 0..ENDPOINTS {
        let (url, arrivals) = receiver().await;
        let e = store
            .create_endpoint(
                key.id,
                &url,
                &convo_server::webhooks::sign::new_secret().expect("secret"),
                true,
            )
            .await
            .expect("endpoint");
        store
            .create_subscription(key.id, e.id, 1, WebhookEvent::MessageCreated, true)
            .await
            .expect("subscription");
        receivers.push(arrivals);
    }
    eprintln!("then with {ENDPOINTS} endpoints subscribed to message_created");
    let with = load(&addr, &token, rate, seconds, "subscribed").await;
    let expected = with.sent;
    let drained = Instant::now();
    loop {
        let got: usize = receivers
            .iter()
            .map(|r| r.by_event.lock().expect("lock").len())
            .sum();
        if !deliver || got >= expected * ENDPOINTS || drained.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut delivery_ms = Vec::new();
    let (mut received, mut repeats) = (0usize, 0usize);
    for r in &receivers {
        for (seen, ms) in r.by_event.lock().expect("lock").values() {
            received += 1;
            repeats += (*seen as usize).saturating_sub(1);
            delivery_ms.push(*ms);
        }
    }
    delivery_ms.sort_unstable();
    let mut took: Vec<i64> = store
        .list_webhook_attempts(None, None, i64::MAX)
        .await
        .expect("attempts")
        .iter()
        .map(|a| a.took_ms)
        .collect();
    took.sort_unstable();
    let _ = stop.send(());
    let _ = served.await;
    let us = |r: &SendRun, p| percentile(&r.latencies_us, p) as f64 / 1000.0;
    println!("| {engine}, {rate}/s × {seconds} s | sends/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|");
    for (name, r) in [("no subscriptions", &baseline), ("10 endpoints", &with)] {
        println!(
            "| {name} | {:.1} | {:.2} | {:.2} | {} |",
            r.rate,
            us(r, 0.5),
            us(r, 0.99),
            r.errors
        );
    }
    println!();
    println!(
        "deliveries: {received} of {} ({} not yet delivered 60 s after the last send, {repeats} repeated); commit → receiver p50 {} ms, p99 {} ms, max {} ms",
        expected * ENDPOINTS,
        (expected * ENDPOINTS).saturating_sub(received),
        percentile(&delivery_ms, 0.5),
        percentile(&delivery_ms, 0.99),
        delivery_ms.last().copied().unwrap_or(0)
    );
    println!(
        "attempts: {}, each p50 {} ms, p99 {} ms (request to answer, at the worker)",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.99)
    );
}
