//! HTTP surface of Hark: the public API (`/v1`), the Management API (`/mgmt/v1`) and
//! health checks. Handlers validate, authorize and translate; rules live in the engine
//! and the store.

pub mod auth;
pub mod error;
pub mod extract;
pub mod lookups;
mod mgmt;
pub mod out;
pub mod prometheus;
mod public;
pub mod realtime;
pub mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tower_http::cors::{Any, CorsLayer};

pub use state::AppState;

use crate::error::{ApiError, ErrorCode};

pub(crate) fn cursor_for(id: &str) -> String {
    hark_store::cursor::encode(id)
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    // Browser clients call public-key routes from other origins.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .allow_headers(Any)
        .expose_headers(Any);
    Router::new()
        .route("/healthz", get(healthz))
        .merge(public::router())
        .merge(realtime::router())
        .nest("/mgmt", mgmt::router())
        .fallback(route_missing)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(cors)
        .with_state(state)
}

/// What a node that runs only engine workers serves: health checks, and nothing that
/// accepts work.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .fallback(route_missing)
        .with_state(state)
}

async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    match state.store.environment_by_slug("development").await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

async fn route_missing() -> ApiError {
    ApiError::new(ErrorCode::RouteMissing, "No such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "Method not allowed on this route",
    )
}
