//! Every route of the API, and the envelope for unknown routes and wrong methods.

mod authenticates;
mod conversations;
mod messages;
mod sms;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::{get, post};

pub fn router() -> Router<AppState> {
    Router::new()
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
