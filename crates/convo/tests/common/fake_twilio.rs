//! A local stand-in for Twilio's Messages API, on its own thread and runtime so synchronous
//! tests can use it: it records every message body it receives and every one it answers, and
//! can hold requests (a provider that hangs) or answer slowly.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Fake {
    /// Bodies of every request, in arrival order.
    pub received: Mutex<Vec<String>>,
    /// Bodies of every request answered 201 (the provider took the text).
    pub answered: Mutex<Vec<String>>,
    /// The next this-many requests are never answered.
    pub hold_next: AtomicUsize,
    /// Every answer waits this long.
    pub delay_ms: AtomicU64,
    /// And up to this much more, varying by request.
    pub jitter_ms: AtomicU64,
}

pub struct FakeTwilio {
    pub url: String,
    pub fake: Arc<Fake>,
}

impl FakeTwilio {
    pub fn start() -> Self {
        let fake = Arc::new(Fake::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = fake.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let router = Router::new()
                    .route("/2010-04-01/Accounts/{sid}/Messages.json", post(messages))
                    .with_state(state);
                let _ = axum::serve(listener, router).await;
            });
        });
        Self { url, fake }
    }

    pub fn received(&self, body: &str) -> usize {
        count(&self.fake.received, body)
    }

    pub fn answered(&self, body: &str) -> usize {
        count(&self.fake.answered, body)
    }

    pub fn answered_all(&self) -> Vec<String> {
        self.fake.answered.lock().expect("lock").clone()
    }

    pub fn received_all(&self) -> Vec<String> {
        self.fake.received.lock().expect("lock").clone()
    }
}

fn count(list: &Mutex<Vec<String>>, body: &str) -> usize {
    list.lock()
        .expect("lock")
        .iter()
        .filter(|b| *b == body)
        .count()
}

async fn messages(State(fake): State<Arc<Fake>>, form: String) -> axum::response::Response {
    let body = form_urlencoded::parse(form.as_bytes())
        .find(|(k, _)| k == "Body")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let n = {
        let mut received = fake.received.lock().expect("lock");
        received.push(body.clone());
        received.len() as u64
    };
    let hold = fake
        .hold_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| h.checked_sub(1))
        .is_ok();
    if hold {
        std::future::pending::<()>().await;
    }
    let jitter = fake.jitter_ms.load(Ordering::SeqCst);
    // A fixed scramble of the request number: varied, but the same on every run.
    let extra = if jitter == 0 {
        0
    } else {
        n.wrapping_mul(2_654_435_761) % (jitter + 1)
    };
    let wait = fake.delay_ms.load(Ordering::SeqCst) + extra;
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    fake.answered.lock().expect("lock").push(body);
    (
        StatusCode::CREATED,
        format!(r#"{{"sid":"SMfake{n}","status":"queued"}}"#),
    )
        .into_response()
}
