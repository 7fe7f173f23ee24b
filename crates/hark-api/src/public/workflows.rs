//! `/v1/workflows/{key}/trigger` and `/cancel`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hark_core::recipient::{validate_user_properties, FieldError, RecipientRequest};
use hark_core::{new_id, Millis};
use hark_store::{hash_secret, IdempotencyClaim, TriggerOutcome, TriggerWrite};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::KnockJson;
use crate::state::AppState;

const MAX_RECIPIENTS: usize = 1000;
const IDEMPOTENCY_WINDOW_MS: Millis = 24 * 60 * 60 * 1000;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/workflows/{key}/trigger", post(trigger))
        .route("/v1/workflows/{key}/cancel", post(cancel))
}

/// A validated trigger body.
struct TriggerIn {
    recipients: Vec<String>,
    inline_users: Vec<(String, Map<String, Value>)>,
    actor: Option<String>,
    tenant: Option<String>,
    data: Value,
    cancellation_key: Option<String>,
}

fn push_inline(
    inline: &mut Vec<(String, Map<String, Value>)>,
    errors: &mut Vec<FieldError>,
    request: RecipientRequest,
    field: &str,
) -> String {
    let id = request.id().to_string();
    if let RecipientRequest::InlineUser { properties, .. } = request {
        let mut props = properties;
        props.remove("__typename");
        props.remove("channel_data");
        props.remove("preferences");
        for e in validate_user_properties(&props) {
            errors.push(FieldError::new(format!("{field}.{}", e.field), e.message));
        }
        inline.push((id.clone(), props));
    }
    id
}

fn parse_trigger(body: &Value) -> Result<TriggerIn, Vec<FieldError>> {
    let Some(body) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be an object")]);
    };
    let mut errors = Vec::new();
    let mut inline = Vec::new();
    let mut recipients = Vec::new();
    match body.get("recipients") {
        Some(Value::Array(items)) => {
            if items.is_empty() {
                errors.push(FieldError::new(
                    "recipients",
                    "must have at least one recipient",
                ));
            }
            if items.len() > MAX_RECIPIENTS {
                errors.push(FieldError::new(
                    "recipients",
                    "must have at most 1000 recipients",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, item) in items.iter().enumerate().take(MAX_RECIPIENTS) {
                let field = format!("recipients[{i}]");
                match RecipientRequest::parse(item, &field) {
                    Ok(r) => {
                        let id = push_inline(&mut inline, &mut errors, r, &field);
                        if seen.insert(id.clone()) {
                            recipients.push(id);
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        None | Some(Value::Null) => errors.push(FieldError::new("recipients", "can't be blank")),
        Some(_) => errors.push(FieldError::new("recipients", "must be a list")),
    }
    let actor = match body.get("actor") {
        None | Some(Value::Null) => None,
        Some(value) => match RecipientRequest::parse(value, "actor") {
            Ok(r) => Some(push_inline(&mut inline, &mut errors, r, "actor")),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    let tenant = match body.get("tenant") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
        Some(Value::Object(t)) => match t.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Some(id.to_string()),
            _ => {
                errors.push(FieldError::new("tenant.id", "can't be blank"));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "tenant",
                "must be a tenant id or an object with an id",
            ));
            None
        }
    };
    let data = match body.get("data") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(d)) => Value::Object(d.clone()),
        Some(_) => {
            errors.push(FieldError::new("data", "must be an object"));
            Value::Null
        }
    };
    let cancellation_key = match body.get("cancellation_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.len() <= 255 => Some(k.clone()),
        Some(_) => {
            errors.push(FieldError::new(
                "cancellation_key",
                "must be a string of at most 255 characters",
            ));
            None
        }
    };
    if errors.is_empty() {
        Ok(TriggerIn {
            recipients,
            inline_users: inline,
            actor,
            tenant,
            data,
            cancellation_key,
        })
    } else {
        Err(errors)
    }
}

async fn trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Response> {
    caller.require_secret()?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN => Some(k.to_string()),
            _ => {
                return Err(ApiError::field(
                    "Idempotency-Key",
                    "must be a non-empty string of at most 255 characters",
                ))
            }
        },
    };
    let input = parse_trigger(&body).map_err(ApiError::invalid)?;
    let Some(workflow) = state
        .store
        .committed_workflow(caller.env_id(), &key)
        .await?
    else {
        return Err(ApiError::new(
            ErrorCode::WorkflowMissing,
            format!("The workflow `{key}` was not found or has no committed version"),
        ));
    };
    if !workflow.active {
        return Err(ApiError::new(
            ErrorCode::WorkflowInactive,
            format!("The workflow `{key}` is inactive"),
        ));
    }
    let now = state.now();
    let workflow_run_id = new_id();
    let response = json!({"workflow_run_id": workflow_run_id});
    let idempotency = idempotency_key.map(|k| IdempotencyClaim {
        key: format!("trigger:{key}:{k}"),
        request_hash: hash_secret(&body.to_string()),
        response: response.clone(),
        not_before: now - IDEMPOTENCY_WINDOW_MS,
    });
    let write = TriggerWrite {
        environment_id: caller.env_id().to_string(),
        workflow_key: key,
        workflow_version: workflow.version,
        workflow_run_id,
        actor: input.actor,
        tenant: input.tenant,
        data: input.data,
        cancellation_key: input.cancellation_key,
        recipients: input.recipients,
        inline_users: input.inline_users,
        idempotency,
        now,
    };
    match state.triggers.submit(write).await? {
        TriggerOutcome::Accepted => {
            state.engine.wake();
            Ok(Json(response).into_response())
        }
        TriggerOutcome::Replayed(previous) => {
            let mut resp = Json(previous).into_response();
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
        TriggerOutcome::IdempotencyKeyReused => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "This Idempotency-Key was already used with a different request body",
        )),
    }
}

async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<StatusCode> {
    caller.require_secret()?;
    let Some(cancellation_key) = body
        .get("cancellation_key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    else {
        return Err(ApiError::field("cancellation_key", "can't be blank"));
    };
    let recipients = match body.get("recipients") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut ids = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let r = RecipientRequest::parse(item, &format!("recipients[{i}]"))
                    .map_err(|e| ApiError::invalid(vec![e]))?;
                ids.push(r.id().to_string());
            }
            Some(ids)
        }
        Some(_) => return Err(ApiError::field("recipients", "must be a list")),
    };
    state
        .store
        .cancel_runs(
            caller.env_id(),
            &key,
            cancellation_key,
            recipients.as_deref(),
            state.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
