//! Operations (CONTRACT §9): liveness, readiness and metrics, without a token and without data.

use crate::AppState;
use crate::error::{ApiError, json_bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use convo_core::{Millis, Refusal, StoreError};
use std::time::Duration;

const READY_WITHIN: Duration = Duration::from_secs(2);

/// 200 while the process runs: it answers, so it is alive.
pub async fn healthz() -> Response {
    json_bytes(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

/// 200 when the database answers and its schema is current; 503 with the envelope otherwise,
/// so a load balancer sends no traffic to a server that would only fail it.
pub async fn readyz(State(state): State<AppState>) -> Response {
    // A probe wants an answer, not a hang: a database locked or stuck past this is not ready.
    let checked = tokio::time::timeout(READY_WITHIN, state.store.check_ready()).await;
    match checked {
        Ok(Ok(())) => json_bytes(StatusCode::OK, br#"{"status":"ready"}"#.to_vec()),
        Err(_) => {
            tracing::warn!("not ready: the database did not answer in time");
            ApiError::Unavailable(format!(
                "The database did not answer within {} s",
                READY_WITHIN.as_secs()
            ))
            .into_response()
        }
        Ok(Err(e)) => {
            let reason = match &e {
                StoreError::Refused(r @ Refusal::SchemaMismatch { .. }) => r.to_string(),
                _ => "The database cannot be read".into(),
            };
            tracing::warn!(error = %e, "not ready");
            ApiError::Unavailable(reason).into_response()
        }
    }
}

/// Prometheus text format. The outbox and webhook queue gauges are read from the store at scrape time.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = crate::metrics::handle() else {
        return ApiError::Unavailable("Metrics are not available in this process".into())
            .into_response();
    };
    match state
        .store
        .outbox_stats(Millis::now(), state.config.stale_owner_ms)
        .await
    {
        Ok(stats) => crate::metrics::outbox(&stats),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the outbox"),
    }
    match state
        .store
        .webhook_stats(Millis::now(), state.config.stale_owner_ms)
        .await
    {
        Ok(stats) => crate::metrics::webhook_queue(&stats),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the webhook queue"),
    }
    let mut response = (StatusCode::OK, handle.render()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
