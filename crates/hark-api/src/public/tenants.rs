//! `/v1/tenants`: tenants are objects in the `$tenants` collection whose `settings` carry
//! branding and a default preference set.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hark_core::recipient::{validate_id, FieldError};
use hark_store::{ObjectRecord, TENANTS_COLLECTION};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{KnockJson, Params};
use crate::out::{bulk_out, page_info};
use crate::state::AppState;

/// The most tenants one bulk request may carry.
const MAX_BULK_TENANTS: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", get(list_tenants))
        .route(
            "/v1/tenants/{id}",
            get(get_tenant).put(set_tenant).delete(delete_tenant),
        )
        .route("/v1/tenants/bulk/set", post(bulk_set))
        .route("/v1/tenants/bulk/delete", post(bulk_delete))
}

/// Knock's `Tenant`: the stored properties with `id`, `name` and `settings` always present.
pub fn tenant_out(t: &ObjectRecord) -> Value {
    let mut map = t.properties.clone();
    map.insert("__typename".into(), json!("Tenant"));
    map.insert("id".into(), json!(t.id));
    map.entry("name").or_insert(Value::Null);
    map.entry("settings").or_insert(Value::Null);
    map.insert(
        "created_at".into(),
        json!(hark_core::time::rfc3339(t.inserted_at)),
    );
    map.insert(
        "updated_at".into(),
        json!(hark_core::time::rfc3339(t.updated_at)),
    );
    Value::Object(map)
}

/// Validates a `TenantRequest` (or a bare id) into its id and the properties to store.
/// `channel_data` and `preferences` are not tenant properties.
pub fn parse_tenant(
    value: &Value,
    path_id: Option<&str>,
    field: &str,
) -> Result<(String, Map<String, Value>), Vec<FieldError>> {
    let mut errors = Vec::new();
    let (id, mut props) = match value {
        Value::String(id) => (id.clone(), Map::new()),
        Value::Object(map) => {
            let id = match (path_id, map.get("id")) {
                (Some(p), _) => p.to_string(),
                (None, Some(Value::String(id))) => id.clone(),
                _ => {
                    errors.push(FieldError::new(format!("{field}.id"), "can't be blank"));
                    String::new()
                }
            };
            (id, map.clone())
        }
        _ => {
            return Err(vec![FieldError::new(
                field,
                "must be a tenant id or a tenant object",
            )])
        }
    };
    if let Err(e) = validate_id(&id, &format!("{field}.id")) {
        errors.push(e);
    }
    for key in [
        "id",
        "__typename",
        "created_at",
        "updated_at",
        "channel_data",
        "preferences",
    ] {
        props.remove(key);
    }
    match props.get("name") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(_) => errors.push(FieldError::new(format!("{field}.name"), "must be a string")),
    }
    match props.get("settings") {
        None | Some(Value::Null) => {}
        Some(Value::Object(settings)) => {
            for (key, v) in settings {
                match (key.as_str(), v) {
                    ("branding" | "preference_set", Value::Object(_) | Value::Null) => {}
                    ("branding" | "preference_set", _) => errors.push(FieldError::new(
                        format!("{field}.settings.{key}"),
                        "must be an object",
                    )),
                    _ => {}
                }
            }
        }
        Some(_) => errors.push(FieldError::new(
            format!("{field}.settings"),
            "must be an object",
        )),
    }
    if errors.is_empty() {
        Ok((id, props))
    } else {
        Err(errors)
    }
}

async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let page = params.page()?;
    if let Some(id) = params.get("tenant_id") {
        // One id names at most one tenant: answer without a scan.
        let found = state
            .store
            .get_object(caller.env_id(), TENANTS_COLLECTION, id)
            .await?;
        return Ok(Json(json!({
            "entries": found.iter().map(tenant_out).collect::<Vec<_>>(),
            "page_info": {"__typename": "PageInfo", "after": null, "before": null, "page_size": page.page_size},
        })));
    }
    let result = state
        .store
        .list_objects(caller.env_id(), TENANTS_COLLECTION, &page)
        .await?;
    let name = params.get("name");
    let entries: Vec<Value> = result
        .entries
        .iter()
        .filter(|t| {
            name.is_none_or(|n| t.properties.get("name").and_then(Value::as_str) == Some(n))
        })
        .map(tenant_out)
        .collect();
    Ok(Json(json!({
        "entries": entries,
        "page_info": page_info(&result, page.page_size),
    })))
}

async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let tenant = state
        .store
        .get_object(caller.env_id(), TENANTS_COLLECTION, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Json(tenant_out(&tenant)))
}

async fn set_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let (id, props) = parse_tenant(&body, Some(&id), "tenant").map_err(ApiError::invalid)?;
    let tenant = state
        .store
        .upsert_object(
            caller.env_id(),
            TENANTS_COLLECTION,
            &id,
            &props,
            state.now(),
        )
        .await?;
    Ok(Json(tenant_out(&tenant)))
}

async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_secret()?;
    if !state
        .store
        .delete_object(caller.env_id(), TENANTS_COLLECTION, &id)
        .await?
    {
        return Err(ApiError::not_found("tenant"));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn bulk_set(
    State(state): State<AppState>,
    caller: Caller,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let Some(items) = body.get("tenants").and_then(Value::as_array) else {
        return Err(ApiError::field("tenants", "must be a list of tenants"));
    };
    if items.len() > MAX_BULK_TENANTS {
        return Err(ApiError::field("tenants", "must have at most 1000 entries"));
    }
    let mut parsed = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_tenant(item, None, &format!("tenants[{i}]")) {
            Ok(t) => parsed.push(t),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let op = state
        .store
        .bulk_set_objects(caller.env_id(), TENANTS_COLLECTION, &parsed, state.now())
        .await?;
    Ok(Json(bulk_out(&op, "")))
}

async fn bulk_delete(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let ids = params.list("tenant_ids");
    if ids.is_empty() {
        return Err(ApiError::field("tenant_ids", "can't be blank"));
    }
    if ids.len() > MAX_BULK_TENANTS {
        return Err(ApiError::field(
            "tenant_ids",
            "must have at most 1000 entries",
        ));
    }
    let op = state
        .store
        .bulk_delete_objects(caller.env_id(), TENANTS_COLLECTION, &ids, state.now())
        .await?;
    Ok(Json(bulk_out(&op, "")))
}
