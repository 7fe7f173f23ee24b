//! `/mgmt/v1/preference_sets/default`: the environment-level default preference set.
//!
//! Knock edits this set in its dashboard and publishes no Management API route for it, so
//! Hark adds this one. It lies beneath every recipient's and tenant's preferences
//! (`hark_core::preferences::PreferenceSources`) and takes the same `PreferenceSetRequest`
//! body as a recipient's set, `__persistence_strategy__` included.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use hark_store::Owner;
use serde_json::Value;

use crate::auth::MgmtCaller;
use crate::error::ApiResult;
use crate::extract::KnockJson;
use crate::public::preferences::{delete_set, get_set, put_set};
use crate::state::AppState;

/// The only set an environment holds: Knock's environment default.
pub const ENVIRONMENT_SET_ID: &str = "default";

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/preference_sets/default",
        get(get_default).put(put_default).delete(delete_default),
    )
}

async fn get_default(State(state): State<AppState>, caller: MgmtCaller) -> ApiResult<Json<Value>> {
    get_set(
        &state,
        &caller.environment.id,
        Owner::Environment,
        ENVIRONMENT_SET_ID,
    )
    .await
}

async fn put_default(
    State(state): State<AppState>,
    caller: MgmtCaller,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    put_set(
        &state,
        &caller.environment.id,
        Owner::Environment,
        ENVIRONMENT_SET_ID,
        &body,
    )
    .await
}

async fn delete_default(
    State(state): State<AppState>,
    caller: MgmtCaller,
) -> ApiResult<StatusCode> {
    delete_set(
        &state,
        &caller.environment.id,
        Owner::Environment,
        ENVIRONMENT_SET_ID,
    )
    .await
}
