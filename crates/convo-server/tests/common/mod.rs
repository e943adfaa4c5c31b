//! One TestApp for the black-box tests: the real router over a temp SQLite file, loaded with a
//! small fixture whose every timestamp is fixed.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use convo_core::store::prelude::*;
use convo_server::{ApiConfig, AppState, app};
use convo_store::{SqliteOptions, SqliteStore};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tempfile::TempDir;
use tower::ServiceExt;

pub const FIXTURE: &str = r#"
{"type":"institution","id":1,"subdomain":"acme","name":"Acme Dental"}
{"type":"institution","id":2,"subdomain":"other","name":"Other Clinic"}
{"type":"location","id":10,"institution_id":1,"name":"Downtown","tz":"America/Los_Angeles","phone_number":"+15551230000"}
{"type":"location","id":11,"institution_id":1,"name":"Mumbai","tz":"Asia/Kolkata"}
{"type":"location","id":20,"institution_id":2,"name":"Elsewhere","tz":"Europe/London"}
{"type":"user","id":5,"institution_id":1,"first_name":"Sam","last_name":"Lee","email":"sam@example.com","image":"https://img.example.com/sam.png"}
{"type":"user","id":6,"institution_id":1,"first_name":"Dana","last_name":null}
{"type":"user","id":7,"institution_id":2,"first_name":"Olga","last_name":"Other"}
{"type":"patient","id":100,"institution_id":1,"first_name":"Ana","middle_name":null,"last_name":"Diaz","email":"ana@example.com","foreign_id":"100437","foreign_id_type":"msg-opendental-DataSource-35","bio":{"phone_number":"5163042196","cell_phone_number":"+15163042196","date_of_birth":"1990-02-14","gender":"Female","new_patient":false,"non_patient":false},"inactive":false,"guarantor_id":null,"unsubscribe_sms":false,"last_sync_time":"2024-01-02T11:00:00.000Z","created_at":"2024-01-02T10:00:00.000Z","updated_at":"2024-01-02T10:30:00.000Z"}
{"type":"patient","id":101,"institution_id":1,"first_name":"Ben","middle_name":"Jo","last_name":"Okafor","guarantor_id":100,"created_at":"2024-01-02T10:00:00Z","updated_at":"2024-01-02T10:00:00Z"}
{"type":"patient","id":102,"institution_id":1,"created_at":"2024-01-02T10:00:00Z","updated_at":"2024-01-02T10:00:00Z"}
{"type":"patient","id":103,"institution_id":1,"first_name":"Cleo","last_name":"Stone","unsubscribe_sms":true,"created_at":"2024-01-02T10:00:00Z","updated_at":"2024-01-02T10:00:00Z"}
{"type":"patient","id":200,"institution_id":2,"first_name":"Zed","created_at":"2024-01-02T10:00:00Z","updated_at":"2024-01-02T10:00:00Z"}
{"type":"conversation","id":1000,"location_id":10,"patient_id":100,"created_at":"2024-01-03T09:00:00.000Z"}
{"type":"conversation","id":1001,"location_id":10,"patient_id":101,"created_at":"2024-02-01T00:00:00.000Z"}
{"type":"conversation","id":1002,"location_id":10,"patient_id":102,"created_at":"2024-03-01T00:00:00.000Z"}
{"type":"conversation","id":1004,"location_id":10,"patient_id":103,"created_at":"2024-03-01T00:00:00.000Z"}
{"type":"conversation","id":1003,"location_id":11,"patient_id":100,"created_at":"2024-01-04T00:00:00.000Z"}
{"type":"conversation","id":2000,"location_id":20,"patient_id":200,"created_at":"2024-01-04T00:00:00.000Z"}
{"type":"message","id":50000,"conversation_id":1000,"body":"See you Tuesday!","created_at":"2024-03-10T09:59:59.999Z","sender":{"type":"User","id":5}}
{"type":"message","id":50001,"conversation_id":1000,"body":"Thanks, see you","created_at":"2024-03-10T10:00:00.000Z","updated_at":"2024-03-11T00:00:00.000Z","sender":{"type":"Patient","id":100},"seen_by":["6","5"]}
{"type":"message","id":50002,"conversation_id":1000,"body":"Reminder: cleaning on 3/14 at 9am. Reply C to confirm.","created_at":"2024-03-12T08:00:00.000Z","sender":{"type":"System","id":null}}
{"type":"message","id":50003,"conversation_id":1000,"body":"C","created_at":"2024-03-12T08:05:00.000Z","sender":{"type":"Patient","id":100},"is_custom_reminder_response":true,"sms_msg_id":777,"attachment":{"file_name":"card.jpg","content_type":"image/jpeg","file_size":48213,"url":"https://files.example.com/card.jpg","updated_at":"2024-03-12T08:05:01.000Z"}}
{"type":"message","id":50010,"conversation_id":1001,"body":"Hello Ben","created_at":"2024-02-01T10:00:00.000Z","sender":{"type":"User","id":6}}
{"type":"message","id":50011,"conversation_id":1001,"body":"Hi!","created_at":"2024-02-02T10:00:00.000Z","sender":{"type":"Patient","id":101}}
{"type":"message","id":50020,"conversation_id":1003,"body":"Namaste","created_at":"2024-01-05T00:00:00.000Z","sender":{"type":"User","id":5}}
{"type":"message","id":50030,"conversation_id":2000,"body":"Other tenant's secret","created_at":"2024-01-05T00:00:00.000Z","sender":{"type":"User","id":7}}
"#;

pub struct TestApp {
    pub router: Router,
    pub store: Arc<SqliteStore>,
    pub state: AppState,
    /// A token for a key that may use `acme` only.
    pub token: String,
    pub key_id: i64,
    /// Statements SQLite has started on any connection of this app's store.
    pub statements: Arc<AtomicU64>,
    pub dir: TempDir,
}

pub use convo_core::store::import_text;

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(ApiConfig::default()).await
    }

    pub async fn with_config(config: ApiConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let statements = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&statements);
        let options = SqliteOptions {
            trace: Some(Arc::new(move |_sql: &str| {
                counter.fetch_add(1, Ordering::SeqCst);
            })),
            readers: 2,
        };
        let store = Arc::new(
            SqliteStore::open(dir.path().join("test.db"), options)
                .await
                .expect("open store"),
        );
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
            statements,
            dir,
        }
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
