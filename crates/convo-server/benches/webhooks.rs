//! Webhook delivery under load (issue 15's bar): 10 endpoints on loopback receive every message
//! of 500 staff sends per second for 60 s. Reported: the sends' own rate and latency with and
//! without the subscriptions, and for deliveries the time from commit to the receiver's
//! answer, the number lost and the number repeated.
//!
//!   cargo bench -p convo-server --bench webhooks
//!   BENCH_ENGINE=postgres BENCH_SECONDS=20 BENCH_RATE=500 cargo bench -p convo-server --bench webhooks
//!
//! `BENCH_ROUNDS` (1) splits the time into rounds, each without then with the endpoints
//! active, then a wait until everything is delivered. One round is the bar's figure: the
//! baseline then has no webhook history, as a server without subscriptions has none; with more
//! rounds a shared machine's slow minute falls on both, but the quiet windows also carry what
//! the webhook windows left (vacuums, checkpoints), which flatters the comparison. A commit's
//! time is not seen from outside: a delivery's wait is reported from the event's time (taken
//! in the send's transaction, before its statements and its commit: an upper bound) and from
//! the send's answer (after the commit: a lower bound, negative when the delivery arrived
//! first).
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
use convo_core::webhook::{EndpointPatch, WebhookEvent};
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

/// Arrivals at one receiver: event id → (times seen, ms from the event's time to the answer,
/// the message's id, when it first arrived).
#[derive(Default)]
struct Arrivals {
    by_event: Mutex<HashMap<String, (u32, i64, i64, i64)>>,
}

/// The fields a receiver here reads: a stand-in for an integrator's server, kept cheap since
/// it shares the cores with the server it measures.
#[derive(serde::Deserialize)]
struct Delivered<'a> {
    event_id: &'a str,
    event_time: &'a str,
    data: Messages,
}

#[derive(serde::Deserialize)]
struct Messages {
    messages: [Id; 1],
}

#[derive(serde::Deserialize)]
struct Id {
    id: i64,
}

/// A send's answer: its message's id.
#[derive(serde::Deserialize)]
struct Answer {
    data: Id,
}

async fn take(State(a): State<Arc<Arrivals>>, body: Bytes) -> StatusCode {
    let now = Millis::now().0;
    let Ok(d) = serde_json::from_slice::<Delivered>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let at = d
        .event_time
        .parse::<jiff::Timestamp>()
        .map_or(0, |t| t.as_millisecond());
    let id = d.event_id.to_string();
    let mut map = a.by_event.lock().expect("lock");
    let e = map
        .entry(id)
        .or_insert((0, now - at, d.data.messages[0].id, now));
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

#[derive(Default)]
struct SendRun {
    sent: usize,
    errors: usize,
    elapsed: f64,
    latencies_us: Vec<i64>,
    /// Message id → when its send was answered (ms).
    answered: HashMap<i64, i64>,
}

impl SendRun {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.max(f64::MIN_POSITIVE)
    }

    fn extend(&mut self, other: SendRun) {
        self.sent += other.sent;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        // Kept sorted: percentiles are read from the merged runs.
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
        self.answered.extend(other.answered);
    }
}

/// `rate` sends per second for `seconds`, each to the next patient, at most 128 at once.
async fn load(addr: &str, token: &str, rate: u64, seconds: u64, tag: &str) -> SendRun {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let url = format!("http://{addr}/messages?subdomain=bench&location_id=1");
    let gate = Arc::new(tokio::sync::Semaphore::new(128));
    let results = Arc::new(Mutex::new(SendRun::default()));
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
            let answer = match client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(r) if r.status() == 201 => r.bytes().await.ok(),
                _ => None,
            };
            let answered = Millis::now().0;
            let us = i64::try_from(began.elapsed().as_micros()).unwrap_or(i64::MAX);
            let id = answer.and_then(|b| serde_json::from_slice::<Answer>(&b).ok());
            let mut r = results.lock().expect("lock");
            match id {
                Some(a) => {
                    r.sent += 1;
                    r.latencies_us.push(us);
                    r.answered.insert(a.data.id, answered);
                }
                None => r.errors += 1,
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut run = std::mem::take(&mut *results.lock().expect("lock"));
    run.elapsed = start.elapsed().as_secs_f64();
    run
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
    let rounds = env("BENCH_ROUNDS", 1).max(1);
    let window = (seconds / rounds).max(1);
    let mut endpoints = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..ENDPOINTS {
        let (url, arrivals) = receiver().await;
        let e = store
            .create_endpoint(
                key.id,
                &url,
                &convo_server::webhooks::sign::new_secret().expect("secret"),
                false,
            )
            .await
            .expect("endpoint");
        store
            .create_subscription(key.id, e.id, 1, WebhookEvent::MessageCreated, true)
            .await
            .expect("subscription");
        endpoints.push(e.id);
        receivers.push(arrivals);
    }
    let switch = |active: bool| {
        let (store, endpoints) = (store.clone(), endpoints.clone());
        async move {
            for id in endpoints {
                store
                    .update_endpoint(
                        key.id,
                        id,
                        &EndpointPatch {
                            target_url: None,
                            active: Some(active),
                        },
                    )
                    .await
                    .expect("switch")
                    .expect("endpoint");
            }
        }
    };
    eprintln!(
        "{engine}: {rate} sends/s, {rounds} rounds of {window} s without subscriptions, then \
         {window} s with {ENDPOINTS} endpoints subscribed to message_created"
    );
    let (mut baseline, mut with) = (SendRun::default(), SendRun::default());
    let (mut slices, mut round_base): (Vec<Vec<i64>>, usize) = (Vec::new(), 0);
    for round in 0..rounds {
        baseline.extend(load(&addr, &token, rate, window, &format!("baseline {round}")).await);
        switch(true).await;
        let run = load(&addr, &token, rate, window, &format!("subscribed {round}")).await;
        // By 10 s of sending: does delivery slow down as the tables fill?
        let first = run.answered.values().copied().min().unwrap_or(0);
        for (id, at) in &run.answered {
            let slice = usize::try_from((at - first) / 10_000).unwrap_or(0);
            if slices.len() <= round_base + slice {
                slices.resize(round_base + slice + 1, Vec::new());
            }
            slices[round_base + slice].push(*id);
        }
        round_base = slices.len();
        with.extend(run);
        // Everything delivered before the next quiet window, so it measures sends alone.
        let drained = Instant::now();
        loop {
            let got: usize = receivers
                .iter()
                .map(|r| r.by_event.lock().expect("lock").len())
                .sum();
            if !deliver
                || got >= with.sent * ENDPOINTS
                || drained.elapsed() > Duration::from_secs(60)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        switch(false).await;
    }
    let expected = with.sent;
    let mut delivery_ms = Vec::new();
    let mut after_answer_ms = Vec::new();
    let (mut received, mut repeats) = (0usize, 0usize);
    let mut by_message: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in &receivers {
        for (seen, ms, message, at) in r.by_event.lock().expect("lock").values() {
            by_message.entry(*message).or_default().push(*ms);
            received += 1;
            repeats += (*seen as usize).saturating_sub(1);
            delivery_ms.push(*ms);
            if let Some(answered) = with.answered.get(message) {
                after_answer_ms.push(at - answered);
            }
        }
    }
    delivery_ms.sort_unstable();
    after_answer_ms.sort_unstable();
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
    println!(
        "| {engine}, {rate}/s, {rounds} × {window} s each | sends/s | p50 ms | p99 ms | errors |"
    );
    println!("|---|---|---|---|---|");
    for (name, r) in [("no subscriptions", &baseline), ("10 endpoints", &with)] {
        println!(
            "| {name} | {:.1} | {:.2} | {:.2} | {} |",
            r.rate(),
            us(r, 0.5),
            us(r, 0.99),
            r.errors
        );
    }
    println!();
    println!(
        "deliveries: {received} of {} ({} not yet delivered 60 s after the last send, {repeats} repeated)",
        expected * ENDPOINTS,
        (expected * ENDPOINTS).saturating_sub(received),
    );
    println!(
        "commit → receiver, from the event's time (upper bound): p50 {} ms, p99 {} ms, max {} ms",
        percentile(&delivery_ms, 0.5),
        percentile(&delivery_ms, 0.99),
        delivery_ms.last().copied().unwrap_or(0)
    );
    let per_slice: Vec<String> = slices
        .iter()
        .map(|ids| {
            let mut ms: Vec<i64> = ids
                .iter()
                .filter_map(|id| by_message.get(id))
                .flatten()
                .copied()
                .collect();
            ms.sort_unstable();
            format!("{}/{}", percentile(&ms, 0.5), percentile(&ms, 0.99))
        })
        .collect();
    println!(
        "  p50/p99 ms by 10 s of subscribed sending, in order: {}",
        per_slice.join(", ")
    );
    println!(
        "commit → receiver, from the send's answer (lower bound): p50 {} ms, p99 {} ms, max {} ms",
        percentile(&after_answer_ms, 0.5),
        percentile(&after_answer_ms, 0.99),
        after_answer_ms.last().copied().unwrap_or(0)
    );
    println!(
        "attempts: {}, each p50 {} ms, p99 {} ms (request to answer, at the worker)",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.99)
    );
}
