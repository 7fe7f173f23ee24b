//! The Management API, served under `/mgmt` so that `@knocklabs/mgmt` works with
//! `baseURL=http://HOST/mgmt`.

mod audiences;
mod channels;
mod email_layouts;
mod preferences;
mod workflows;

use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(audiences::router())
        .merge(channels::router())
        .merge(email_layouts::router())
        .merge(workflows::router())
        .merge(preferences::router())
}
