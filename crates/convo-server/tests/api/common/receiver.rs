//! A webhook receiver on loopback for the delivery tests: it keeps every request it reads and
//! answers each as the test says (status, headers, a delay), and a clock the tests move by hand.

#[path = "../../webhooks/python.rs"]
mod python;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use convo_core::Millis;
use convo_server::webhooks::worker::Clock;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the receiver read it.
#[derive(Clone, Debug)]
pub struct Got {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How the receiver answers its `n`th request (0-based).
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

type Script = Box<dyn Fn(usize) -> Answer + Send + Sync>;

pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<Script>>,
    load: Arc<Load>,
}

#[derive(Clone)]
struct Shared {
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<Script>>,
    load: Arc<Load>,
}

/// Requests being answered now, and the most there ever were at once.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    most: AtomicUsize,
}

async fn take(State(s): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let at_once = s.load.now.fetch_add(1, Ordering::SeqCst) + 1;
    s.load.most.fetch_max(at_once, Ordering::SeqCst);
    let n = {
        let mut got = s.got.lock().expect("lock");
        got.push(Got {
            path: uri.path().to_string(),
            headers,
            body: body.to_vec(),
        });
        got.len() - 1
    };
    let answer = (s.script.lock().expect("lock"))(n);
    tokio::time::sleep(answer.delay).await;
    s.load.now.fetch_sub(1, Ordering::SeqCst);
    let mut response = StatusCode::from_u16(answer.status)
        .expect("a status")
        .into_response();
    for (name, value) in answer.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("a header value"));
    }
    response
}

impl Receiver {
    /// A receiver on 127.0.0.1 answering every request with `status`; its URL ends in `/hook`.
    pub async fn start(status: u16) -> Self {
        Self::scripted(move |_| Answer::status(status)).await
    }

    pub async fn scripted(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        let shared = Shared {
            got: Arc::default(),
            script: Arc::new(Mutex::new(Box::new(script))),
            load: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let router = Router::new().fallback(take).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            got: shared.got,
            script: shared.script,
            load: shared.load,
        }
    }

    /// The most requests it was answering at once.
    pub fn most_at_once(&self) -> usize {
        self.load.most.load(Ordering::SeqCst)
    }

    /// From now on, answer as `script` says.
    pub fn answer(&self, script: impl Fn(usize) -> Answer + Send + Sync + 'static) {
        *self.script.lock().expect("lock") = Box::new(script);
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    /// Waits (up to 10 s) until at least `n` requests have arrived; all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Got> {
        for _ in 0..1_000 {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} requests arrived, not {n}", self.got().len());
    }
}

/// A clock that stands still until moved, and a fixed retry spread.
pub struct ManualClock {
    now: AtomicI64,
    jitter: f64,
}

impl ManualClock {
    pub fn new(at: Millis, jitter: f64) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(at.0),
            jitter,
        })
    }

    pub fn set(&self, at: Millis) {
        self.now.store(at.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.now.load(Ordering::SeqCst))
    }

    fn jitter(&self) -> f64 {
        self.jitter
    }
}

/// Both signatures of a delivery checked by Python, not by our own code.
pub fn verified_in_python(secret: &str, got: &Got) -> Result<(), String> {
    python::verify_in_python(
        secret,
        [
            got.header("timestamp"),
            got.header("signature"),
            got.header("webhook-id"),
            got.header("webhook-timestamp"),
            got.header("webhook-signature"),
        ],
        &got.body,
    )
}
