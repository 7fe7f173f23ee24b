//! `/v1/objects/{collection}`: objects (properties nested under `properties`) and their
//! subscriptions; `/v1/users/{id}/subscriptions`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hark_core::recipient::{validate_id, validate_user_properties, FieldError, RecipientRequest};
use hark_store::{cursor, ObjectRecord, RecipientKey, SubscriptionRecord};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{KnockJson, Params};
use crate::out::{bulk_out, page_info, recipient_ref};
use crate::state::AppState;

/// Knock manages at most 100 subscribers per request, and 1,000 objects per bulk call.
const MAX_SUBSCRIBERS_PER_CALL: usize = 100;
const MAX_BULK_OBJECTS: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/objects/{collection}", get(list_objects))
        .route(
            "/v1/objects/{collection}/{id}",
            get(get_object).put(set_object).delete(delete_object),
        )
        .route("/v1/objects/{collection}/bulk/set", post(bulk_set))
        .route("/v1/objects/{collection}/bulk/delete", post(bulk_delete))
        .route(
            "/v1/objects/{collection}/{id}/subscriptions",
            get(list_subscriptions)
                .post(add_subscriptions)
                .delete(delete_subscriptions),
        )
        .route("/v1/users/{user_id}/subscriptions", get(user_subscriptions))
        .route(
            "/v1/objects/{collection}/bulk/subscriptions/add",
            post(bulk_add_subscriptions),
        )
        .route(
            "/v1/objects/{collection}/bulk/subscriptions/delete",
            post(bulk_delete_subscriptions),
        )
}

pub fn object_out(o: &ObjectRecord) -> Value {
    json!({
        "__typename": "Object",
        "id": o.id,
        "collection": o.collection,
        "properties": o.properties,
        "created_at": hark_core::time::rfc3339(o.inserted_at),
        "updated_at": hark_core::time::rfc3339(o.updated_at),
    })
}

/// Collections starting with `$` are Knock's own (tenants live in `$tenants`).
fn check_collection(collection: &str) -> ApiResult<()> {
    validate_id(collection, "collection").map_err(|e| ApiError::invalid(vec![e]))?;
    if collection.starts_with('$') {
        return Err(ApiError::field("collection", "is reserved"));
    }
    Ok(())
}

/// An object body's properties: everything but the reserved keys.
fn object_properties(value: &Value, field: &str) -> Result<Map<String, Value>, Vec<FieldError>> {
    let Some(map) = value.as_object() else {
        return Err(vec![FieldError::new(field, "must be an object")]);
    };
    let mut props = map.clone();
    for key in [
        "id",
        "collection",
        "__typename",
        "created_at",
        "updated_at",
        "channel_data",
        "preferences",
    ] {
        props.remove(key);
    }
    // Knock accepts properties flat or nested under `properties`.
    if let Some(Value::Object(nested)) = props.remove("properties") {
        props.extend(nested);
    }
    Ok(props)
}

async fn list_objects(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    let page = params.page()?;
    let result = state
        .store
        .list_objects(caller.env_id(), &collection, &page)
        .await?;
    Ok(Json(json!({
        "entries": result.entries.iter().map(object_out).collect::<Vec<_>>(),
        "page_info": page_info(&result, page.page_size),
    })))
}

async fn load_object(
    state: &AppState,
    caller: &Caller,
    collection: &str,
    id: &str,
) -> ApiResult<ObjectRecord> {
    state
        .store
        .get_object(caller.env_id(), collection, id)
        .await?
        .ok_or_else(|| ApiError::not_found("object"))
}

async fn get_object(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    Ok(Json(object_out(
        &load_object(&state, &caller, &collection, &id).await?,
    )))
}

async fn set_object(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, id)): Path<(String, String)>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    validate_id(&id, "id").map_err(|e| ApiError::invalid(vec![e]))?;
    let props = object_properties(&body, "object").map_err(ApiError::invalid)?;
    let object = state
        .store
        .upsert_object(caller.env_id(), &collection, &id, &props, state.now())
        .await?;
    Ok(Json(object_out(&object)))
}

async fn delete_object(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_secret()?;
    check_collection(&collection)?;
    if !state
        .store
        .delete_object(caller.env_id(), &collection, &id)
        .await?
    {
        return Err(ApiError::not_found("object"));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn bulk_set(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    let Some(items) = body.get("objects").and_then(Value::as_array) else {
        return Err(ApiError::field("objects", "must be a list of objects"));
    };
    if items.len() > MAX_BULK_OBJECTS {
        return Err(ApiError::field("objects", "must have at most 1000 entries"));
    }
    let mut parsed = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("objects[{i}]");
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        if let Err(e) = validate_id(id, &format!("{field}.id")) {
            errors.push(e);
            continue;
        }
        match object_properties(item, &field) {
            Ok(props) => parsed.push((id.to_string(), props)),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let op = state
        .store
        .bulk_set_objects(caller.env_id(), &collection, &parsed, state.now())
        .await?;
    Ok(Json(bulk_out(&op, "")))
}

async fn bulk_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    let ids: Vec<String> = match body.get("object_ids") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => return Err(ApiError::field("object_ids", "must be a list of ids")),
    };
    if ids.is_empty() || ids.len() > MAX_BULK_OBJECTS {
        return Err(ApiError::field(
            "object_ids",
            "must have between 1 and 1000 entries",
        ));
    }
    let op = state
        .store
        .bulk_delete_objects(caller.env_id(), &collection, &ids, state.now())
        .await?;
    Ok(Json(bulk_out(&op, "")))
}

/// One entry of `recipients`: a user id, an inline user, or an object reference (with
/// optional inline properties). Returns the key and what to set before subscribing.
enum Subscriber {
    User(String, Option<Map<String, Value>>),
    Object(String, String, Map<String, Value>),
}

fn parse_subscriber(item: &Value, field: &str) -> Result<Subscriber, FieldError> {
    if let Some(collection) = item.get("collection") {
        let collection = collection
            .as_str()
            .filter(|c| !c.is_empty() && !c.starts_with('$'))
            .ok_or_else(|| {
                FieldError::new(format!("{field}.collection"), "must be a collection name")
            })?;
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        validate_id(id, &format!("{field}.id"))?;
        let props = object_properties(item, field).map_err(|mut e| e.remove(0))?;
        return Ok(Subscriber::Object(
            collection.to_string(),
            id.to_string(),
            props,
        ));
    }
    match RecipientRequest::parse(item, field)? {
        RecipientRequest::UserId(id) => Ok(Subscriber::User(id, None)),
        RecipientRequest::InlineUser { id, mut properties } => {
            for key in ["__typename", "channel_data", "preferences"] {
                properties.remove(key);
            }
            if let Some(e) = validate_user_properties(&properties).into_iter().next() {
                return Err(FieldError::new(format!("{field}.{}", e.field), e.message));
            }
            Ok(Subscriber::User(id, Some(properties)))
        }
    }
}

fn parse_subscribers(body: &Value) -> ApiResult<Vec<Subscriber>> {
    let Some(items) = body.get("recipients").and_then(Value::as_array) else {
        return Err(ApiError::field(
            "recipients",
            "must be a list of recipients",
        ));
    };
    if items.is_empty() || items.len() > MAX_SUBSCRIBERS_PER_CALL {
        return Err(ApiError::field(
            "recipients",
            "must have between 1 and 100 recipients",
        ));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_subscriber(item, &format!("recipients[{i}]")) {
            Ok(s) => out.push(s),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::invalid(errors))
    }
}

fn key_of(s: &Subscriber) -> RecipientKey {
    match s {
        Subscriber::User(id, _) => RecipientKey {
            collection: None,
            id: id.clone(),
        },
        Subscriber::Object(collection, id, _) => RecipientKey {
            collection: Some(collection.clone()),
            id: id.clone(),
        },
    }
}

/// Knock's `Subscription`, with both ends resolved.
async fn subscriptions_out(
    state: &AppState,
    env: &str,
    subs: &[SubscriptionRecord],
) -> ApiResult<Vec<Value>> {
    let mut out = Vec::with_capacity(subs.len());
    for sub in subs {
        let object = state
            .store
            .get_object(env, &sub.collection, &sub.object_id)
            .await?
            .map(|o| object_out(&o))
            .unwrap_or_else(|| json!({"__typename": "Object", "id": sub.object_id, "collection": sub.collection}));
        let recipient = match &sub.recipient.collection {
            None => {
                let user = state.store.get_user(env, &sub.recipient.id).await?;
                recipient_ref(&sub.recipient.id, user.as_ref())
            }
            Some(c) => state
                .store
                .get_object(env, c, &sub.recipient.id)
                .await?
                .map(|o| object_out(&o))
                .unwrap_or_else(
                    || json!({"__typename": "Object", "id": sub.recipient.id, "collection": c}),
                ),
        };
        out.push(json!({
            "__typename": "Subscription",
            "object": object,
            "recipient": recipient,
            "properties": sub.properties,
            "inserted_at": hark_core::time::rfc3339(sub.inserted_at),
            "updated_at": hark_core::time::rfc3339(sub.updated_at),
        }));
    }
    Ok(out)
}

async fn add_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, id)): Path<(String, String)>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    let subscribers = parse_subscribers(&body)?;
    let properties = match body.get("properties") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(ApiError::field("properties", "must be an object")),
    };
    load_object(&state, &caller, &collection, &id).await?;
    let env = caller.env_id();
    let now = state.now();
    for s in &subscribers {
        match s {
            Subscriber::User(uid, Some(props)) => {
                state.store.upsert_user(env, uid, props, now).await?;
            }
            Subscriber::Object(c, oid, props) => {
                state.store.upsert_object(env, c, oid, props, now).await?;
            }
            Subscriber::User(_, None) => {}
        }
    }
    let keys: Vec<RecipientKey> = subscribers.iter().map(key_of).collect();
    let subs = state
        .store
        .add_subscriptions(env, &collection, &id, &keys, &properties, now)
        .await?;
    Ok(Json(Value::Array(
        subscriptions_out(&state, env, &subs).await?,
    )))
}

async fn delete_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, id)): Path<(String, String)>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    let keys: Vec<RecipientKey> = parse_subscribers(&body)?.iter().map(key_of).collect();
    let env = caller.env_id();
    let subs = state
        .store
        .delete_subscriptions(env, &collection, &id, &keys)
        .await?;
    Ok(Json(Value::Array(
        subscriptions_out(&state, env, &subs).await?,
    )))
}

/// A page of subscriptions with a keyset cursor built from `key`.
fn subscription_page(
    entries: Vec<Value>,
    has_more: bool,
    last_key: Option<String>,
    page_size: i64,
) -> Value {
    json!({
        "entries": entries,
        "page_info": {
            "__typename": "PageInfo",
            "after": if has_more { last_key.map(|k| cursor::encode(&k)) } else { None },
            "before": null,
            "page_size": page_size,
        },
    })
}

async fn list_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, id)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    let size = params.page_size()?;
    let after = params.get("after").and_then(cursor::decode).and_then(|k| {
        let (c, id) = k.split_once('\u{1f}')?;
        Some(RecipientKey {
            collection: Some(c.to_string()).filter(|c| !c.is_empty()),
            id: id.to_string(),
        })
    });
    let env = caller.env_id();
    let mut subs = state
        .store
        .object_subscriptions(env, &collection, &id, after.as_ref(), size + 1)
        .await?;
    let has_more = subs.len() as i64 > size;
    subs.truncate(size as usize);
    let last = subs.last().map(|s| {
        format!(
            "{}\u{1f}{}",
            s.recipient.collection.clone().unwrap_or_default(),
            s.recipient.id
        )
    });
    let entries = subscriptions_out(&state, env, &subs).await?;
    Ok(Json(subscription_page(entries, has_more, last, size)))
}

async fn user_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    let size = params.page_size()?;
    let after = params.get("after").and_then(cursor::decode).and_then(|k| {
        k.split_once('\u{1f}')
            .map(|(c, id)| (c.to_string(), id.to_string()))
    });
    let env = caller.env_id();
    let key = RecipientKey {
        collection: None,
        id: user_id,
    };
    let mut subs = state
        .store
        .recipient_subscriptions(env, &key, after.as_ref(), size + 1)
        .await?;
    let has_more = subs.len() as i64 > size;
    subs.truncate(size as usize);
    let last = subs
        .last()
        .map(|s| format!("{}\u{1f}{}", s.collection, s.object_id));
    let entries = subscriptions_out(&state, env, &subs).await?;
    Ok(Json(subscription_page(entries, has_more, last, size)))
}

/// One entry of a bulk subscriptions body: the object id and its recipients.
struct BulkSubscription {
    object_id: String,
    subscribers: Vec<Subscriber>,
    properties: Value,
}

fn parse_bulk_subscriptions(body: &Value) -> ApiResult<Vec<BulkSubscription>> {
    let Some(items) = body.get("subscriptions").and_then(Value::as_array) else {
        return Err(ApiError::field("subscriptions", "must be a list"));
    };
    if items.is_empty() || items.len() > MAX_BULK_OBJECTS {
        return Err(ApiError::field(
            "subscriptions",
            "must have between 1 and 1000 entries",
        ));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("subscriptions[{i}]");
        let object_id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        if let Err(e) = validate_id(object_id, &format!("{field}.id")) {
            errors.push(e);
            continue;
        }
        let properties = match item.get("properties") {
            None | Some(Value::Null) => json!({}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                errors.push(FieldError::new(
                    format!("{field}.properties"),
                    "must be an object",
                ));
                continue;
            }
        };
        let Some(recipients) = item.get("recipients").and_then(Value::as_array) else {
            errors.push(FieldError::new(
                format!("{field}.recipients"),
                "must be a list",
            ));
            continue;
        };
        let mut subscribers = Vec::new();
        for (j, r) in recipients.iter().enumerate() {
            match parse_subscriber(r, &format!("{field}.recipients[{j}]")) {
                Ok(s) => subscribers.push(s),
                Err(e) => errors.push(e),
            }
        }
        out.push(BulkSubscription {
            object_id: object_id.to_string(),
            subscribers,
            properties,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::invalid(errors))
    }
}

async fn bulk_add_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    let entries = parse_bulk_subscriptions(&body)?;
    let env = caller.env_id();
    let now = state.now();
    let mut rows = 0;
    for entry in &entries {
        // Knock creates missing objects for bulk subscriptions.
        if state
            .store
            .get_object(env, &collection, &entry.object_id)
            .await?
            .is_none()
        {
            state
                .store
                .upsert_object(env, &collection, &entry.object_id, &Map::new(), now)
                .await?;
        }
        let keys: Vec<RecipientKey> = entry.subscribers.iter().map(key_of).collect();
        rows += keys.len() as i64;
        state
            .store
            .add_subscriptions(
                env,
                &collection,
                &entry.object_id,
                &keys,
                &entry.properties,
                now,
            )
            .await?;
    }
    let op = state
        .store
        .record_bulk_operation(env, "objects.add_subscriptions", rows, now)
        .await?;
    Ok(Json(bulk_out(&op, "")))
}

async fn bulk_delete_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    check_collection(&collection)?;
    let entries = parse_bulk_subscriptions(&body)?;
    let env = caller.env_id();
    let mut rows = 0;
    for entry in &entries {
        let keys: Vec<RecipientKey> = entry.subscribers.iter().map(key_of).collect();
        rows += keys.len() as i64;
        state
            .store
            .delete_subscriptions(env, &collection, &entry.object_id, &keys)
            .await?;
    }
    let op = state
        .store
        .record_bulk_operation(env, "objects.delete_subscriptions", rows, state.now())
        .await?;
    Ok(Json(bulk_out(&op, "")))
}
