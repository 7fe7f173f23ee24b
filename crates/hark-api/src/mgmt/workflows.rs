//! Workflows: list, read, upsert (optionally committing a new version), validate, activate.

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use hark_core::recipient::validate_id;
use hark_core::workflow::WorkflowDefinition;
use serde_json::{json, Value};

use crate::auth::MgmtCaller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{KnockJson, Params};
use crate::out::{page_info, workflow_out};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/workflows", get(list_workflows))
        .route(
            "/v1/workflows/{key}",
            get(get_workflow).put(upsert_workflow),
        )
        .route("/v1/workflows/{key}/validate", put(validate_workflow))
        .route("/v1/workflows/{key}/activate", put(activate_workflow))
}

fn channel_type_name(state: &AppState) -> impl Fn(&str) -> Option<&'static str> + '_ {
    move |key| state.channels().type_of(key).map(|t| t.as_str())
}

fn render(state: &AppState, caller: &MgmtCaller, w: &hark_store::WorkflowRecord) -> Value {
    workflow_out(w, &caller.environment.slug, &channel_type_name(state))
}

async fn list_workflows(
    State(state): State<AppState>,
    caller: MgmtCaller,
    params: Params,
) -> ApiResult<Json<Value>> {
    let page = params.page()?;
    let result = state
        .store
        .list_workflows(&caller.environment.id, &page)
        .await?;
    Ok(Json(json!({
        "entries": result.entries.iter().map(|w| render(&state, &caller, w)).collect::<Vec<_>>(),
        "page_info": page_info(&result, page.page_size),
    })))
}

async fn get_workflow(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    let workflow = state
        .store
        .get_workflow(&caller.environment.id, &key)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow"))?;
    Ok(Json(render(&state, &caller, &workflow)))
}

/// Validates the wrapped `{"workflow": {...}}` body and returns the definition to store.
fn validated(state: &AppState, key: &str, body: &Value) -> ApiResult<Value> {
    validate_id(key, "workflow_key").map_err(|e| ApiError::invalid(vec![e]))?;
    if !key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(ApiError::field(
            "workflow_key",
            "may contain only lowercase letters, digits, `-` and `_`",
        ));
    }
    let Some(definition) = body.get("workflow") else {
        return Err(ApiError::field("workflow", "can't be blank"));
    };
    let channels = state.channels().clone();
    let parsed = WorkflowDefinition::parse(definition, &|k| channels.type_of(k))
        .map_err(ApiError::invalid)?;
    if let Some(schema) = &parsed.trigger_data_json_schema {
        jsonschema::validator_for(schema).map_err(|e| {
            ApiError::field(
                "workflow.trigger_data_json_schema",
                &format!("is not a valid JSON schema: {e}"),
            )
        })?;
    }
    // Fields the CLI sends back but that are ours to compute.
    let mut stored = definition.clone();
    if let Some(map) = stored.as_object_mut() {
        for field in [
            "$schema",
            "key",
            "active",
            "valid",
            "environment",
            "sha",
            "created_at",
            "updated_at",
            "__annotation",
        ] {
            map.remove(field);
        }
    }
    Ok(stored)
}

async fn upsert_workflow(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
    params: Params,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    let definition = validated(&state, &key, &body)?;
    let commit = params.bool("commit")?.unwrap_or(false);
    let workflow = state
        .store
        .save_workflow(
            &caller.environment.id,
            &key,
            &definition,
            commit,
            state.now(),
        )
        .await?;
    state
        .lookups
        .forget_workflow_head(&caller.environment.id, &key);
    Ok(Json(
        json!({"workflow": render(&state, &caller, &workflow)}),
    ))
}

async fn validate_workflow(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    let definition = validated(&state, &key, &body)?;
    let now = state.now();
    let existing = state
        .store
        .get_workflow(&caller.environment.id, &key)
        .await?;
    let preview = hark_store::WorkflowRecord {
        key: key.clone(),
        active: existing.as_ref().map(|w| w.active).unwrap_or(true),
        draft: definition,
        committed_version: existing.as_ref().and_then(|w| w.committed_version),
        created_at: existing.as_ref().map(|w| w.created_at).unwrap_or(now),
        updated_at: now,
    };
    Ok(Json(json!({"workflow": render(&state, &caller, &preview)})))
}

async fn activate_workflow(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
    params: Params,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    // The SDK sends `{"status": bool}`; the CLI sends `?status=` with an empty body.
    let status = match body.get("status") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::field("status", "must be a boolean")),
        None => params.bool("status")?.unwrap_or(true),
    };
    let workflow = state
        .store
        .set_workflow_active(&caller.environment.id, &key, status, state.now())
        .await?
        .ok_or_else(|| ApiError::not_found("workflow"))?;
    state
        .lookups
        .forget_workflow_head(&caller.environment.id, &key);
    Ok(Json(
        json!({"workflow": render(&state, &caller, &workflow)}),
    ))
}
