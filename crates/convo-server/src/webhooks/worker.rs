//! The webhook worker (CONTRACT §8): claims due deliveries in the name of the process's claim
//! owner (the SMS outbox worker's, which heartbeats for both), attempts each one as its own
//! task, and records how it went, with the next retry from NexHealth's schedule. Deliveries to
//! a slow endpoint never hold up the others: a slot frees as soon as its attempt ends, and the
//! store never hands out more than 4 at once for one endpoint, across every process.

use super::attempt::{Outcome, Rules, attempt};
use super::payload::{Event, body};
use super::schedule::{AfterFailure, after_failure};
use convo_core::tz::Zone;
use convo_core::webhook::{WebhookJob, WebhookResult};
use convo_core::{Millis, Store, StoreError};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// The time deliveries are scheduled and signed by, and the spread of their retries. The
/// server's is the system clock and a random spread; the schedule's tests move a clock by hand
/// (instead of waiting two days) and choose the spread.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
    /// A number in [-1, 1]: where in its ±10 % a retry falls.
    fn jitter(&self) -> f64;
}

pub struct SystemClock {
    random: SystemRandom,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            random: SystemRandom::new(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Millis::now()
    }

    fn jitter(&self) -> f64 {
        let mut bytes = [0u8; 4];
        if self.random.fill(&mut bytes).is_err() {
            return 0.0;
        }
        f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) * 2.0 - 1.0
    }
}

#[derive(Clone, Debug)]
pub struct WebhookPolicy {
    /// Attempts in flight at once in this process, all endpoints together.
    pub in_flight: usize,
    /// Attempts in flight at once to one endpoint, across every process (CONTRACT §8).
    pub per_endpoint: i64,
    /// Claims of an owner silent for this long are taken over (as the outbox's).
    pub stale_owner_ms: i64,
    /// Longest wait between checks when nothing wakes the worker: how soon a retry that falls
    /// due, or a delivery another process queued, is seen.
    pub idle_ms: u64,
    /// On shutdown, how long attempts already under way may take to be recorded.
    pub stop_grace_ms: u64,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        Self {
            in_flight: 64,
            per_endpoint: 4,
            stale_owner_ms: crate::outbox::RetryPolicy::default().stale_owner_ms,
            idle_ms: 1_000,
            stop_grace_ms: 20_000,
        }
    }
}

pub struct Worker {
    store: Arc<dyn Store>,
    owner: i64,
    client: reqwest::Client,
    rules: Rules,
    wakeup: Arc<Notify>,
    clock: Arc<dyn Clock>,
    policy: WebhookPolicy,
}

/// How long a wake-up waits for others before the claim it asks for.
const COALESCE: Duration = Duration::from_millis(2);

/// What an attempt task hands back: the job and its outcome, and how long it took.
type Done = (WebhookJob, Outcome, Duration);

impl Worker {
    /// A worker for claim owner `owner` (registered and heartbeating elsewhere).
    pub fn new(
        store: Arc<dyn Store>,
        owner: i64,
        rules: Rules,
        wakeup: Arc<Notify>,
        clock: Arc<dyn Clock>,
        policy: WebhookPolicy,
    ) -> Result<Self, String> {
        let client = super::client::delivery_client(rules.allow.clone(), rules.timeout)
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Self {
            store,
            owner,
            client,
            rules,
            wakeup,
            clock,
            policy,
        })
    }

    /// Delivers until `shutdown` resolves; then claims nothing more and waits up to
    /// `stop_grace_ms` for attempts under way. What is still out then stays claimed until the
    /// owner retires, and goes again from the queue (the same `webhook-id`).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut running: JoinSet<Done> = JoinSet::new();
        // A task that panics loses its job; this names it, so its attempt is still recorded.
        let mut jobs: HashMap<tokio::task::Id, WebhookJob> = HashMap::new();
        // Attempts that ended and are not recorded yet: recorded with the next claim, in one
        // transaction, so a freed slot is taken again in the same trip to the database.
        let mut done: Vec<Done> = Vec::new();
        let mut stopping = false;
        let mut deadline = None;
        // Claims happen when slots were freed, when the next retry is due, and shortly after a
        // wake-up (each write wakes the worker; a burst of them is one claim, not hundreds).
        let mut claim_now = true;
        let mut wake_at: Option<tokio::time::Instant> = None;
        let mut wait = self.policy.idle_ms;
        loop {
            if claim_now || !done.is_empty() {
                claim_now = false;
                wake_at = None;
                let finished = std::mem::take(&mut done);
                wait = match self
                    .cycle(finished, !stopping, &mut running, &mut jobs)
                    .await
                {
                    Ok(0) if !stopping => self.idle_wait().await,
                    Ok(_) => self.policy.idle_ms,
                    Err(e) => {
                        tracing::error!(error = %e, "webhooks: cannot record or claim deliveries");
                        self.policy.idle_ms
                    }
                };
            }
            if stopping && running.is_empty() {
                break;
            }
            let idle = tokio::time::sleep(Duration::from_millis(wait.max(1)));
            tokio::select! {
                Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                    done.extend(finished(joined, &mut jobs));
                    while let Some(joined) = running.try_join_next_with_id() {
                        done.extend(finished(joined, &mut jobs));
                    }
                }
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    deadline = Some(tokio::time::Instant::now()
                        + Duration::from_millis(self.policy.stop_grace_ms));
                    tracing::info!(in_flight = running.len(), "webhooks: stopping; waiting for attempts under way");
                }
                () = sleep_until(deadline) => {
                    tracing::warn!(abandoned = running.len(), "webhooks: attempts still out at the grace period will be made again");
                    running.abort_all();
                    break;
                }
                () = self.wakeup.notified(), if !stopping => {
                    wake_at.get_or_insert_with(|| tokio::time::Instant::now() + COALESCE);
                }
                () = sleep_until(wake_at), if !stopping => claim_now = true,
                () = idle, if !stopping => claim_now = true,
            }
        }
        tracing::info!(owner = self.owner, "webhook worker stopped");
    }

    /// Records the attempts that ended and, unless stopping, claims what the free slots allow
    /// and starts an attempt for each: how many were claimed.
    async fn cycle(
        &self,
        finished: Vec<Done>,
        claim: bool,
        running: &mut JoinSet<Done>,
        jobs: &mut HashMap<tokio::task::Id, WebhookJob>,
    ) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let results: Vec<(i64, WebhookResult)> = finished
            .into_iter()
            .map(|d| (d.0.id, self.result(d, now)))
            .collect();
        let free = if claim {
            self.policy.in_flight.saturating_sub(running.len())
        } else {
            0
        };
        if free == 0 && results.is_empty() {
            return Ok(0);
        }
        let claimed = self
            .store
            .claim_webhooks(
                self.owner,
                &results,
                now,
                self.policy.stale_owner_ms,
                (
                    i64::try_from(free).unwrap_or(i64::MAX),
                    self.policy.per_endpoint,
                ),
            )
            .await?;
        let n = claimed.len();
        for job in claimed {
            let (client, rules, clock) =
                (self.client.clone(), self.rules.clone(), self.clock.clone());
            let kept = job.clone();
            let task = running.spawn(async move {
                let started = Instant::now();
                let outcome = deliver(&client, &rules, clock.now(), &job).await;
                (job, outcome, started.elapsed())
            });
            jobs.insert(task.id(), kept);
        }
        Ok(n)
    }

    async fn idle_wait(&self) -> u64 {
        match self.store.next_webhook_at().await {
            Ok(Some(at)) => {
                let wait = at.0.saturating_sub(self.clock.now().0).max(0);
                u64::try_from(wait).unwrap_or(0).min(self.policy.idle_ms)
            }
            Ok(None) => self.policy.idle_ms,
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot read the next due time");
                self.policy.idle_ms
            }
        }
    }

    /// What an attempt came to, with its next retry when it failed.
    fn result(&self, (job, outcome, took): Done, now: Millis) -> WebhookResult {
        let took_ms = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        match outcome {
            Outcome::Delivered { status } => {
                crate::metrics::webhook_attempt("delivered", took);
                tracing::info!(
                    delivery_id = job.id,
                    event_id = job.event.id,
                    endpoint_id = job.endpoint_id,
                    status,
                    "webhook delivered"
                );
                WebhookResult::Delivered { status, took_ms }
            }
            Outcome::Failed(f) => {
                let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
                let retry_at = match after_failure(
                    job.first_attempt_at.0,
                    attempts,
                    now.0,
                    self.clock.jitter(),
                    f.retry_after_ms,
                ) {
                    AfterFailure::RetryAt(at) if !f.gone => Some(Millis(at)),
                    _ => None,
                };
                crate::metrics::webhook_attempt(
                    if retry_at.is_some() {
                        "retry"
                    } else {
                        "failed"
                    },
                    took,
                );
                tracing::warn!(
                    delivery_id = job.id,
                    event_id = job.event.id,
                    endpoint_id = job.endpoint_id,
                    attempts,
                    error = %f.error,
                    retry = retry_at.is_some(),
                    "webhook attempt failed"
                );
                WebhookResult::Failed {
                    error: f.error,
                    status: f.status,
                    took_ms,
                    retry_at,
                    gone: f.gone,
                }
            }
        }
    }
}

/// One attempt at `job`, its body built from the frozen event and the earlier attempts' errors.
pub async fn deliver(
    client: &reqwest::Client,
    rules: &Rules,
    now: Millis,
    job: &WebhookJob,
) -> Outcome {
    let e = &job.event;
    let zone = Zone::get(&e.zone).unwrap_or_else(Zone::utc);
    // A provider's callback is stored as `provider error <code>`: the receiver gets the code.
    let delivery = e.delivery.as_ref().map(|(status, error)| {
        let code = error
            .as_deref()
            .map(|text| text.strip_prefix("provider error ").unwrap_or(text));
        (*status, code)
    });
    let event = Event {
        id: e.id,
        name: e.name,
        time: e.time,
        subdomain: &e.subdomain,
        institution_id: e.institution_id,
        message: &e.message,
        zone: &zone,
        location_id: e.location_id,
        patient_id: e.patient_id,
        delivery,
    };
    let bytes = body(&event, &job.errors);
    attempt(
        client,
        rules,
        &job.target_url,
        &job.secret_key,
        e.id,
        now.0.div_euclid(1000),
        bytes,
    )
    .await
}

/// A joined attempt task's result; a task that panicked still reports its job, as failed.
fn finished(
    joined: Result<(tokio::task::Id, Done), tokio::task::JoinError>,
    jobs: &mut HashMap<tokio::task::Id, WebhookJob>,
) -> Option<Done> {
    match joined {
        Ok((id, done)) => {
            jobs.remove(&id);
            Some(done)
        }
        Err(e) => {
            let job = jobs.remove(&e.id())?;
            tracing::error!(delivery_id = job.id, "webhooks: an attempt panicked");
            let failed = Outcome::Failed(super::attempt::Failure {
                error: "the attempt failed inside the server".into(),
                status: None,
                retry_after_ms: None,
                gone: false,
            });
            Some((job, failed, Duration::ZERO))
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
