//! Every route of the API, and the envelope for unknown routes and wrong methods.

mod authenticates;
mod conversations;
mod messages;
mod ops;
mod sms;
mod webhooks;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::{get, patch, post};

/// Every route's path, for metrics labels (a matched path is one of these).
pub const ROUTES: &[&str] = &[
    "/authenticates",
    "/conversations",
    "/conversations/{id}",
    "/messages",
    "/messages/{id}/seen",
    "/sms/inbound",
    "/sms/status",
    "/webhook_endpoints",
    "/webhook_endpoints/{id}",
    "/webhook_endpoints/{id}/webhook_subscriptions",
    "/webhook_endpoints/{id}/webhook_subscriptions/{subscription_id}",
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
        .route(
            "/webhook_endpoints",
            post(webhooks::create_endpoint).get(webhooks::list_endpoints),
        )
        .route(
            "/webhook_endpoints/{id}",
            patch(webhooks::update_endpoint).delete(webhooks::delete_endpoint),
        )
        .route(
            "/webhook_endpoints/{id}/webhook_subscriptions",
            post(webhooks::create_subscription).get(webhooks::list_subscriptions),
        )
        .route(
            "/webhook_endpoints/{id}/webhook_subscriptions/{subscription_id}",
            patch(webhooks::update_subscription).delete(webhooks::delete_subscription),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Route not found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
