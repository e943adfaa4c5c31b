//! Every route of the API, and the envelope for unknown routes and wrong methods.

mod authenticates;
mod conversations;
mod messages;
mod ops;
mod sms;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::{get, post};

/// Every route's path, for metrics labels (a matched path is one of these).
pub const ROUTES: &[&str] = &[
    "/authenticates",
    "/conversations",
    "/conversations/{id}",
    "/messages",
    "/messages/{id}/seen",
    "/sms/inbound",
    "/sms/status",
    "/healthz",
    "/readyz",
    "/metrics",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/authenticates", post(authenticates::create))
        .route("/conversations", get(conversations::list))
        .route("/conversations/{id}", get(conversations::one))
        .route("/messages", post(messages::send))
        .route("/messages/{id}/seen", post(messages::seen))
        .route("/sms/inbound", post(sms::inbound))
        .route("/sms/status", post(sms::status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Route not found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
