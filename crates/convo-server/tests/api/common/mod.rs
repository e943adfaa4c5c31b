//! One TestApp for the black-box tests: the real router on a fresh database of the engine under
//! test (`engine`), loaded with the conformance suite's practice, whose every timestamp is fixed.
//! Tests observe state through the API and the store traits only.
#![allow(dead_code)]

mod engine;
pub mod faults;
pub mod receiver;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use convo_core::outbox::{Delivery, DeliveryRecord};
use convo_core::store::prelude::*;
use convo_core::{Conversation, Millis};
use convo_server::{ApiConfig, AppState, app};
use convo_store_tests::{Db, Engine};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

pub use convo_core::store::import_text;
/// The practice every HTTP test starts from: the conformance suite's, so both suites speak of
/// the same records.
pub use convo_store_tests::fixture::{PRACTICE as FIXTURE, delivery_where, tenant, whole_list};
pub use engine::{engine, owners_share_the_database};

pub struct TestApp {
    pub router: Router,
    pub store: Arc<dyn Store>,
    pub state: AppState,
    /// A token for a key that may use `acme` only.
    pub token: String,
    pub key_id: i64,
    _db: Db,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(ApiConfig::default()).await
    }

    pub async fn with_config(config: ApiConfig) -> Self {
        Self::spawn_with(engine().as_ref(), config).await
    }

    /// A fresh database of `engine` behind the router.
    pub async fn spawn_with(engine: &dyn Engine, config: ApiConfig) -> Self {
        Self::on(engine.fresh().await, config).await
    }

    /// The router on `db` (a fresh database, possibly wrapped: `faults`).
    pub async fn on(db: Db, config: ApiConfig) -> Self {
        let store = db.store.clone();
        import_text(store.as_ref(), FIXTURE)
            .await
            .expect("fixture imports");
        let key = store
            .create_api_key(&["acme".to_string()])
            .await
            .expect("key");
        let state = AppState::new(store.clone(), Some(b"test-secret"), config)
            .await
            .expect("state");
        let token = state.tokens.issue(key.id).expect("token");
        Self {
            router: app(state.clone()),
            store,
            state,
            token,
            key_id: key.id,
            _db: db,
        }
    }

    /// A delivery record, as `convo deliveries list` shows it.
    pub async fn delivery(&self, id: i64) -> DeliveryRecord {
        delivery_where(self.store.as_ref(), |d| d.id == id).await
    }

    /// What the worker would hand the provider now (a worker of its own claims it all).
    pub async fn outgoing(&self) -> Vec<Delivery> {
        let worker = self.store.register_worker().await.expect("worker");
        self.store
            .claim_deliveries(worker, Millis::now(), 60_000, 1_000)
            .await
            .expect("claim")
    }

    /// Every conversation of a location with every message (up to 100 each).
    pub async fn conversations(&self, institution: i64, location: i64) -> Vec<Conversation> {
        self.store
            .list_conversations(&tenant(institution, location), &whole_list())
            .await
            .expect("list")
            .conversations
    }

    /// Everything a write could touch (every conversation with its patient and messages, every
    /// delivery's status), for "nothing was written" checks.
    pub async fn snapshot(&self) -> String {
        let mut out = String::new();
        for (institution, location) in [(1, 10), (1, 11), (2, 20)] {
            let mut all = self.conversations(institution, location).await;
            all.sort_by_key(|c| c.id);
            for c in all {
                out.push_str(&format!("{c:?}\n"));
            }
        }
        let mut deliveries = self
            .store
            .list_deliveries(None, 10_000)
            .await
            .expect("deliveries");
        deliveries.sort_by_key(|d| d.id);
        for d in deliveries {
            out.push_str(&format!("{} {:?}\n", d.id, d.status));
        }
        out
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8 body");
        Reply {
            status,
            headers,
            text,
        }
    }

    /// GET with this app's token.
    pub async fn get(&self, uri: &str) -> Reply {
        self.send(
            Request::get(uri)
                .header("authorization", format!("Bearer {}", self.token))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    /// POST a JSON body with this app's token.
    pub async fn post_json(&self, uri: &str, body: &str) -> Reply {
        self.send(
            Request::post(uri)
                .header("authorization", format!("Bearer {}", self.token))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    /// POST a Twilio-style form to `path`, signed for `url` with `token` (None: unsigned).
    pub async fn post_twilio(
        &self,
        path: &str,
        params: &[(&str, &str)],
        signed: Option<(&str, &str)>,
    ) -> Reply {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let mut req = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "127.0.0.1:8080");
        if let Some((token, url)) = signed {
            req = req.header(
                "x-twilio-signature",
                convo_server::twilio::signature(token, url, &owned),
            );
        }
        self.send(req.body(Body::from(body)).expect("request"))
            .await
    }

    pub async fn list(&self, query: &str) -> Reply {
        self.get(&format!("/conversations?{query}")).await
    }
}

/// An object's keys in wire order (serde_json's `preserve_order` is on for tests).
pub fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts the error envelope exactly, and returns its messages.
    pub fn errors(&self, status: u16) -> Vec<String> {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let v = self.json();
        assert_eq!(
            keys(&v),
            ["code", "description", "error", "data"],
            "{}",
            self.text
        );
        assert_eq!(v["code"], false);
        assert!(v["description"].is_null() && v["data"].is_null());
        let errors: Vec<String> = v["error"]
            .as_array()
            .expect("error array")
            .iter()
            .map(|e| e.as_str().expect("string").to_string())
            .collect();
        assert!(!errors.is_empty());
        errors
    }

    /// Asserts a 200 list envelope and returns it.
    pub fn ok_list(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        let v = self.json();
        assert_eq!(keys(&v), ["code", "description", "error", "data", "count"]);
        assert_eq!(v["code"], true);
        assert_eq!(v["error"], serde_json::json!([]));
        v
    }

    pub fn ids(&self) -> Vec<i64> {
        self.ok_list()["data"]
            .as_array()
            .expect("data array")
            .iter()
            .map(|c| c["id"].as_i64().expect("id"))
            .collect()
    }
}
