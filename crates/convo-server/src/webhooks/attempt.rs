//! One attempt at a delivery (CONTRACT §8): the target checked again (an IP literal never meets
//! the resolver), both signatures made for this attempt's instant, one POST through the
//! delivery client, and the answer classified: a 2xx delivers; anything else, a timeout or a
//! refused address fails, with what a retry needs (`Retry-After` from a 429 or 503) and whether
//! the endpoint said it is gone (410).

use super::address::{Cidr, TargetError, check_target};
use super::client::refused_address;
use super::sign;
use std::sync::Arc;
use std::time::Duration;

/// What every attempt is held to: the networks allowed beyond global ones, whether plain http
/// is, and the attempt's time limit (the client's own, repeated here for its error text).
#[derive(Clone, Debug)]
pub struct Rules {
    pub allow: Arc<[Cidr]>,
    pub allow_http: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { status: u16 },
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the delivery's `delivery_errors` records: `HTTP 500`, `timed out after 15 s`,
    /// `address not allowed`, … (never a response body).
    pub error: String,
    pub status: Option<u16>,
    /// A `Retry-After` the receiver sent with a 429 or 503, in ms from now.
    pub retry_after_ms: Option<i64>,
    /// `410 Gone`: the endpoint goes inactive at once.
    pub gone: bool,
}

impl Failure {
    fn because(error: impl Into<String>) -> Outcome {
        Outcome::Failed(Failure {
            error: error.into(),
            status: None,
            retry_after_ms: None,
            gone: false,
        })
    }
}

/// POSTs `body` (event `event_id`) to `target_url`, signed with `secret_key` at `unix_seconds`.
pub async fn attempt(
    client: &reqwest::Client,
    rules: &Rules,
    target_url: &str,
    secret_key: &str,
    event_id: i64,
    unix_seconds: i64,
    body: Vec<u8>,
) -> Outcome {
    let url = match check_target(target_url, rules.allow_http, &rules.allow) {
        Ok(url) => url,
        Err(TargetError::AddressNotAllowed) => return Failure::because("address not allowed"),
        Err(e) => return Failure::because(e.to_string()),
    };
    let signed = match sign::sign(secret_key, event_id, unix_seconds, &body) {
        Ok(signed) => signed,
        Err(e) => return Failure::because(e.to_string()),
    };
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("timestamp", signed.timestamp)
        .header("signature", signed.signature)
        .header("webhook-id", signed.webhook_id)
        .header("webhook-timestamp", signed.webhook_timestamp)
        .header("webhook-signature", signed.webhook_signature)
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) if refused_address(&e) => return Failure::because("address not allowed"),
        Err(e) if e.is_timeout() => {
            return Failure::because(format!("timed out after {} s", rules.timeout.as_secs()));
        }
        Err(e) if e.is_connect() => return Failure::because("connection failed"),
        Err(_) => return Failure::because("request failed"),
    };
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Outcome::Delivered { status };
    }
    let retry_after_ms = match status {
        429 | 503 => response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after_ms(v, unix_seconds)),
        _ => None,
    };
    Outcome::Failed(Failure {
        error: format!("HTTP {status}"),
        status: Some(status),
        retry_after_ms,
        gone: status == 410,
    })
}

/// `Retry-After`: delta-seconds, or an HTTP-date (RFC 9110), as ms after `now_s`.
fn retry_after_ms(value: &str, now_s: i64) -> Option<i64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<i64>() {
        return (seconds >= 0).then(|| seconds.saturating_mul(1000));
    }
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let at = PARSER.parse_timestamp(value).ok()?;
    Some(
        at.as_second()
            .saturating_sub(now_s)
            .max(0)
            .saturating_mul(1000),
    )
}

#[cfg(test)]
mod tests {
    use super::super::client::delivery_client;
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    /// A loopback receiver answering `response` after `delay`, keeping each request it read.
    async fn receiver(
        response: &'static str,
        delay: Duration,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().expect("addr").port()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let keep = Arc::clone(&keep);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if let Ok(mut seen) = keep.lock() {
                        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                    tokio::time::sleep(delay).await;
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        (url, seen)
    }

    fn rules(timeout: Duration) -> (reqwest::Client, Rules) {
        let allow: Arc<[Cidr]> = Arc::from(["127.0.0.0/8".parse::<Cidr>().expect("cidr")]);
        let client = delivery_client(Arc::clone(&allow), timeout).expect("client");
        (
            client,
            Rules {
                allow,
                allow_http: true,
                timeout,
            },
        )
    }

    #[tokio::test]
    async fn a_2xx_delivers_and_the_request_carries_both_signatures() {
        let (url, seen) = receiver(
            "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let (client, rules) = rules(Duration::from_secs(5));
        let body = br#"{"resource_type":"Message"}"#.to_vec();
        let out = attempt(
            &client,
            &rules,
            &url,
            SECRET,
            42,
            1_795_521_600,
            body.clone(),
        )
        .await;
        assert_eq!(out, Outcome::Delivered { status: 204 });
        let request = seen.lock().expect("lock")[0].to_lowercase();
        let signed = sign::sign(SECRET, 42, 1_795_521_600, &body).expect("signed");
        for header in [
            "content-type: application/json".to_string(),
            format!("user-agent: convo/{}", env!("CARGO_PKG_VERSION")),
            format!("timestamp: {}", signed.timestamp.to_lowercase()),
            format!("signature: {}", signed.signature),
            "webhook-id: evt_42".to_string(),
            "webhook-timestamp: 1795521600".to_string(),
            format!(
                "webhook-signature: {}",
                signed.webhook_signature.to_lowercase()
            ),
        ] {
            assert!(request.contains(&header), "{header} missing from {request}");
        }
        assert!(request.ends_with(r#"{"resource_type":"message"}"#));
    }

    #[tokio::test]
    async fn failures_are_classified() {
        let (client, rules) = rules(Duration::from_secs(5));
        let cases: [(&'static str, Failure); 4] = [
            (
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                Failure {
                    error: "HTTP 500".into(),
                    status: Some(500),
                    retry_after_ms: None,
                    gone: false,
                },
            ),
            (
                "HTTP/1.1 410 Gone\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                Failure {
                    error: "HTTP 410".into(),
                    status: Some(410),
                    retry_after_ms: None,
                    gone: true,
                },
            ),
            (
                "HTTP/1.1 429 Too Many Requests\r\nretry-after: 120\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                Failure {
                    error: "HTTP 429".into(),
                    status: Some(429),
                    retry_after_ms: Some(120_000),
                    gone: false,
                },
            ),
            (
                "HTTP/1.1 302 Found\r\nlocation: https://example.com/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                Failure {
                    error: "HTTP 302".into(),
                    status: Some(302),
                    retry_after_ms: None,
                    gone: false,
                },
            ),
        ];
        for (response, want) in cases {
            let (url, _) = receiver(response, Duration::ZERO).await;
            let out = attempt(
                &client,
                &rules,
                &url,
                SECRET,
                1,
                1_795_521_600,
                b"{}".to_vec(),
            )
            .await;
            assert_eq!(out, Outcome::Failed(want));
        }
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out() {
        let (url, _) = receiver(
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        let (client, rules) = rules(Duration::from_secs(1));
        let out = attempt(
            &client,
            &rules,
            &url,
            SECRET,
            1,
            1_795_521_600,
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(
            out,
            Outcome::Failed(Failure {
                error: "timed out after 1 s".into(),
                status: None,
                retry_after_ms: None,
                gone: false
            })
        );
    }

    #[tokio::test]
    async fn a_literal_outside_the_allowed_networks_is_refused_without_a_request() {
        let (client, rules) = rules(Duration::from_secs(1));
        // Loopback is allowed in these rules (127.0.0.0/8 only): ::1 is not, nor private or
        // link-local addresses in any spelling.
        for url in [
            "http://10.0.0.1/hook",
            "http://[::1]:9/hook",
            "http://167772161/hook",
            "http://0xa9.254.169.254/latest/meta-data",
        ] {
            let out = attempt(
                &client,
                &rules,
                url,
                SECRET,
                1,
                1_795_521_600,
                b"{}".to_vec(),
            )
            .await;
            assert_eq!(
                out,
                Outcome::Failed(Failure {
                    error: "address not allowed".into(),
                    status: None,
                    retry_after_ms: None,
                    gone: false
                }),
                "{url}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after_ms("120", 0), Some(120_000));
        assert_eq!(retry_after_ms(" 0 ", 0), Some(0));
        assert_eq!(retry_after_ms("-5", 0), None);
        assert_eq!(retry_after_ms("soon", 0), None);
        // 2026-11-24T12:00:00Z plus 90 s.
        assert_eq!(
            retry_after_ms("Tue, 24 Nov 2026 12:01:30 GMT", 1_795_521_600),
            Some(90_000)
        );
        assert_eq!(
            retry_after_ms("Tue, 24 Nov 2026 11:00:00 GMT", 1_795_521_600),
            Some(0)
        );
    }
}
