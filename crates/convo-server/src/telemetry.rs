//! Request ids, one span per request (method, matched route, request id, institution) and a
//! panic guard that still answers with the envelope. Query strings, bodies and names are never
//! logged: they can hold patient data.

use crate::error::ApiError;
use axum::Router;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, Request, Response};
use axum::response::IntoResponse;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `<process start in hex>-<counter>`: unique per process run, cheap, and sortable.
#[derive(Clone)]
struct Ids {
    prefix: u64,
}

static COUNTER: AtomicU64 = AtomicU64::new(1);

impl MakeRequestId for Ids {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{n}", self.prefix)
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response<axum::body::Body> {
    ApiError::Internal("a handler panicked".into()).into_response()
}

pub fn layer(router: Router) -> Router {
    let prefix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<_>| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("<unmatched>", |m| m.as_str());
            let id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                method = %req.method(),
                route,
                request_id = id,
                institution_id = tracing::field::Empty,
            )
        })
        .on_request(())
        .on_response(|res: &Response<_>, latency: Duration, _: &Span| {
            tracing::info!(
                status = res.status().as_u16(),
                latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                "answered"
            );
        })
        .on_failure(());
    router
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(trace)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, Ids { prefix }))
}
