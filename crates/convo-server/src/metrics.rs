//! `/metrics` in Prometheus' text format, and the points that feed it. Labels are routes,
//! methods, statuses, outcomes and pools: never an id, a key, a name or a number from the data.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Request latencies, seconds: a list answers in about a millisecond, a slow disk in hundreds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Pool waits, seconds: zero when the pool has a free connection.
const WAIT_BUCKETS: &[f64] = &[
    0.000_01, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// The process-wide recorder, installed on first use (`None` if another recorder was installed
/// first, as an embedding program may do; `/metrics` then says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("convo_http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("convo_db_pool_wait_seconds".into()),
                        WAIT_BUCKETS,
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(e) => {
                    tracing::error!(error = %e, "metrics: bad histogram buckets");
                    return None;
                }
            };
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    spawn_upkeep(handle.clone());
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: another recorder is installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Histogram samples wait in memory until folded into buckets; fold them every few seconds even
/// when nobody scrapes, so memory stays flat.
fn spawn_upkeep(handle: PrometheusHandle) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "convo_http_requests_total",
        "HTTP requests answered, by matched route, method and status"
    );
    describe_histogram!(
        "convo_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's head to its response, by matched route"
    );
    describe_gauge!("convo_http_connections_open", "Client connections open");
    describe_counter!(
        "convo_http_connections_refused_total",
        "Connections answered 503 and closed at --max-connections"
    );
    describe_counter!(
        "convo_http_connections_closed_total",
        "Connections the server closed because a client stalled, by reason"
    );
    describe_counter!(
        "convo_http_accept_errors_total",
        "Errors accepting connections (such as too many open files)"
    );
    describe_counter!(
        "convo_sms_attempts_total",
        "Attempts to hand an SMS to the provider, by outcome (sent, retry, failed)"
    );
    describe_gauge!(
        "convo_outbox_pending",
        "Outgoing SMS not yet handed over: due now or waiting for a retry"
    );
    describe_gauge!("convo_outbox_due", "Outgoing SMS due now and not claimed");
    describe_gauge!(
        "convo_outbox_claimed",
        "Outgoing SMS claimed by a worker (with the provider)"
    );
    describe_gauge!(
        "convo_outbox_oldest_due_seconds",
        "How long the oldest due, unclaimed SMS has waited"
    );
    describe_counter!(
        "convo_webhook_attempts_total",
        "Webhook delivery attempts, by outcome (delivered, retry, failed)"
    );
    describe_histogram!(
        "convo_webhook_attempt_seconds",
        metrics::Unit::Seconds,
        "Time one webhook delivery attempt took, to the receiver's answer or the time limit"
    );
    describe_gauge!(
        "convo_webhook_pending",
        "Webhook deliveries not yet delivered: due now or waiting for a retry"
    );
    describe_gauge!(
        "convo_webhook_due",
        "Webhook deliveries due now and not claimed"
    );
    describe_gauge!(
        "convo_webhook_claimed",
        "Webhook deliveries claimed by a worker (being attempted or queued in it)"
    );
    describe_gauge!(
        "convo_webhook_queued",
        "Webhook deliveries this process has claimed and not yet started (its endpoint lanes)"
    );
    describe_histogram!(
        "convo_webhook_trip_seconds",
        metrics::Unit::Seconds,
        "One trip of the webhook worker to the database: record what ended, recheck, claim more"
    );
    describe_gauge!(
        "convo_webhook_oldest_due_seconds",
        "How long the oldest due, unclaimed webhook delivery has waited"
    );
    describe_histogram!(
        "convo_db_pool_wait_seconds",
        metrics::Unit::Seconds,
        "Time spent waiting for a database connection, by pool (read, write)"
    );
}

/// Counts and times every request by the route it matched (never its path: ids are data).
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("convo_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("convo_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A matched route as a static label; anything else (unknown paths) is one label, so a scanner
/// cannot grow the series.
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    let Some(path) = matched else {
        return "unmatched";
    };
    crate::routes::ROUTES
        .iter()
        .find(|r| **r == path.as_str())
        .copied()
        .unwrap_or("unmatched")
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Open connections, counted for as long as the guard lives.
pub struct ConnectionOpen(());

impl ConnectionOpen {
    pub fn count() -> Self {
        metrics::gauge!("convo_http_connections_open").increment(1.0);
        Self(())
    }
}

impl Drop for ConnectionOpen {
    fn drop(&mut self) {
        metrics::gauge!("convo_http_connections_open").decrement(1.0);
    }
}

pub fn connection_refused() {
    metrics::counter!("convo_http_connections_refused_total").increment(1);
}

pub fn connection_closed(reason: &'static str) {
    metrics::counter!("convo_http_connections_closed_total", "reason" => reason).increment(1);
}

pub fn accept_error() {
    metrics::counter!("convo_http_accept_errors_total").increment(1);
}

/// One provider attempt's outcome: `sent`, `retry` or `failed`.
pub fn sms_attempt(outcome: &'static str) {
    metrics::counter!("convo_sms_attempts_total", "outcome" => outcome).increment(1);
}

/// The outbox's shape, read from the store when scraped.
pub fn outbox(stats: &convo_core::outbox::OutboxStats) {
    #[allow(clippy::cast_precision_loss)]
    let f = |n: i64| n as f64;
    metrics::gauge!("convo_outbox_pending").set(f(stats.pending));
    metrics::gauge!("convo_outbox_due").set(f(stats.due));
    metrics::gauge!("convo_outbox_claimed").set(f(stats.claimed));
    metrics::gauge!("convo_outbox_oldest_due_seconds").set(f(stats.oldest_due_ms) / 1000.0);
}

/// One webhook attempt: `delivered`, `retry` or `failed`, and how long it took.
pub fn webhook_attempt(outcome: &'static str, took: Duration) {
    metrics::counter!("convo_webhook_attempts_total", "outcome" => outcome).increment(1);
    metrics::histogram!("convo_webhook_attempt_seconds").record(took.as_secs_f64());
}

/// One trip of the webhook worker to the store, and what it then held queued.
pub fn webhook_trip(took: Duration, queued: usize) {
    metrics::histogram!("convo_webhook_trip_seconds").record(took.as_secs_f64());
    metrics::gauge!("convo_webhook_queued").set(queued as f64);
}

/// The webhook queue's shape, read from the store when scraped.
pub fn webhook_queue(stats: &convo_core::outbox::OutboxStats) {
    #[allow(clippy::cast_precision_loss)]
    let f = |n: i64| n as f64;
    metrics::gauge!("convo_webhook_pending").set(f(stats.pending));
    metrics::gauge!("convo_webhook_due").set(f(stats.due));
    metrics::gauge!("convo_webhook_claimed").set(f(stats.claimed));
    metrics::gauge!("convo_webhook_oldest_due_seconds").set(f(stats.oldest_due_ms) / 1000.0);
}
