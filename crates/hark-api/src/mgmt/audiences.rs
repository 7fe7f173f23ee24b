//! `/mgmt/v1/audiences`: audience definitions. A `static` audience's members are managed
//! through the public API (`/v1/audiences/{key}/members`); a `dynamic` one is defined by
//! `segments` of user-property conditions, evaluated when a condition asks about it.
//!
//! Hark has no branches or commits for audiences: a write takes effect at once in the
//! addressed environment, so `branch`, `commit` and `annotate` are accepted and ignored.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use hark_core::audience::Segments;
use hark_core::recipient::{validate_id, FieldError};
use hark_core::time::rfc3339;
use hark_store::AudienceDefinition;
use serde_json::{json, Value};

use crate::auth::MgmtCaller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{KnockJson, Params};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audiences", get(list_audiences))
        .route(
            "/v1/audiences/{audience_key}",
            get(get_audience)
                .put(upsert_audience)
                .delete(archive_audience),
        )
}

/// Knock's `StaticAudience` / `DynamicAudience`.
fn audience_out(audience: &AudienceDefinition, environment: &str) -> Value {
    let mut out = json!({
        "key": audience.key,
        "name": audience.name,
        "description": audience.description,
        "type": audience.audience_type,
        "environment": environment,
        "sha": null,
        "created_at": rfc3339(audience.created_at),
        "updated_at": rfc3339(audience.updated_at),
    });
    if audience.audience_type == "dynamic" {
        out["segments"] = audience.segments.clone();
    }
    out
}

async fn list_audiences(
    State(state): State<AppState>,
    caller: MgmtCaller,
    params: Params,
) -> ApiResult<Json<Value>> {
    let page_size = params.page_size()?;
    let mut audiences = state
        .store
        .list_audiences(&caller.environment.id, params.get("after"), page_size + 1)
        .await?;
    let more = audiences.len() as i64 > page_size;
    audiences.truncate(page_size as usize);
    let after = if more {
        audiences
            .last()
            .map(|a| json!(a.key))
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    Ok(Json(json!({
        "entries": audiences
            .iter()
            .map(|a| audience_out(a, &caller.environment.slug))
            .collect::<Vec<_>>(),
        "page_info": {"__typename": "PageInfo", "after": after, "before": null, "page_size": page_size},
    })))
}

async fn get_audience(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    let audience = state
        .store
        .get_audience(&caller.environment.id, &key)
        .await?
        .filter(|a| a.archived_at.is_none())
        .ok_or_else(|| ApiError::not_found("audience"))?;
    Ok(Json(audience_out(&audience, &caller.environment.slug)))
}

/// Validates a `WrappedAudienceRequestRequest` into the definition to store.
fn parse_audience(key: &str, body: &Value) -> Result<AudienceDefinition, Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Err(e) = validate_id(key, "audience_key") {
        errors.push(e);
    }
    let Some(audience) = body.get("audience").filter(|a| a.is_object()) else {
        errors.push(FieldError::new("audience", "must be an object"));
        return Err(errors);
    };
    let name = match audience.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        _ => {
            errors.push(FieldError::new("audience.name", "can't be blank"));
            String::new()
        }
    };
    let description = match audience.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => {
            errors.push(FieldError::new("audience.description", "must be a string"));
            None
        }
    };
    let audience_type = audience.get("type").and_then(Value::as_str).unwrap_or("");
    let segments = match audience_type {
        "static" => {
            if audience.get("segments").is_some_and(|s| !s.is_null()) {
                errors.push(FieldError::new(
                    "audience.segments",
                    "only dynamic audiences have segments",
                ));
            }
            json!([])
        }
        "dynamic" => {
            let segments = audience.get("segments").cloned().unwrap_or(Value::Null);
            if let Err(e) = Segments::parse(&segments, "audience.segments") {
                errors.extend(e);
            }
            segments
        }
        _ => {
            errors.push(FieldError::new(
                "audience.type",
                "must be `static` or `dynamic`",
            ));
            Value::Null
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(AudienceDefinition {
        key: key.to_string(),
        name,
        description,
        audience_type: audience_type.to_string(),
        segments,
        archived_at: None,
        created_at: 0,
        updated_at: 0,
    })
}

async fn upsert_audience(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    let audience = parse_audience(&key, &body).map_err(ApiError::invalid)?;
    if let Some(existing) = state
        .store
        .get_audience(&caller.environment.id, &key)
        .await?
    {
        // Knock: "Audience types cannot be changed after creation."
        if existing.audience_type != audience.audience_type {
            return Err(ApiError::field(
                "audience.type",
                &format!(
                    "can't change: `{key}` is a {} audience",
                    existing.audience_type
                ),
            ));
        }
    }
    let stored = state
        .store
        .upsert_audience(&caller.environment.id, &audience, state.now())
        .await?;
    Ok(Json(
        json!({ "audience": audience_out(&stored, &caller.environment.slug) }),
    ))
}

async fn archive_audience(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    if state
        .store
        .archive_audience(&caller.environment.id, &key, state.now())
        .await?
    {
        Ok(Json(json!({"result": "success"})))
    } else {
        Err(ApiError::not_found("audience"))
    }
}
