//! `POST /v1/providers/{channel_id}/callbacks`: delivery status callbacks from the
//! provider behind a configured channel. No API key: the provider proves itself with the
//! channel's callback secret (signature or credentials), checked before anything is read
//! or written. Messages are matched within that channel only.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use hark_channels::callbacks::{CallbackError, MessageRef, StatusReport};
use hark_store::ProviderStatusUpdate;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/providers/{channel_id}/callbacks", post(receive))
}

async fn receive(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let channel = state
        .channels()
        .by_id_or_key(&channel_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("channel"))?;
    let verifier = channel.status_callbacks.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidSignature,
            format!(
                "Channel `{}` has no status callback secret configured, so no callback to it can be verified",
                channel.key
            ),
        )
    })?;
    let reports = verifier.verify(&headers, &body).map_err(|e| match e {
        CallbackError::Unauthorized(m) => ApiError::new(ErrorCode::InvalidSignature, m),
        CallbackError::Malformed(m) => ApiError::new(ErrorCode::InvalidParams, m),
    })?;
    let mut applied = 0;
    for report in &reports {
        if apply(&state, &channel.key, &channel.provider, report).await? {
            applied += 1;
        }
    }
    // Reports about unknown messages are acknowledged too: a provider retries anything
    // but a 2xx, and retrying will not make the message appear.
    Ok(Json(json!({"received": reports.len(), "applied": applied})))
}

async fn apply(
    state: &AppState,
    channel_key: &str,
    provider: &str,
    report: &StatusReport,
) -> ApiResult<bool> {
    let message = match &report.message {
        MessageRef::Hark(id) => state.store.load_message_for_job(id).await?,
        MessageRef::Provider(id) => state.store.message_by_provider_id(channel_key, id).await?,
    };
    // A Hark id from another channel's message is not this provider's to change.
    let Some(message) = message.filter(|m| m.channel_key == channel_key) else {
        return Ok(false);
    };
    let status = report.status.as_str();
    let update = ProviderStatusUpdate {
        message_id: message.id,
        status: status.to_string(),
        event_type: format!("message.{status}"),
        event_data: json!({
            "provider": provider,
            "provider_event": report.provider_event,
            "reason": report.reason,
        }),
        now: state.now(),
    };
    Ok(state.store.apply_provider_status(&update).await?)
}
