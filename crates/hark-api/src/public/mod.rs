//! The public API under `/v1`, one router per resource.

mod feeds;
mod messages;
mod runs;
mod users;
mod workflows;

use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(workflows::router())
        .merge(feeds::router())
        .merge(messages::router())
        .merge(runs::router())
}
