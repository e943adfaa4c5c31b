//! Every route of the API, and the envelope for unknown routes and wrong methods.

mod authenticates;
mod conversations;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::{get, post};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authenticates", post(authenticates::create))
        .route("/conversations", get(conversations::list))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Route not found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
