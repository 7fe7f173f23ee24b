//! The public API under `/v1`, one router per resource.

mod audiences;
mod channel_data;
mod feeds;
mod messages;
mod objects;
pub(crate) mod preferences;
mod provider_callbacks;
mod runs;
pub(crate) mod tenants;
mod tracking;
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
        .merge(tenants::router())
        .merge(objects::router())
        .merge(audiences::router())
        .merge(preferences::router())
        .merge(channel_data::router())
        .merge(provider_callbacks::router())
        .merge(tracking::router())
}
