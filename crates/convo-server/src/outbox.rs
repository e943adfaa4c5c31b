//! The outbox worker: hands queued SMS to the provider, at least once, with backoff.
//!
//! A send is written with its outbox entry in one transaction (`Store::send_message`). The
//! worker registers as an owner, claims due entries in its name, calls the provider, and records
//! the outcome. While it heartbeats its claims are its own, however slow the provider: a slow
//! send is never sent twice. A crash leaves claims behind; the next start of a SQLite server
//! takes them back at once, and on a shared database another worker takes over the claims of an
//! owner silent for `stale_owner_ms`. Either way: at least once, never lost.

use async_trait::async_trait;
use convo_core::outbox::{Attempt, Delivery};
use convo_core::{Millis, Secret, Store, StoreError};
use std::collections::HashMap;
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
    auth_token: Secret,
    /// Where Twilio posts delivery status (`{public url}/sms/status`), when known.
    status_callback: Option<String>,
}

impl TwilioProvider {
    pub fn new(
        base_url: &str,
        account_sid: &str,
        auth_token: Secret,
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
            auth_token,
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
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
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
    /// How often the worker renews its claims.
    pub heartbeat_ms: u64,
    /// An owner whose last heartbeat is older than this has stopped: its claims are taken over.
    /// Several heartbeats long, so a busy database or a short pause never looks like a death.
    pub stale_owner_ms: i64,
    /// Longest wait between checks when nothing wakes the worker (also how soon a stale
    /// owner's claims are noticed).
    pub idle_ms: u64,
    /// On shutdown, how long sends already with the provider may take to be recorded; what is
    /// still out then is released and sent again by the next owner.
    pub stop_grace_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay_ms: 2_000,
            max_delay_ms: 15 * 60_000,
            max_attempts: 12,
            heartbeat_ms: 5_000,
            stale_owner_ms: 20_000,
            idle_ms: 5_000,
            stop_grace_ms: 20_000,
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

/// How many sends are in flight at once: a provider answering in 200 ms still moves 80 a second.
const CONCURRENT_SENDS: i64 = 16;

/// A registered outbox worker, ready to run.
pub struct Worker {
    store: Arc<dyn Store>,
    provider: Arc<dyn SmsProvider>,
    wakeup: Arc<Notify>,
    policy: RetryPolicy,
    id: i64,
}

impl Worker {
    /// Registers a claim owner. On SQLite this takes back every claim a crashed predecessor
    /// left, and fails when another server owns the database.
    pub async fn register(
        store: Arc<dyn Store>,
        provider: Arc<dyn SmsProvider>,
        wakeup: Arc<Notify>,
        policy: RetryPolicy,
    ) -> Result<Self, StoreError> {
        let id = store.register_worker().await?;
        tracing::info!(worker = id, "outbox worker registered");
        Ok(Self {
            store,
            provider,
            wakeup,
            policy,
            id,
        })
    }

    /// The claim owner this worker registered (the webhook worker claims in its name too).
    pub fn owner(&self) -> i64 {
        self.id
    }

    /// Sends until `shutdown` resolves; then claims nothing more, waits up to
    /// `stop_grace_ms` for sends already with the provider, and releases what is left.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            self.id,
            Duration::from_millis(self.policy.heartbeat_ms.max(1)),
        ));
        tokio::pin!(shutdown);
        let mut stop = Stop::default();
        while !stop.requested {
            let idle = match self.drain(&mut shutdown, &mut stop).await {
                Ok(()) => self.idle_wait().await,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot claim or record deliveries");
                    // The batch was dropped with its claims still ours: a live owner's claims
                    // are never taken over, so give them back now (the heartbeat re-adds this
                    // worker's row). At least once: the provider may have had some of them.
                    if let Err(e) = self.store.retire_worker(self.id).await {
                        tracing::error!(error = %e, "outbox: cannot release claims after an error");
                    }
                    self.policy.idle_ms
                }
            };
            if stop.requested {
                break;
            }
            tokio::select! {
                () = &mut shutdown => stop.requested = true,
                () = self.wakeup.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(idle.max(1))) => {}
            }
        }
        heartbeat.abort();
        // Whatever is still claimed (a send abandoned at the grace period) goes back to the
        // queue now rather than waiting to be taken over.
        match self.store.retire_worker(self.id).await {
            Ok(()) => tracing::info!(worker = self.id, "outbox worker stopped"),
            Err(e) => tracing::error!(error = %e, "outbox: cannot release claims on stop"),
        }
    }

    async fn idle_wait(&self) -> u64 {
        match self.store.next_delivery_at().await {
            Ok(Some(at)) => {
                let wait = at.0.saturating_sub(Millis::now().0).max(0);
                u64::try_from(wait).unwrap_or(0).min(self.policy.idle_ms)
            }
            Ok(None) => self.policy.idle_ms,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot read the next due time");
                self.policy.idle_ms
            }
        }
    }

    /// Sends everything due now, a claimed batch at a time, the batch's sends concurrently.
    /// Once `shutdown` fires nothing more is claimed, and the batch in hand gets the grace
    /// period.
    async fn drain(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
        stop: &mut Stop,
    ) -> Result<(), StoreError> {
        while !stop.requested {
            let due = self
                .store
                .claim_deliveries(
                    self.id,
                    Millis::now(),
                    self.policy.stale_owner_ms,
                    CONCURRENT_SENDS,
                )
                .await?;
            if due.is_empty() {
                return Ok(());
            }
            let mut sends = tokio::task::JoinSet::new();
            // A task that panics loses its delivery; this names it, so its claim is released.
            let mut claimed = HashMap::new();
            for d in due {
                let provider = self.provider.clone();
                let (id, attempts) = (d.id, d.attempts);
                let task = sends.spawn(async move {
                    let sent = provider.send(&d).await;
                    (d, sent)
                });
                claimed.insert(task.id(), (id, attempts));
            }
            loop {
                let joined = tokio::select! {
                    joined = sends.join_next_with_id() => joined,
                    () = shutdown.as_mut(), if !stop.requested => {
                        stop.requested = true;
                        stop.deadline = Some(tokio::time::Instant::now()
                            + Duration::from_millis(self.policy.stop_grace_ms));
                        tracing::info!(in_flight = sends.len(), "outbox: stopping; waiting for sends with the provider");
                        continue;
                    }
                    () = sleep_until(stop.deadline) => {
                        tracing::warn!(abandoned = sends.len(), "outbox: sends still out at the grace period are released and will be sent again");
                        sends.abort_all();
                        return Ok(());
                    }
                };
                let Some(joined) = joined else { break };
                let (id, attempts, sent) = match joined {
                    Ok((_, (d, sent))) => (d.id, d.attempts, sent),
                    Err(e) => {
                        let Some(&(id, attempts)) = claimed.get(&e.id()) else {
                            continue;
                        };
                        tracing::error!(delivery_id = id, "outbox: a send panicked");
                        (id, attempts, Sent::Temporary("the send panicked".into()))
                    }
                };
                self.record(id, attempts, sent).await?;
            }
        }
        Ok(())
    }

    async fn record(&self, id: i64, attempts: i64, sent: Sent) -> Result<(), StoreError> {
        let outcome = self.policy.outcome(sent, attempts, Millis::now());
        match &outcome {
            Attempt::Accepted { .. } => {
                crate::metrics::sms_attempt("sent");
                tracing::info!(delivery_id = id, attempts, "sms handed over");
            }
            Attempt::Retry { error, .. } => {
                crate::metrics::sms_attempt("retry");
                tracing::warn!(delivery_id = id, attempts, %error, "sms will be retried");
            }
            Attempt::Failed { error } => {
                crate::metrics::sms_attempt("failed");
                tracing::warn!(delivery_id = id, attempts, %error, "sms failed");
            }
        }
        self.store.finish_delivery(self.id, id, outcome).await
    }
}

/// How a stop is going: asked for, and when the sends in hand stop being waited for.
#[derive(Default)]
struct Stop {
    requested: bool,
    deadline: Option<tokio::time::Instant>,
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Renews the worker's claims until aborted. A failed renewal is only logged: the claims stay
/// valid for `stale_owner_ms`, several heartbeats.
async fn heartbeat(store: Arc<dyn Store>, worker: i64, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = store.heartbeat_worker(worker).await {
            tracing::error!(error = %e, worker, "outbox: heartbeat failed");
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
