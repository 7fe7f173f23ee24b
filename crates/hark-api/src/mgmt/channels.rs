use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::MgmtCaller;
use crate::error::{ApiError, ApiResult};
use crate::out::channel_with_environments_out;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/channels", get(list_channels))
        .route("/v1/channels/{channel_key}", get(get_channel))
}

/// Channels come from the config file, so the whole list is one page.
async fn list_channels(
    State(state): State<AppState>,
    _caller: MgmtCaller,
) -> ApiResult<Json<Value>> {
    let entries: Vec<Value> = state
        .channels()
        .all()
        .iter()
        .map(channel_with_environments_out)
        .collect();
    let size = entries.len().max(1);
    Ok(Json(json!({
        "entries": entries,
        "page_info": {"__typename": "PageInfo", "after": null, "before": null, "page_size": size},
    })))
}

async fn get_channel(
    State(state): State<AppState>,
    _caller: MgmtCaller,
    Path(channel_key): Path<String>,
) -> ApiResult<Json<Value>> {
    let channel = state
        .channels()
        .by_id_or_key(&channel_key)
        .ok_or_else(|| ApiError::not_found("channel"))?;
    Ok(Json(channel_with_environments_out(channel)))
}
