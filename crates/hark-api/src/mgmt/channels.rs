use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::MgmtCaller;
use crate::error::ApiResult;
use crate::out::channel_out;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/channels", get(list_channels))
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
        .map(|c| channel_out(c))
        .collect();
    let size = entries.len().max(1);
    Ok(Json(json!({
        "entries": entries,
        "page_info": {"__typename": "PageInfo", "after": null, "before": null, "page_size": size},
    })))
}
