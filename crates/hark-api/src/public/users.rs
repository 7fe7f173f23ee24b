//! `/v1/users`: identify, read, list, delete, merge, bulk operations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hark_core::recipient::{validate_id, validate_user_properties, FieldError};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{KnockJson, Params};
use crate::out::{bulk_out, page_info, user_out};
use crate::state::AppState;

/// The most users one bulk request may carry.
const MAX_BULK_USERS: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users", get(list_users))
        .route(
            "/v1/users/{user_id}",
            get(get_user).put(identify_user).delete(delete_user),
        )
        .route("/v1/users/{user_id}/merge", post(merge_user))
        .route("/v1/users/bulk/identify", post(bulk_identify))
        .route("/v1/users/bulk/delete", post(bulk_delete))
        .route("/v1/bulk_operations/{id}", get(get_bulk_operation))
}

/// Validates an identify body and returns the properties to store.
pub fn user_properties(body: &Value, field: &str) -> Result<Map<String, Value>, Vec<FieldError>> {
    let Some(map) = body.as_object() else {
        return Err(vec![FieldError::new(field, "must be an object")]);
    };
    let mut props = map.clone();
    props.remove("id");
    props.remove("__typename");
    // Channel data and preferences are separate resources; they are not user properties.
    props.remove("channel_data");
    props.remove("preferences");
    let errors = validate_user_properties(&props);
    if errors.is_empty() {
        Ok(props)
    } else {
        Err(errors
            .into_iter()
            .map(|e| FieldError::new(format!("{field}.{}", e.field), e.message))
            .collect())
    }
}

async fn identify_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    validate_id(&user_id, "user_id").map_err(|e| ApiError::invalid(vec![e]))?;
    let props = user_properties(&body, "body").map_err(ApiError::invalid)?;
    let sets = super::preferences::inline_sets(&body).map_err(ApiError::invalid)?;
    let user = state
        .store
        .upsert_user(caller.env_id(), &user_id, &props, state.now())
        .await?;
    super::preferences::store_inline_sets(
        &state,
        caller.env_id(),
        &hark_store::Owner::User(user_id),
        &sets,
    )
    .await?;
    Ok(Json(user_out(&user)))
}

async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    match state.store.get_user(caller.env_id(), &user_id).await? {
        Some(user) => Ok(Json(user_out(&user))),
        None => Err(ApiError::new(
            ErrorCode::UserMissing,
            format!("The user `{user_id}` was not found"),
        )),
    }
}

async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_secret()?;
    if state.store.delete_user(caller.env_id(), &user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            ErrorCode::UserMissing,
            format!("The user `{user_id}` was not found"),
        ))
    }
}

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let page = params.page()?;
    let includes = params.list("include");
    if let Some(unknown) = includes.iter().find(|i| i.as_str() != "preferences") {
        return Err(ApiError::field(
            "include",
            &format!("`{unknown}` is not something users can include; expected `preferences`"),
        ));
    }
    let result = state.store.list_users(caller.env_id(), &page).await?;
    let mut entries: Vec<Value> = result.entries.iter().map(user_out).collect();
    if !includes.is_empty() {
        let ids: Vec<String> = result.entries.iter().map(|u| u.id.clone()).collect();
        let mut sets = super::preferences::sets_by_user(&state, caller.env_id(), &ids).await?;
        for (entry, user) in entries.iter_mut().zip(&result.entries) {
            if let Value::Object(map) = entry {
                let user_sets = sets.remove(&user.id).unwrap_or_else(|| json!({}));
                map.insert("preferences".into(), user_sets);
            }
        }
    }
    Ok(Json(json!({
        "entries": entries,
        "page_info": page_info(&result, page.page_size),
    })))
}

#[derive(Deserialize)]
struct MergeIn {
    from_user_id: Option<String>,
}

async fn merge_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    KnockJson(body): KnockJson<MergeIn>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let Some(from) = body.from_user_id.filter(|f| !f.is_empty()) else {
        return Err(ApiError::field("from_user_id", "can't be blank"));
    };
    if from == user_id {
        return Err(ApiError::field(
            "from_user_id",
            "must differ from the user being merged into",
        ));
    }
    match state
        .store
        .merge_users(caller.env_id(), &user_id, &from, state.now())
        .await?
    {
        Some(user) => Ok(Json(user_out(&user))),
        None => Err(ApiError::new(
            ErrorCode::UserMissing,
            "Both users must exist to be merged",
        )),
    }
}

#[derive(Deserialize)]
struct BulkIdentifyIn {
    users: Option<Vec<Value>>,
}

async fn bulk_identify(
    State(state): State<AppState>,
    caller: Caller,
    KnockJson(body): KnockJson<BulkIdentifyIn>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let Some(users) = body.users else {
        return Err(ApiError::field("users", "can't be blank"));
    };
    if users.len() > MAX_BULK_USERS {
        return Err(ApiError::field("users", "must have at most 1000 entries"));
    }
    let mut errors = Vec::new();
    let mut parsed = Vec::with_capacity(users.len());
    for (i, user) in users.iter().enumerate() {
        let field = format!("users[{i}]");
        let id = match user.get("id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => {
                errors.push(FieldError::new(format!("{field}.id"), "can't be blank"));
                continue;
            }
        };
        if let Err(e) = validate_id(&id, &format!("{field}.id")) {
            errors.push(e);
            continue;
        }
        match user_properties(user, &field) {
            Ok(props) => parsed.push((id, props)),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let op = state
        .store
        .bulk_identify(caller.env_id(), &parsed, state.now())
        .await?;
    Ok(Json(bulk_out(&op, "")))
}

#[derive(Deserialize)]
struct BulkDeleteIn {
    user_ids: Option<Vec<String>>,
}

async fn bulk_delete(
    State(state): State<AppState>,
    caller: Caller,
    KnockJson(body): KnockJson<BulkDeleteIn>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let Some(ids) = body.user_ids else {
        return Err(ApiError::field("user_ids", "can't be blank"));
    };
    if ids.len() > MAX_BULK_USERS {
        return Err(ApiError::field(
            "user_ids",
            "must have at most 1000 entries",
        ));
    }
    let op = state
        .store
        .bulk_delete_users(caller.env_id(), &ids, state.now())
        .await?;
    Ok(Json(bulk_out(&op, "")))
}

async fn get_bulk_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    match state.store.get_bulk_operation(caller.env_id(), &id).await? {
        Some(op) => Ok(Json(bulk_out(&op, ""))),
        None => Err(ApiError::not_found("bulk operation")),
    }
}
