//! The outbox worker: hands queued SMS to the provider, at least once, with backoff.
//!
//! A send is written with its outbox entry in one transaction (`Store::send_message`). The
//! worker claims due entries with a lease, calls the provider, and records the outcome. A crash
//! between the provider's answer and the record leaves the lease to expire, and the entry is
//! sent again: at-least-once, never lost.

use async_trait::async_trait;
use convo_core::write::{Attempt, Delivery};
use convo_core::{Millis, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What a provider said about one send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Accepted; the provider's id for the message.
    Accepted(String),
    /// Worth retrying: a 5xx, 429, timeout or network error.
    Temporary(String),
    /// Never going to work (a 4xx): recorded as failed.
    Permanent(String),
}

#[async_trait]
pub trait SmsProvider: Send + Sync {
    async fn send(&self, delivery: &Delivery) -> Sent;
}

/// The default provider: records the send (the worker marks it sent) and calls nothing.
pub struct LogProvider;

#[async_trait]
impl SmsProvider for LogProvider {
    async fn send(&self, d: &Delivery) -> Sent {
        // Never the body or the numbers: they are PHI.
        tracing::info!(
            delivery_id = d.id,
            message_id = d.message_id,
            "sms recorded (log provider: nothing sent)"
        );
        Sent::Accepted(format!("log-{}", d.id))
    }
}

/// Twilio's Messages API, or anything that speaks it, at `base_url`.
pub struct TwilioProvider {
    client: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: String,
    /// Where Twilio posts delivery status (`{public url}/sms/status`), when known.
    status_callback: Option<String>,
}

impl TwilioProvider {
    pub fn new(
        base_url: &str,
        account_sid: &str,
        auth_token: &str,
        status_callback: Option<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            account_sid: account_sid.to_string(),
            auth_token: auth_token.to_string(),
            status_callback,
        })
    }
}

#[async_trait]
impl SmsProvider for TwilioProvider {
    async fn send(&self, d: &Delivery) -> Sent {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url, self.account_sid
        );
        let mut form: Vec<(&str, &str)> = vec![("To", &d.to), ("From", &d.from)];
        if !d.body.is_empty() {
            form.push(("Body", &d.body));
        }
        if let Some(media) = &d.media_url {
            form.push(("MediaUrl", media));
        }
        // The delivery's own id rides in the callback URL (which Twilio signs), so a callback
        // that beats our record of the provider's id still finds its delivery.
        let callback = self.status_callback.as_ref().map(|c| {
            let sep = if c.contains('?') { '&' } else { '?' };
            format!("{c}{sep}delivery={}", d.id)
        });
        if let Some(callback) = &callback {
            form.push(("StatusCallback", callback));
        }
        let answer = self
            .client
            .post(&url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await;
        let response = match answer {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Sent::Temporary("the provider timed out".into()),
            Err(e) => return Sent::Temporary(format!("cannot reach the provider: {e}")),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if status.is_success() {
            return match json.get("sid").and_then(|s| s.as_str()) {
                Some(sid) => Sent::Accepted(sid.to_string()),
                None => Sent::Temporary("the provider's answer had no sid".into()),
            };
        }
        let reason = json
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("no message");
        let error = format!("provider answered {}: {reason}", status.as_u16());
        if status.is_server_error() || status.as_u16() == 429 {
            Sent::Temporary(error)
        } else {
            Sent::Permanent(error)
        }
    }
}

/// Retry timing.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// First retry after this; doubled each attempt up to `max_delay_ms`.
    pub base_delay_ms: i64,
    pub max_delay_ms: i64,
    /// After this many attempts a send is recorded as failed.
    pub max_attempts: i64,
    /// How long a claimed entry is hidden from other claims (a crash retries after it).
    pub lease_ms: i64,
    /// Longest wait between checks when nothing wakes the worker.
    pub idle_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay_ms: 2_000,
            max_delay_ms: 15 * 60_000,
            max_attempts: 12,
            lease_ms: 120_000,
            idle_ms: 5_000,
        }
    }
}

impl RetryPolicy {
    /// The outcome to record for a provider answer on attempt `attempts` (1-based).
    pub fn outcome(&self, sent: Sent, attempts: i64, now: Millis) -> Attempt {
        match sent {
            Sent::Accepted(provider_id) => Attempt::Accepted { provider_id },
            Sent::Permanent(error) => Attempt::Failed { error },
            Sent::Temporary(error) if attempts >= self.max_attempts => Attempt::Failed {
                error: format!("gave up after {attempts} attempts: {error}"),
            },
            Sent::Temporary(error) => {
                let shift = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
                let delay = self
                    .base_delay_ms
                    .saturating_mul(1i64 << shift)
                    .min(self.max_delay_ms);
                Attempt::Retry {
                    error,
                    at: Millis(now.0.saturating_add(delay)),
                }
            }
        }
    }
}

/// Runs until `shutdown` resolves; a batch in flight finishes first.
pub async fn run(
    store: Arc<dyn Store>,
    provider: Arc<dyn SmsProvider>,
    wakeup: Arc<Notify>,
    policy: RetryPolicy,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let idle = match drain(&store, &provider, &policy).await {
            Ok(()) => match store.next_delivery_at().await {
                Ok(Some(at)) => {
                    let wait = at.0.saturating_sub(Millis::now().0).max(0);
                    (wait as u64).min(policy.idle_ms)
                }
                Ok(None) => policy.idle_ms,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot read the next due time");
                    policy.idle_ms
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot claim deliveries");
                policy.idle_ms
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = wakeup.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(idle.max(1))) => {}
        }
    }
}

/// How many sends are in flight at once: a provider answering in 200 ms still moves 80 a second.
const CONCURRENT_SENDS: i64 = 16;

/// Sends everything due now, a claimed batch at a time, the batch's sends concurrently.
async fn drain(
    store: &Arc<dyn Store>,
    provider: &Arc<dyn SmsProvider>,
    policy: &RetryPolicy,
) -> Result<(), convo_core::StoreError> {
    loop {
        let due = store
            .claim_deliveries(Millis::now(), policy.lease_ms, CONCURRENT_SENDS)
            .await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut sends = tokio::task::JoinSet::new();
        for d in due {
            let provider = provider.clone();
            sends.spawn(async move {
                let sent = provider.send(&d).await;
                (d, sent)
            });
        }
        // Each outcome is recorded as it comes; a failed record leaves the others' leases to
        // expire, and they are sent again (at least once).
        while let Some(joined) = sends.join_next().await {
            let Ok((d, sent)) = joined else {
                tracing::error!("outbox: a send panicked; its lease will expire and it retries");
                continue;
            };
            let outcome = policy.outcome(sent, d.attempts, Millis::now());
            match &outcome {
                Attempt::Accepted { .. } => {
                    tracing::info!(delivery_id = d.id, attempts = d.attempts, "sms handed over")
                }
                Attempt::Retry { error, .. } => {
                    tracing::warn!(delivery_id = d.id, attempts = d.attempts, %error, "sms will be retried")
                }
                Attempt::Failed { error } => {
                    tracing::warn!(delivery_id = d.id, attempts = d.attempts, %error, "sms failed")
                }
            }
            store.finish_delivery(d.id, outcome).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_then_gives_up() {
        let p = RetryPolicy {
            base_delay_ms: 1_000,
            max_delay_ms: 5_000,
            max_attempts: 5,
            ..RetryPolicy::default()
        };
        let now = Millis(0);
        let at = |n| match p.outcome(Sent::Temporary("x".into()), n, now) {
            Attempt::Retry { at, .. } => Some(at.0),
            _ => None,
        };
        assert_eq!(
            [1, 2, 3, 4].map(at),
            [Some(1_000), Some(2_000), Some(4_000), Some(5_000)]
        );
        assert!(matches!(
            p.outcome(Sent::Temporary("x".into()), 5, now),
            Attempt::Failed { .. }
        ));
        assert!(matches!(
            p.outcome(Sent::Permanent("400".into()), 1, now),
            Attempt::Failed { .. }
        ));
        assert_eq!(
            p.outcome(Sent::Accepted("SM1".into()), 3, now),
            Attempt::Accepted {
                provider_id: "SM1".into()
            }
        );
    }
}
