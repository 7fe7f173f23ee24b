//! `/v1/users/{id}/channel_data/{channel_id}`: a recipient's push tokens or chat
//! connections for one channel, validated against the channel's provider and stored as
//! a document keyed by the channel id.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use hark_engine::channel_data;
use hark_engine::registry::Channel;
use hark_store::{DocumentKind, Owner};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::KnockJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/users/{user_id}/channel_data/{channel_id}",
            get(get_user_data)
                .put(put_user_data)
                .delete(delete_user_data),
        )
        .route(
            "/v1/objects/{collection}/{object_id}/channel_data/{channel_id}",
            get(get_object_data)
                .put(put_object_data)
                .delete(delete_object_data),
        )
}

fn object_owner(caller: &Caller, collection: String, id: String) -> ApiResult<Owner> {
    caller.require_secret()?;
    Ok(Owner::Object { collection, id })
}

async fn get_user_data(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, channel_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    get_data(&state, &caller, Owner::User(user_id), &channel_id).await
}

async fn put_user_data(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, channel_id)): Path<(String, String)>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    put_data(&state, &caller, Owner::User(user_id), &channel_id, &body).await
}

async fn delete_user_data(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, channel_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_user(&user_id)?;
    delete_data(&state, &caller, Owner::User(user_id), &channel_id).await
}

async fn get_object_data(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, object_id, channel_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let owner = object_owner(&caller, collection, object_id)?;
    get_data(&state, &caller, owner, &channel_id).await
}

async fn put_object_data(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, object_id, channel_id)): Path<(String, String, String)>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    let owner = object_owner(&caller, collection, object_id)?;
    put_data(&state, &caller, owner, &channel_id, &body).await
}

async fn delete_object_data(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, object_id, channel_id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let owner = object_owner(&caller, collection, object_id)?;
    delete_data(&state, &caller, owner, &channel_id).await
}

/// Knock's `ChannelData` response.
fn channel_data_out(channel: &Channel, data: &Value) -> Value {
    let mut out = json!({"__typename": "ChannelData", "channel_id": channel.id, "data": data});
    if let Some(provider) = channel_data::knock_provider(channel) {
        out["provider"] = json!(provider);
    }
    out
}

/// The channel named by id or key.
fn channel(state: &AppState, id_or_key: &str) -> ApiResult<std::sync::Arc<Channel>> {
    state
        .channels()
        .by_id_or_key(id_or_key)
        .cloned()
        .ok_or_else(|| ApiError::not_found("channel"))
}

async fn get_data(
    state: &AppState,
    caller: &Caller,
    owner: Owner,
    channel_id: &str,
) -> ApiResult<Json<Value>> {
    let channel = channel(state, channel_id)?;
    let doc = state
        .store
        .get_document(
            caller.env_id(),
            &owner,
            DocumentKind::ChannelData,
            &channel.id,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("channel data"))?;
    Ok(Json(channel_data_out(&channel, &doc.data)))
}

async fn put_data(
    state: &AppState,
    caller: &Caller,
    owner: Owner,
    channel_id: &str,
    body: &Value,
) -> ApiResult<Json<Value>> {
    let channel = channel(state, channel_id)?;
    let Some(data) = body.get("data").filter(|d| !d.is_null()) else {
        return Err(ApiError::field("data", "is required"));
    };
    let data = channel_data::validate(&channel, data).map_err(ApiError::invalid)?;
    state
        .store
        .put_document(
            caller.env_id(),
            &owner,
            DocumentKind::ChannelData,
            &channel.id,
            &data,
            state.now(),
        )
        .await?;
    Ok(Json(channel_data_out(&channel, &data)))
}

async fn delete_data(
    state: &AppState,
    caller: &Caller,
    owner: Owner,
    channel_id: &str,
) -> ApiResult<StatusCode> {
    let channel = channel(state, channel_id)?;
    // Unsetting is idempotent, as in Knock: absent data is already unset.
    state
        .store
        .delete_document(
            caller.env_id(),
            &owner,
            DocumentKind::ChannelData,
            &channel.id,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
