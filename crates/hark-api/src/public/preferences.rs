//! `/v1/users/{id}/preferences`: a recipient's preference sets (`default` and one per
//! tenant), stored as documents and interpreted by `hark_core::preferences`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hark_core::preferences::{PersistenceStrategy, PreferenceSet};
use hark_core::recipient::{validate_id, FieldError};
use hark_store::{DocumentKind, Owner};
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::KnockJson;
use crate::out::bulk_out;
use crate::state::AppState;

/// The most users one bulk preferences request may name.
const MAX_BULK_USERS: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/bulk/preferences", post(bulk_set_user_sets))
        .route("/v1/users/{user_id}/preferences", get(list_user_sets))
        .route(
            "/v1/users/{user_id}/preferences/{set_id}",
            get(get_user_set).put(put_user_set).delete(delete_user_set),
        )
        .route(
            "/v1/objects/{collection}/{object_id}/preferences",
            get(list_object_sets),
        )
        .route(
            "/v1/objects/{collection}/{object_id}/preferences/{set_id}",
            get(get_object_set)
                .put(put_object_set)
                .delete(delete_object_set),
        )
}

async fn list_user_sets(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    list_sets(&state, &caller, Owner::User(user_id)).await
}

async fn get_user_set(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, set_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    get_set(&state, caller.env_id(), Owner::User(user_id), &set_id).await
}

async fn put_user_set(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, set_id)): Path<(String, String)>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    put_set(
        &state,
        caller.env_id(),
        Owner::User(user_id),
        &set_id,
        &body,
    )
    .await
}

async fn delete_user_set(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, set_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_user(&user_id)?;
    delete_set(&state, caller.env_id(), Owner::User(user_id), &set_id).await
}

fn object_owner(caller: &Caller, collection: String, id: String) -> ApiResult<Owner> {
    caller.require_secret()?;
    Ok(Owner::Object { collection, id })
}

async fn list_object_sets(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, object_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let owner = object_owner(&caller, collection, object_id)?;
    list_sets(&state, &caller, owner).await
}

async fn get_object_set(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, object_id, set_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let owner = object_owner(&caller, collection, object_id)?;
    get_set(&state, caller.env_id(), owner, &set_id).await
}

async fn put_object_set(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, object_id, set_id)): Path<(String, String, String)>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    let owner = object_owner(&caller, collection, object_id)?;
    put_set(&state, caller.env_id(), owner, &set_id, &body).await
}

async fn delete_object_set(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, object_id, set_id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let owner = object_owner(&caller, collection, object_id)?;
    delete_set(&state, caller.env_id(), owner, &set_id).await
}

/// Knock's `PreferenceSet` response for a stored (or absent) set.
pub fn preference_set_out(set_id: &str, set: &PreferenceSet) -> Value {
    let mut out = set.to_json();
    if let Value::Object(map) = &mut out {
        map.insert("__typename".into(), json!("PreferenceSet"));
        map.insert("id".into(), json!(set_id));
    }
    out
}

/// Inline `preferences` of an identify body: set id → `PreferenceSetRequest`, merged into
/// what is stored unless the set says otherwise. All sets are validated before any write.
pub(crate) fn inline_sets(
    body: &Value,
) -> Result<Vec<(String, PreferenceSet, PersistenceStrategy)>, Vec<FieldError>> {
    let Some(value) = body.get("preferences").filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(map) = value.as_object() else {
        return Err(vec![FieldError::new(
            "preferences",
            "must be an object of preference sets",
        )]);
    };
    let mut sets = Vec::new();
    let mut errors = Vec::new();
    for (id, set) in map {
        match PreferenceSet::parse_with_default(
            set,
            &format!("preferences.{id}"),
            PersistenceStrategy::Merge,
        ) {
            Ok((set, strategy)) => sets.push((id.clone(), set, strategy)),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(sets)
    } else {
        Err(errors)
    }
}

/// Validated inline sets applied to what `owner` has stored: the sets to write.
pub(crate) async fn merged_sets(
    state: &AppState,
    environment_id: &str,
    owner: &Owner,
    sets: &[(String, PreferenceSet, PersistenceStrategy)],
) -> ApiResult<Vec<(String, PreferenceSet)>> {
    let mut merged = Vec::with_capacity(sets.len());
    for (id, update, strategy) in sets {
        let current = state
            .store
            .get_document(environment_id, owner, DocumentKind::Preferences, id)
            .await?
            .map(|d| stored_set(&d.data))
            .unwrap_or_default();
        merged.push((id.clone(), current.apply(update, *strategy)));
    }
    Ok(merged)
}

/// Writes validated inline sets for `owner`.
pub(crate) async fn store_inline_sets(
    state: &AppState,
    environment_id: &str,
    owner: &Owner,
    sets: &[(String, PreferenceSet, PersistenceStrategy)],
) -> ApiResult<()> {
    for (id, next) in merged_sets(state, environment_id, owner, sets).await? {
        state
            .store
            .put_document(
                environment_id,
                owner,
                DocumentKind::Preferences,
                &id,
                &next.to_json(),
                state.now(),
            )
            .await?;
    }
    Ok(())
}

/// A stored set, read leniently: a document that no longer parses counts as empty rather
/// than failing every read.
fn stored_set(data: &Value) -> PreferenceSet {
    PreferenceSet::parse(data, "preferences")
        .map(|(set, _)| set)
        .unwrap_or_default()
}

async fn list_sets(state: &AppState, caller: &Caller, owner: Owner) -> ApiResult<Json<Value>> {
    let docs = state
        .store
        .list_documents(caller.env_id(), &owner, DocumentKind::Preferences)
        .await?;
    let mut sets: Vec<Value> = docs
        .iter()
        .map(|d| preference_set_out(&d.key, &stored_set(&d.data)))
        .collect();
    if !docs.iter().any(|d| d.key == "default") {
        sets.insert(0, preference_set_out("default", &PreferenceSet::default()));
    }
    Ok(Json(Value::Array(sets)))
}

pub(crate) async fn get_set(
    state: &AppState,
    environment_id: &str,
    owner: Owner,
    set_id: &str,
) -> ApiResult<Json<Value>> {
    let doc = state
        .store
        .get_document(environment_id, &owner, DocumentKind::Preferences, set_id)
        .await?;
    let set = doc.map(|d| stored_set(&d.data)).unwrap_or_default();
    Ok(Json(preference_set_out(set_id, &set)))
}

pub(crate) async fn put_set(
    state: &AppState,
    environment_id: &str,
    owner: Owner,
    set_id: &str,
    body: &Value,
) -> ApiResult<Json<Value>> {
    let (update, strategy) =
        PreferenceSet::parse(body, "preferences").map_err(ApiError::invalid)?;
    let current = state
        .store
        .get_document(environment_id, &owner, DocumentKind::Preferences, set_id)
        .await?
        .map(|d| stored_set(&d.data))
        .unwrap_or_default();
    let next = current.apply(&update, strategy);
    state
        .store
        .put_document(
            environment_id,
            &owner,
            DocumentKind::Preferences,
            set_id,
            &next.to_json(),
            state.now(),
        )
        .await?;
    Ok(Json(preference_set_out(set_id, &next)))
}

pub(crate) async fn delete_set(
    state: &AppState,
    environment_id: &str,
    owner: Owner,
    set_id: &str,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_document(environment_id, &owner, DocumentKind::Preferences, set_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/users/bulk/preferences`: one preference set written for many users. Knock
/// documents this as destructive: each user's set is replaced, never merged. The set id
/// is the body's `preferences.id` (`default` when absent).
async fn bulk_set_user_sets(
    State(state): State<AppState>,
    caller: Caller,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let mut errors = Vec::new();
    let user_ids: Vec<String> = match body.get("user_ids") {
        Some(Value::Array(ids)) => {
            if ids.len() > MAX_BULK_USERS {
                errors.push(FieldError::new(
                    "user_ids",
                    "must have at most 1000 entries",
                ));
            }
            ids.iter()
                .enumerate()
                .filter_map(|(i, id)| {
                    let field = format!("user_ids[{i}]");
                    match id.as_str() {
                        Some(id) => match validate_id(id, &field) {
                            Ok(()) => Some(id.to_string()),
                            Err(e) => {
                                errors.push(e);
                                None
                            }
                        },
                        None => {
                            errors.push(FieldError::new(field, "must be a string"));
                            None
                        }
                    }
                })
                .collect()
        }
        None | Some(Value::Null) => {
            errors.push(FieldError::new("user_ids", "can't be blank"));
            Vec::new()
        }
        Some(_) => {
            errors.push(FieldError::new("user_ids", "must be a list"));
            Vec::new()
        }
    };
    let mut request = match body.get("preferences") {
        Some(Value::Object(map)) => map.clone(),
        None | Some(Value::Null) => {
            errors.push(FieldError::new("preferences", "can't be blank"));
            Default::default()
        }
        Some(_) => {
            errors.push(FieldError::new("preferences", "must be an object"));
            Default::default()
        }
    };
    let set_id = match request.remove("id") {
        None | Some(Value::Null) => "default".to_string(),
        Some(Value::String(id)) => {
            if let Err(e) = validate_id(&id, "preferences.id") {
                errors.push(e);
            }
            id
        }
        Some(_) => {
            errors.push(FieldError::new("preferences.id", "must be a string"));
            String::new()
        }
    };
    // Always a replace, whatever the body says about persistence.
    request.remove("__persistence_strategy__");
    let set = match PreferenceSet::parse(&Value::Object(request), "preferences") {
        Ok((set, _)) => Some(set),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let Some(set) = set.filter(|_| errors.is_empty()) else {
        return Err(ApiError::invalid(errors));
    };
    let owners: Vec<Owner> = user_ids.into_iter().map(Owner::User).collect();
    let op = state
        .store
        .bulk_put_documents(
            caller.env_id(),
            &owners,
            DocumentKind::Preferences,
            &set_id,
            &set.to_json(),
            "users.set_preferences",
            state.now(),
        )
        .await?;
    Ok(Json(bulk_out(&op, "")))
}

/// Every user's stored preference sets, for `include[]=preferences`: user id → set id →
/// `PreferenceSet`, the shape inline `preferences` take on identify. One read per page.
pub(crate) async fn sets_by_user(
    state: &AppState,
    environment_id: &str,
    user_ids: &[String],
) -> ApiResult<HashMap<String, Value>> {
    let owners: Vec<Owner> = user_ids.iter().cloned().map(Owner::User).collect();
    let docs = state
        .store
        .list_documents_of(environment_id, &owners, DocumentKind::Preferences)
        .await?;
    let mut by_owner: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
    for (owner_key, doc) in docs {
        by_owner.entry(owner_key).or_default().insert(
            doc.key.clone(),
            preference_set_out(&doc.key, &stored_set(&doc.data)),
        );
    }
    Ok(user_ids
        .iter()
        .map(|id| {
            let sets = by_owner
                .remove(&Owner::User(id.clone()).key())
                .unwrap_or_default();
            (id.clone(), Value::Object(sets))
        })
        .collect())
}
