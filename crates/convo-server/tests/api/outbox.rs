//! The outbox worker against a local fake of Twilio's Messages API: sends succeed; 5xx and
//! timeouts are retried until delivered; 4xx is recorded as failed and not retried; entries left
//! by a stopped or crashed server are delivered after the restart, once each.

use crate::common::TestApp;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use convo_core::Millis;
use convo_core::outbox::DeliveryStatus;
use convo_server::outbox::{RetryPolicy, TwilioProvider};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
enum Answer {
    Created,
    ServerError,
    Slow,
    /// Created after 150 ms: long enough for sends to overlap.
    Pause,
    BadRequest,
}

/// The authorization header and form fields of one request.
type Request = (String, Vec<(String, String)>);

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Answer>>,
    /// (authorization header, form fields) of every request, in order.
    seen: Mutex<Vec<Request>>,
    in_flight: AtomicUsize,
    /// The most requests in flight at once.
    most: AtomicUsize,
}

async fn messages(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let n = {
        let mut seen = fake.seen.lock().expect("lock");
        seen.push((auth, form));
        seen.len()
    };
    let answer = fake
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or(Answer::Created);
    let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.most.fetch_max(now, Ordering::SeqCst);
    let response = answer_with(answer, n).await;
    fake.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn answer_with(answer: Answer, n: usize) -> axum::response::Response {
    match answer {
        Answer::Created => (
            StatusCode::CREATED,
            format!(r#"{{"sid":"SMfake{n}","status":"queued"}}"#),
        )
            .into_response(),
        Answer::ServerError => {
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"message":"down"}"#).into_response()
        }
        Answer::Slow => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::CREATED, r#"{"sid":"SMlate"}"#).into_response()
        }
        Answer::Pause => {
            tokio::time::sleep(Duration::from_millis(150)).await;
            (
                StatusCode::CREATED,
                format!(r#"{{"sid":"SMfake{n}","status":"queued"}}"#),
            )
                .into_response()
        }
        Answer::BadRequest => (
            StatusCode::BAD_REQUEST,
            r#"{"code":21211,"message":"The 'To' number is not a valid phone number."}"#,
        )
            .into_response(),
    }
}

async fn fake_twilio(script: &[Answer]) -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    fake.script
        .lock()
        .expect("lock")
        .extend(script.iter().copied());
    let router = Router::new()
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(messages))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (fake, format!("http://{addr}"))
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        base_delay_ms: 20,
        max_delay_ms: 100,
        max_attempts: 5,
        heartbeat_ms: 50,
        stale_owner_ms: 1_000,
        idle_ms: 20,
        stop_grace_ms: 1_000,
    }
}

/// Starts the server as `convo serve` does (`convo_server::run`: the API on a loopback port
/// and the outbox worker) on the app's state; dropping the returned sender stops both.
fn start_worker(
    app: &TestApp,
    base_url: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let provider = TwilioProvider::new(
        base_url,
        "ACtest",
        convo_core::Secret::new("tok3n"),
        Some("https://convo.example.org/sms/status".into()),
        Duration::from_millis(300),
    )
    .expect("provider");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = app.state.clone();
    let handle = tokio::spawn(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = convo_server::Server {
            listener,
            state,
            door: convo_server::FrontDoor::default(),
            provider: Arc::new(provider),
            policy: policy(),
            webhook_policy: convo_server::webhooks::worker::WebhookPolicy::default(),
        };
        convo_server::run(server, async move {
            let _ = stopped.await;
        })
        .await
        .expect("run");
    });
    (stop, handle)
}

async fn send(app: &TestApp, body: &str) -> i64 {
    let reply = app
        .post_json(
            "/messages?subdomain=acme&location_id=10",
            &serde_json::json!({"message": {"patient_id": 100, "user_id": 5, "body": body}})
                .to_string(),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
    reply.json()["data"]["sms_msg_id"]
        .as_i64()
        .expect("delivery id")
}

/// (status, attempts, provider id, error) of a delivery.
/// Read through the store's operator view, as `convo deliveries list` does.
async fn delivery(app: &TestApp, id: i64) -> (String, i64, Option<String>, Option<String>) {
    let d = app.delivery(id).await;
    (
        d.status.as_str().to_string(),
        d.attempts,
        d.provider_id,
        d.error,
    )
}

async fn until(
    app: &TestApp,
    id: i64,
    status: &str,
) -> (String, i64, Option<String>, Option<String>) {
    for _ in 0..500 {
        let d = delivery(app, id).await;
        if d.0 == status {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "delivery {id} never reached {status}: {:?}",
        delivery(app, id).await
    );
}

#[tokio::test]
async fn sends_reach_the_provider_with_its_fields() {
    let app = TestApp::new().await;
    let (fake, base) = fake_twilio(&[]).await;
    let (stop, worker) = start_worker(&app, &base);
    let id = send(&app, "Your crown is ready").await;
    let (_, attempts, provider_id, error) = until(&app, id, "sent").await;
    assert_eq!((attempts, error), (1, None));
    assert_eq!(provider_id.as_deref(), Some("SMfake1"));
    let seen = fake.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let (auth, form) = &seen[0];
    // HTTP basic auth with the account SID and auth token.
    assert_eq!(auth, "Basic QUN0ZXN0OnRvazNu");
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(field("To"), Some("+15163042196"));
    assert_eq!(field("From"), Some("+15551230000"));
    assert_eq!(field("Body"), Some("Your crown is ready"));
    // The callback URL names the delivery, so an early callback still finds it.
    assert_eq!(
        field("StatusCallback"),
        Some(format!("https://convo.example.org/sms/status?delivery={id}").as_str())
    );
    drop(stop);
    worker.await.expect("worker");
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retried_until_delivered() {
    let app = TestApp::new().await;
    let (fake, base) = fake_twilio(&[Answer::ServerError, Answer::Slow, Answer::ServerError]).await;
    let (stop, worker) = start_worker(&app, &base);
    let id = send(&app, "retry me").await;
    let (_, attempts, provider_id, _) = until(&app, id, "sent").await;
    assert_eq!(attempts, 4);
    assert_eq!(provider_id.as_deref(), Some("SMfake4"));
    assert_eq!(fake.seen.lock().expect("lock").len(), 4);
    drop(stop);
    worker.await.expect("worker");
}

#[tokio::test]
async fn a_client_error_is_recorded_as_failed_not_retried_until_an_operator_asks() {
    let app = TestApp::new().await;
    let (fake, base) = fake_twilio(&[Answer::BadRequest]).await;
    let (stop, worker) = start_worker(&app, &base);
    let id = send(&app, "to a bad number").await;
    let (_, attempts, _, error) = until(&app, id, "failed").await;
    assert_eq!(attempts, 1);
    assert!(error.expect("error").contains("400"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.seen.lock().expect("lock").len(),
        1,
        "no retry after a 4xx"
    );
    // The operator fixed the cause and sends it again: a fresh first attempt.
    app.store.retry_delivery(id).await.expect("retry");
    app.state.outbox_wakeup();
    let (_, attempts, provider_id, error) = until(&app, id, "sent").await;
    assert_eq!((attempts, error), (1, None));
    assert_eq!(provider_id.as_deref(), Some("SMfake2"));
    // Only failed or undelivered records can be retried; unknown ids are not found.
    assert!(matches!(
        app.store.retry_delivery(id).await,
        Err(e @ convo_core::StoreError::Refused(_)) if e.to_string().contains("is sent")
    ));
    assert!(matches!(
        app.store.retry_delivery(9_999).await,
        Err(convo_core::StoreError::NotFound(_))
    ));
    let failed = app
        .store
        .list_deliveries(Some(DeliveryStatus::Failed), 10)
        .await
        .expect("list");
    assert!(failed.is_empty());
    let all = app.store.list_deliveries(None, 10).await.expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].id, all[0].status.as_str()), (id, "sent"));
    drop(stop);
    worker.await.expect("worker");
}

#[tokio::test]
async fn a_provider_that_never_recovers_is_given_up_on() {
    let app = TestApp::new().await;
    let (fake, base) = fake_twilio(&[Answer::ServerError; 10]).await;
    let (stop, worker) = start_worker(&app, &base);
    let id = send(&app, "doomed").await;
    let (_, attempts, _, error) = until(&app, id, "failed").await;
    assert_eq!(attempts, 5);
    assert!(
        error
            .expect("error")
            .starts_with("gave up after 5 attempts")
    );
    assert_eq!(fake.seen.lock().expect("lock").len(), 5);
    drop(stop);
    worker.await.expect("worker");
}

#[tokio::test]
async fn entries_left_by_a_stopped_or_crashed_server_go_out_once_after_the_restart() {
    let app = TestApp::new().await;
    let (fake, base) = fake_twilio(&[]).await;
    // Queued while no worker runs (the server was down or the provider unreachable).
    let ids = [
        send(&app, "one").await,
        send(&app, "two").await,
        send(&app, "three").await,
    ];
    // A worker that claimed two of them and died before calling the provider.
    let dead = app.store.register_worker().await.expect("worker");
    let claimed = app
        .store
        .claim_deliveries(dead, Millis::now(), 60_000, 2)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let (stop, worker) = start_worker(&app, &base);
    for id in ids {
        until(&app, id, "sent").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bodies: Vec<String> = fake
        .seen
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|(_, form)| {
            form.iter()
                .find(|(k, _)| k == "Body")
                .map(|(_, v)| v.clone())
        })
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["one", "three", "two"], "each exactly once");
    drop(stop);
    worker.await.expect("worker");
}

#[tokio::test]
async fn a_batch_of_sends_is_in_flight_at_once() {
    let app = TestApp::new().await;
    let (fake, base) = fake_twilio(&[Answer::Pause; 8]).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(send(&app, &format!("reminder {i}")).await);
    }
    let (stop, worker) = start_worker(&app, &base);
    for id in ids {
        until(&app, id, "sent").await;
    }
    assert_eq!(fake.seen.lock().expect("lock").len(), 8);
    // One at a time would never overlap a slow provider's answers.
    assert!(
        fake.most.load(Ordering::SeqCst) > 1,
        "sends went out one at a time"
    );
    drop(stop);
    worker.await.expect("worker");
}

#[tokio::test]
async fn a_heartbeating_owner_keeps_its_claim_and_a_silent_ones_is_taken_over() {
    let app = TestApp::new().await;
    let id = send(&app, "claimed by a slow worker").await;
    let slow = app.store.register_worker().await.expect("worker");
    let claimed = app
        .store
        .claim_deliveries(slow, Millis::now(), 300, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    // Another process's worker (an owner id of its own) polls while the first one heartbeats,
    // for several times the staleness bound: a slow provider must not cause a second send.
    let other = slow + 1;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1_200) {
        app.store.heartbeat_worker(slow).await.expect("heartbeat");
        let stolen = app
            .store
            .claim_deliveries(other, Millis::now(), 300, 10)
            .await
            .expect("claim");
        assert!(stolen.is_empty(), "taken from a live owner: {stolen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first worker goes silent: after the bound, its claim is the other's.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = app
        .store
        .claim_deliveries(other, Millis::now(), 300, 10)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].id, taken[0].attempts), (id, 2));
    app.store.heartbeat_worker(other).await.expect("heartbeat");
    // The silent worker comes back and records what it saw: the new owner's claim stays, so
    // nothing else claims it meanwhile.
    app.store
        .finish_delivery(
            slow,
            id,
            convo_core::outbox::Attempt::Retry {
                error: "timed out".into(),
                at: Millis::now(),
            },
        )
        .await
        .expect("finish");
    let again = app
        .store
        .claim_deliveries(slow + 2, Millis::now(), 60_000, 10)
        .await
        .expect("claim");
    assert!(again.is_empty(), "{again:?}");
    let stats = app
        .store
        .outbox_stats(Millis::now(), 60_000)
        .await
        .expect("stats");
    assert_eq!((stats.pending, stats.claimed, stats.due), (1, 1, 0));
}

#[tokio::test]
async fn claims_of_a_batch_that_could_not_be_recorded_are_given_back() {
    let (db, faults) = crate::common::faults::wrap(crate::common::engine().fresh().await);
    let app = TestApp::on(db, convo_server::ApiConfig::default()).await;
    let (fake, base) = fake_twilio(&[]).await;
    // The database refuses to record the provider's answer (as a full disk would).
    faults.fail_finish(true);
    let (stop, worker) = start_worker(&app, &base);
    let id = send(&app, "recorded on the second try").await;
    for _ in 0..500 {
        if !fake.seen.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    faults.fail_finish(false);
    // The live worker gave its claim back, so it claims and sends again (at least once).
    let (_, attempts, provider_id, _) = until(&app, id, "sent").await;
    let requests = fake.seen.lock().expect("lock").len();
    assert!(attempts >= 2, "{attempts}");
    assert_eq!(i64::try_from(requests).expect("count"), attempts);
    assert_eq!(provider_id, Some(format!("SMfake{requests}")));
    drop(stop);
    worker.await.expect("worker");
}
