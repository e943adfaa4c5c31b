//! The webhook worker (CONTRACT §8): claims due deliveries in the name of the process's claim
//! owner (the SMS outbox worker's, which heartbeats for both), attempts each one as its own
//! task, and records how it went, with the next retry from NexHealth's schedule. Claims wait
//! in a lane per endpoint, of which at most 4 run at once (the store leases an endpoint to one
//! process at a time, so that holds across processes); a freed slot takes the lane's next
//! claim at once, while one trip to the store at a time records what ended and claims more.
//! Deliveries to a slow endpoint never hold up the others.

use super::attempt::{Outcome, Rules, attempt};
use super::payload::{Event, body};
use super::schedule::{AfterFailure, after_failure};
use convo_core::tz::Zone;
use convo_core::webhook::{Claim, ClaimAsk, Finished, WebhookJob, WebhookResult};
use convo_core::{Millis, Store, StoreError};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::{HashMap, HashSet, VecDeque};
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
    /// Claims held at once by this process, in flight and queued, all endpoints together
    /// (0: the worker delivers nothing).
    pub held: usize,
    /// Attempts in flight at once to one endpoint (CONTRACT §8). Across processes too: one
    /// process at a time leases an endpoint.
    pub per_endpoint: usize,
    /// Claims held per endpoint, in flight and queued: a freed slot takes the next at once,
    /// while the trip to the database that records attempts and claims more runs beside.
    pub ahead: i64,
    /// A claim queued this long is checked again before its attempt (its subscription or
    /// endpoint may have gone or been deactivated meanwhile).
    pub recheck_after_ms: u64,
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
            held: 4_096,
            per_endpoint: 4,
            ahead: 256,
            recheck_after_ms: 1_000,
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

/// What an attempt task hands back: the job, when it began, its outcome, how long it took.
type Done = (WebhookJob, Millis, Outcome, Duration);

/// What a trip to the store took and brought back.
struct Trip {
    took: Duration,
    finished: Vec<Finished>,
    rechecked: Vec<i64>,
    claim: Result<Claim, StoreError>,
}

/// A claim waiting in its endpoint's lane.
struct Queued {
    job: WebhookJob,
    /// When it was claimed or last found still good.
    since: Instant,
    checking: bool,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Queued>,
    running: usize,
}

/// The claims this process holds, by endpoint: at most `per_endpoint` of each running.
#[derive(Default)]
struct Lanes {
    lanes: HashMap<i64, Lane>,
    held: usize,
}

impl Lanes {
    fn add(&mut self, jobs: Vec<WebhookJob>) {
        let now = Instant::now();
        for job in jobs {
            self.held += 1;
            self.lanes
                .entry(job.endpoint_id)
                .or_default()
                .queue
                .push_back(Queued {
                    job,
                    since: now,
                    checking: false,
                });
        }
    }

    /// The next jobs that may start now, counted as running. A lane whose next claim waits
    /// for its recheck waits with it, so each endpoint's deliveries start in claim order.
    fn ready(&mut self, per_endpoint: usize, recheck_after: Duration) -> Vec<WebhookJob> {
        let mut out = Vec::new();
        for lane in self.lanes.values_mut() {
            while lane.running < per_endpoint {
                match lane.queue.front() {
                    Some(q) if !q.checking && q.since.elapsed() < recheck_after => {}
                    _ => break,
                }
                if let Some(q) = lane.queue.pop_front() {
                    lane.running += 1;
                    out.push(q.job);
                }
            }
        }
        out
    }

    /// Queued claims held long enough to be checked again, marked as being checked.
    fn take_for_recheck(&mut self, recheck_after: Duration) -> Vec<i64> {
        let mut out = Vec::new();
        for q in self.lanes.values_mut().flat_map(|l| l.queue.iter_mut()) {
            if !q.checking && q.since.elapsed() >= recheck_after {
                q.checking = true;
                out.push(q.job.id);
            }
        }
        out
    }

    /// Whether some lane waits for a recheck that has not been asked for.
    fn wants_recheck(&self, recheck_after: Duration) -> bool {
        self.lanes.values().any(|l| {
            l.queue
                .front()
                .is_some_and(|q| !q.checking && q.since.elapsed() >= recheck_after)
        })
    }

    /// The recheck's answer: `kept` go on as if just claimed, the others are dropped (the
    /// store gave them back). `None`: the trip failed, ask again.
    fn rechecked(&mut self, asked: &[i64], kept: Option<&[i64]>) {
        // Most trips recheck nothing: no pass over every queued claim for them.
        if asked.is_empty() {
            return;
        }
        let asked: HashSet<i64> = asked.iter().copied().collect();
        let kept: Option<HashSet<i64>> = kept.map(|k| k.iter().copied().collect());
        let now = Instant::now();
        let mut dropped = 0;
        for lane in self.lanes.values_mut() {
            lane.queue.retain_mut(|q| {
                if !asked.contains(&q.job.id) {
                    return true;
                }
                q.checking = false;
                match &kept {
                    None => true,
                    Some(k) if k.contains(&q.job.id) => {
                        q.since = now;
                        true
                    }
                    Some(_) => {
                        tracing::info!(
                            delivery_id = q.job.id,
                            "webhooks: a queued delivery was deleted or deactivated; not sent"
                        );
                        dropped += 1;
                        false
                    }
                }
            });
        }
        self.held -= dropped;
        self.lanes
            .retain(|_, l| l.running > 0 || !l.queue.is_empty());
    }

    fn ended(&mut self, endpoint_id: i64) {
        self.held = self.held.saturating_sub(1);
        if let Some(lane) = self.lanes.get_mut(&endpoint_id) {
            lane.running = lane.running.saturating_sub(1);
            if lane.running == 0 && lane.queue.is_empty() {
                self.lanes.remove(&endpoint_id);
            }
        }
    }

    /// Stopping: queued claims are not started (they go back when the owner retires).
    fn drop_queued(&mut self) {
        for lane in self.lanes.values_mut() {
            self.held -= lane.queue.len();
            lane.queue.clear();
        }
        self.lanes.retain(|_, l| l.running > 0);
    }

    fn queued(&self) -> usize {
        self.lanes.values().map(|l| l.queue.len()).sum()
    }
}

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

    /// Delivers until `shutdown` resolves; then claims nothing more, starts nothing queued,
    /// and waits up to `stop_grace_ms` for attempts under way. What is still out then, or was
    /// queued, stays claimed until the owner retires, and goes again from the queue (the same
    /// `webhook-id`).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let recheck_after = Duration::from_millis(self.policy.recheck_after_ms);
        let mut lanes = Lanes::default();
        let mut running: JoinSet<Done> = JoinSet::new();
        // A task that panics loses its job; this names it, so its attempt is still recorded.
        let mut jobs: HashMap<tokio::task::Id, (WebhookJob, Millis)> = HashMap::new();
        // Attempts that ended and are not recorded yet: recorded by the next trip, with the
        // claim that refills the lanes.
        let mut done: Vec<Finished> = Vec::new();
        // One trip to the store at a time, beside the attempts.
        let mut trip: Option<tokio::task::JoinHandle<Trip>> = None;
        let mut stopping = false;
        let mut deadline = None;
        // Trips happen when attempts ended, when the next retry is due, when a queued claim
        // needs its recheck, and shortly after a wake-up (each write wakes the worker; a burst
        // of them is one claim, not hundreds). After a failed trip, not before `pause`.
        let mut claim_now = true;
        let mut wake_at: Option<tokio::time::Instant> = None;
        let mut pause: Option<tokio::time::Instant> = None;
        let mut wait = self.policy.idle_ms;
        loop {
            let paused = pause.is_some_and(|at| tokio::time::Instant::now() < at);
            if trip.is_none()
                && !paused
                && (claim_now || !done.is_empty() || lanes.wants_recheck(recheck_after))
            {
                claim_now = false;
                wake_at = None;
                pause = None;
                let limit = if stopping {
                    0
                } else {
                    self.policy.held.saturating_sub(lanes.held)
                };
                let recheck = if stopping {
                    Vec::new()
                } else {
                    lanes.take_for_recheck(recheck_after)
                };
                trip = Some(self.trip(std::mem::take(&mut done), recheck, limit));
            }
            for job in lanes.ready(self.policy.per_endpoint, recheck_after) {
                let started = self.clock.now();
                let (client, rules) = (self.client.clone(), self.rules.clone());
                let kept = job.clone();
                let task = running.spawn(async move {
                    let at = Instant::now();
                    let outcome = deliver(&client, &rules, started, &job).await;
                    (job, started, outcome, at.elapsed())
                });
                jobs.insert(task.id(), (kept, started));
            }
            if stopping && running.is_empty() && trip.is_none() && done.is_empty() {
                break;
            }
            let idle = tokio::time::sleep(Duration::from_millis(wait.max(1)));
            tokio::select! {
                Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                    for d in std::iter::once(joined)
                        .chain(std::iter::from_fn(|| running.try_join_next_with_id()))
                        .filter_map(|j| finished(j, &mut jobs))
                    {
                        lanes.ended(d.0.endpoint_id);
                        done.push(self.result(d));
                    }
                }
                joined = async { trip.as_mut().expect("a trip is under way").await }, if trip.is_some() => {
                    trip = None;
                    let t = match joined {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!(error = %e, "webhooks: a trip to the store panicked");
                            pause = Some(tokio::time::Instant::now() + Duration::from_millis(self.policy.idle_ms));
                            continue;
                        }
                    };
                    match t.claim {
                        Ok(claim) => {
                            lanes.rechecked(&t.rechecked, Some(&claim.kept));
                            let n = claim.jobs.len();
                            // Claimed before the stop was asked for: not started, given back
                            // when the owner retires.
                            if !stopping {
                                lanes.add(claim.jobs);
                            }
                            crate::metrics::webhook_trip(t.took, lanes.queued());
                            wait = if n == 0 && !stopping && lanes.held == 0 && done.is_empty() {
                                self.idle_wait().await
                            } else {
                                // More may be due than a trip takes: ask again soon.
                                if n > 0 && !stopping {
                                    wake_at.get_or_insert_with(|| tokio::time::Instant::now() + COALESCE);
                                }
                                self.policy.idle_ms
                            };
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "webhooks: cannot record or claim deliveries");
                            lanes.rechecked(&t.rechecked, None);
                            // Recorded with the next trip that works.
                            let mut again = t.finished;
                            again.append(&mut done);
                            done = again;
                            pause = Some(tokio::time::Instant::now() + Duration::from_millis(self.policy.idle_ms));
                            wait = self.policy.idle_ms;
                        }
                    }
                }
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    lanes.drop_queued();
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
                () = sleep_until(wake_at), if !stopping => {
                    wake_at = None;
                    claim_now = true;
                }
                () = sleep_until(pause) => pause = None,
                () = idle, if !stopping => claim_now = true,
            }
        }
        tracing::info!(
            owner = self.owner,
            queued = lanes.queued(),
            "webhook worker stopped"
        );
    }

    /// Records `finished`, rechecks `recheck` and claims up to `limit`, as a task of its own.
    fn trip(
        &self,
        finished: Vec<Finished>,
        recheck: Vec<i64>,
        limit: usize,
    ) -> tokio::task::JoinHandle<Trip> {
        let store = self.store.clone();
        let (owner, now) = (self.owner, self.clock.now());
        let (stale_ms, ahead) = (self.policy.stale_owner_ms, self.policy.ahead);
        tokio::spawn(async move {
            let ask = ClaimAsk {
                finished: &finished,
                recheck: &recheck,
                limit: i64::try_from(limit).unwrap_or(i64::MAX),
                ahead,
            };
            let started = Instant::now();
            let claim = store.claim_webhooks(owner, ask, now, stale_ms).await;
            Trip {
                took: started.elapsed(),
                finished,
                rechecked: recheck,
                claim,
            }
        })
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
    fn result(&self, (job, started_at, outcome, took): Done) -> Finished {
        let now = self.clock.now();
        let took_ms = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        let result = match outcome {
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
                let first = job.first_attempt_at.unwrap_or(started_at);
                let retry_at = match after_failure(
                    first.0,
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
        };
        Finished {
            delivery_id: job.id,
            started_at,
            result,
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
    jobs: &mut HashMap<tokio::task::Id, (WebhookJob, Millis)>,
) -> Option<Done> {
    match joined {
        Ok((id, done)) => {
            jobs.remove(&id);
            Some(done)
        }
        Err(e) => {
            let (job, started) = jobs.remove(&e.id())?;
            tracing::error!(delivery_id = job.id, "webhooks: an attempt panicked");
            let failed = Outcome::Failed(super::attempt::Failure {
                error: "the attempt failed inside the server".into(),
                status: None,
                retry_after_ms: None,
                gone: false,
            });
            Some((job, started, failed, Duration::ZERO))
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
