//! `convo webhooks listen`: a receiver for trying webhooks out on one machine. It checks both
//! signatures of every delivery with the endpoint's secret, answers 204 (or 401 when either
//! fails, so the sender retries as it would for a real receiver), and says in one line what
//! arrived. It binds loopback only: it is a tool, not a service.

use super::sign::{self, Received};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

struct Listening {
    secret: String,
    lines: mpsc::UnboundedSender<String>,
}

/// A router taking deliveries on any path; each one's line goes to `lines`.
pub fn router(secret: String, lines: mpsc::UnboundedSender<String>) -> Router {
    Router::new()
        .fallback(post(receive))
        .with_state(Arc::new(Listening { secret, lines }))
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

async fn receive(State(l): State<Arc<Listening>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let got = Received {
        timestamp: header("timestamp"),
        signature: header("signature"),
        webhook_id: header("webhook-id"),
        webhook_timestamp: header("webhook-timestamp"),
        webhook_signature: header("webhook-signature"),
    };
    let now = convo_core::Millis::now().0 / 1000;
    let (status, line) = match sign::verify(&l.secret, &got, &body, now) {
        Ok(()) => (StatusCode::NO_CONTENT, describe(&body)),
        Err(e) => (
            StatusCode::UNAUTHORIZED,
            format!(
                "refused a delivery ({}): {e}",
                got.webhook_id.unwrap_or("no webhook-id")
            ),
        ),
    };
    // Nobody reading the lines any more means the command is ending: the answer still stands.
    let _ = l.lines.send(line);
    status
}

/// `evt_42 message_created: message 50001 in conversation 1000 from Patient: "Thanks, see
/// you then" (both signatures verified)`.
fn describe(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return "a verified delivery whose body is not JSON".into();
    };
    let m = &v["data"]["messages"][0];
    let text = m["body"].as_str().unwrap_or("");
    let short: String = text.chars().take(60).collect();
    let more = if short.len() < text.len() { "…" } else { "" };
    format!(
        "{} {}: message {} in conversation {} from {}: {:?}{more} (both signatures verified)",
        v["event_id"].as_str().unwrap_or("?"),
        v["event_name"].as_str().unwrap_or("?"),
        m["id"],
        m["conversation_id"],
        m["sender_info"]["meta_type"].as_str().unwrap_or("?"),
        short,
    )
}

#[cfg(test)]
mod tests {
    use super::super::address::Cidr;
    use super::super::attempt::{Outcome, Rules, attempt};
    use super::super::client::delivery_client;
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_listener_takes_what_a_delivery_attempt_sends_and_refuses_another_secret() {
        let secret = sign::new_secret().expect("secret");
        let (tx, mut lines) = mpsc::unbounded_channel();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().expect("addr").port()
        );
        tokio::spawn(serve(listener, router(secret.clone(), tx)));
        let allow: Arc<[Cidr]> = Arc::from(["127.0.0.0/8".parse::<Cidr>().expect("cidr")]);
        let timeout = Duration::from_secs(5);
        let client = delivery_client(Arc::clone(&allow), timeout).expect("client");
        let rules = Rules {
            allow,
            allow_http: true,
            timeout,
        };
        let body = br#"{"resource_type":"Message","event_name":"message_created","subdomain":"demo","data":{"messages":[{"id":7,"body":"Thanks, see you then","conversation_id":3,"sender_info":{"meta_type":"Patient"}}]},"event_id":"evt_5"}"#;
        let now = convo_core::Millis::now().0 / 1000;
        let out = attempt(&client, &rules, &url, &secret, 5, now, body.to_vec()).await;
        assert_eq!(out, Outcome::Delivered { status: 204 });
        assert_eq!(
            lines.recv().await.expect("a line"),
            "evt_5 message_created: message 7 in conversation 3 from Patient: \
             \"Thanks, see you then\" (both signatures verified)"
        );
        let other = sign::new_secret().expect("secret");
        let Outcome::Failed(f) =
            attempt(&client, &rules, &url, &other, 6, now, body.to_vec()).await
        else {
            panic!("another secret was accepted");
        };
        assert_eq!(f.status, Some(401));
        assert_eq!(
            lines.recv().await.expect("a line"),
            "refused a delivery (evt_6): the NexHealth signature does not match"
        );
    }
}
