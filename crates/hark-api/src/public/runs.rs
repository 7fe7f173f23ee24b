//! `/v1/workflow_recipient_runs`: runs and their step-by-step events (the run log).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use hark_store::RunFilter;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use crate::out::{page_info, run_event_out, run_out};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/workflow_recipient_runs", get(list_runs))
        .route("/v1/workflow_recipient_runs/{id}", get(get_run))
}

async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let status = params.list("status");
    for s in &status {
        if hark_store::RunStatus::parse(s).is_none() {
            return Err(ApiError::field(
                "status",
                "must be one of queued, processing, paused, completed, cancelled",
            ));
        }
    }
    // `recipient` is a user's id, or an object reference sent as `recipient[id]` and
    // `recipient[collection]`.
    let (recipient_id, recipient_collection) = match params.get("recipient") {
        Some(user) => (Some(user.to_string()), None),
        None => (
            params.get("recipient.id").map(String::from),
            params.get("recipient.collection").map(String::from),
        ),
    };
    if recipient_collection.is_some() && recipient_id.is_none() {
        return Err(ApiError::field(
            "recipient",
            "an object reference needs both id and collection",
        ));
    }
    let filter = RunFilter {
        workflow_key: params.get("workflow").map(String::from),
        recipient_id,
        recipient_collection,
        workflow_run_id: params.get("workflow_run_id").map(String::from),
        tenant: params.get("tenant").map(String::from),
        status,
        has_errors: params.bool("has_errors")?,
        inserted_at_gte: params.timestamp("starting_at")?,
        inserted_at_lte: params.timestamp("ending_at")?,
    };
    let page = params.page()?;
    let result = state
        .store
        .list_recipient_runs(caller.env_id(), &filter, &page)
        .await?;
    Ok(Json(json!({
        "items": result.entries.iter().map(run_out).collect::<Vec<_>>(),
        "page_info": page_info(&result, page.page_size),
    })))
}

async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let run = state
        .store
        .get_recipient_run(caller.env_id(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow recipient run"))?;
    let events = state.store.run_events(&run.id).await?;
    let mut out = run_out(&run);
    out["events"] = Value::Array(events.iter().map(run_event_out).collect());
    Ok(Json(out))
}
