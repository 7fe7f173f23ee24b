//! `/v1/messages`: lists, details, content, events, delivery logs and engagement changes.

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use hark_store::{ArchivedFilter, Engagement, MessageFilter, MessageRecord};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{KnockJson, Params};
use crate::out::{delivery_log_out, message_event_out, message_out, page_info};
use crate::public::feeds::{archived_filter, trigger_data_filter};
use crate::state::AppState;

const MAX_BATCH: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", get(list_messages))
        .route("/v1/users/{user_id}/messages", get(list_user_messages))
        .route(
            "/v1/objects/{collection}/{id}/messages",
            get(list_object_messages),
        )
        .route("/v1/messages/{message_id}", get(get_message))
        .route("/v1/messages/{message_id}/content", get(get_content))
        .route("/v1/messages/{message_id}/events", get(list_events))
        .route(
            "/v1/messages/{message_id}/delivery_logs",
            get(list_delivery_logs),
        )
        .route("/v1/messages/{message_id}/activities", get(list_activities))
        .route(
            "/v1/messages/{message_id}/seen",
            put(mark_seen).delete(mark_unseen),
        )
        .route(
            "/v1/messages/{message_id}/read",
            put(mark_read).delete(mark_unread),
        )
        .route(
            "/v1/messages/{message_id}/archived",
            put(mark_archived).delete(mark_unarchived),
        )
        .route("/v1/messages/{message_id}/unseen", put(mark_unseen))
        .route("/v1/messages/{message_id}/unread", put(mark_unread))
        .route("/v1/messages/{message_id}/unarchived", put(mark_unarchived))
        .route("/v1/messages/{message_id}/interacted", put(mark_interacted))
        .route("/v1/messages/batch/{status}", post(batch_status))
        .route(
            "/v1/channels/{channel_id}/messages/bulk/{action}",
            post(bulk_channel_status),
        )
}

fn filter_from(params: &Params) -> ApiResult<MessageFilter> {
    let statuses = params.list("status");
    for s in &statuses {
        if !matches!(
            s.as_str(),
            "queued"
                | "sent"
                | "delivered"
                | "delivery_attempted"
                | "undelivered"
                | "not_sent"
                | "bounced"
        ) {
            return Err(ApiError::field("status", "is not a known delivery status"));
        }
    }
    let engagement = params.list("engagement_status");
    for e in &engagement {
        if !matches!(
            e.as_str(),
            "seen"
                | "unseen"
                | "read"
                | "unread"
                | "archived"
                | "unarchived"
                | "interacted"
                | "link_clicked"
        ) {
            return Err(ApiError::field(
                "engagement_status",
                "is not a known engagement status",
            ));
        }
    }
    Ok(MessageFilter {
        workflow_key: params.get("source").map(String::from),
        tenant: params.get("tenant").map(String::from),
        has_tenant: params.bool("has_tenant")?,
        statuses,
        engagement,
        archived: archived_filter(params, ArchivedFilter::Include)?,
        categories: params.list("workflow_categories"),
        message_ids: params.list("message_ids"),
        trigger_data: trigger_data_filter(params)?,
        workflow_run_id: params.get("workflow_run_id").map(String::from),
        recipient_run_id: params.get("workflow_recipient_run_id").map(String::from),
        inserted_at_gte: params.timestamp("inserted_at.gte")?,
        inserted_at_lte: params.timestamp("inserted_at.lte")?,
        inserted_at_gt: params.timestamp("inserted_at.gt")?,
        inserted_at_lt: params.timestamp("inserted_at.lt")?,
        ..MessageFilter::default()
    })
}

async fn list_with(
    state: &AppState,
    caller: &Caller,
    mut filter: MessageFilter,
    params: &Params,
) -> ApiResult<Json<Value>> {
    if let Some(channel) = params.get("channel_id") {
        let key = state
            .channels()
            .by_id_or_key(channel)
            .map(|c| c.key.clone())
            .unwrap_or_else(|| channel.to_string());
        filter.channel_key = Some(key);
    }
    let page = params.page()?;
    let result = state
        .store
        .list_messages(caller.env_id(), &filter, &page)
        .await?;
    let items: Vec<Value> = result.entries.iter().map(|m| render(state, m)).collect();
    Ok(Json(json!({
        "items": items,
        "page_info": page_info(&result, page.page_size),
    })))
}

fn render(state: &AppState, m: &MessageRecord) -> Value {
    message_out(
        m,
        state.channels().by_key(&m.channel_key).map(|c| c.as_ref()),
    )
}

async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let filter = filter_from(&params)?;
    list_with(&state, &caller, filter, &params).await
}

async fn list_user_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    let mut filter = filter_from(&params)?;
    filter.recipient_id = Some(user_id);
    list_with(&state, &caller, filter, &params).await
}

/// The messages whose recipient is the object: the user listing's filters and pages.
async fn list_object_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, id)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let mut filter = filter_from(&params)?;
    filter.recipient_id = Some(id);
    filter.recipient_collection = Some(collection);
    list_with(&state, &caller, filter, &params).await
}

/// Loads a message the caller may see; a public key only sees its own user's messages.
async fn visible_message(state: &AppState, caller: &Caller, id: &str) -> ApiResult<MessageRecord> {
    let message = state
        .store
        .get_message(caller.env_id(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    // An object's message is not its namesake user's: public keys only see user messages.
    let allowed = if message.recipient_collection.is_some() {
        caller.require_secret()
    } else {
        caller.require_user(&message.recipient_id)
    };
    allowed.map_err(|_| ApiError::not_found("message"))?;
    Ok(message)
}

async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let message = visible_message(&state, &caller, &id).await?;
    Ok(Json(render(&state, &message)))
}

async fn get_content(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let message = visible_message(&state, &caller, &id).await?;
    Ok(Json(json!({
        "__typename": "MessageContents",
        "message_id": message.id,
        "data": message.content,
        "inserted_at": hark_core::time::rfc3339(message.inserted_at),
        "timestamp": hark_core::time::rfc3339(message.inserted_at),
    })))
}

fn single_page(items: Vec<Value>, page_size: i64) -> Value {
    json!({
        "items": items,
        "page_info": {"__typename": "PageInfo", "after": null, "before": null, "page_size": page_size},
    })
}

async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let message = visible_message(&state, &caller, &id).await?;
    let page = params.page()?;
    let events = state
        .store
        .message_events(caller.env_id(), &message.id, &page)
        .await?;
    Ok(Json(json!({
        "items": events.entries.iter().map(message_event_out).collect::<Vec<_>>(),
        "page_info": page_info(&events, page.page_size),
    })))
}

async fn list_delivery_logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let message = visible_message(&state, &caller, &id).await?;
    let page = params.page()?;
    let logs = state
        .store
        .delivery_logs(caller.env_id(), &message.id, &page)
        .await?;
    Ok(Json(json!({
        "items": logs.entries.iter().map(delivery_log_out).collect::<Vec<_>>(),
        "page_info": page_info(&logs, page.page_size),
    })))
}

async fn list_activities(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    let message = visible_message(&state, &caller, &id).await?;
    let actor_users = state
        .store
        .get_users(caller.env_id(), &message.actors)
        .await?;
    let actors: Vec<Value> = actor_users.iter().map(crate::out::user_out).collect();
    let recipient = json!({"__typename": "User", "id": message.recipient_id});
    let actors: Vec<&Value> = actors.iter().collect();
    let (activities, _) = crate::out::activities_out(&message, &actors, &recipient);
    let activities = activities
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<Value>, _>>()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("activities: {e}")))?;
    Ok(Json(single_page(activities, params.page_size()?)))
}

async fn change_one(
    state: &AppState,
    caller: &Caller,
    id: &str,
    change: Engagement,
) -> ApiResult<Json<Value>> {
    let message = visible_message(state, caller, id).await?;
    let updated = state
        .store
        .set_engagement(caller.env_id(), &[message.id], change, state.now())
        .await?;
    let message = updated
        .first()
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(Json(render(state, message)))
}

macro_rules! engagement_handler {
    ($name:ident, $change:expr) => {
        async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            Path(id): Path<String>,
        ) -> ApiResult<Json<Value>> {
            change_one(&state, &caller, &id, $change).await
        }
    };
}

engagement_handler!(mark_seen, Engagement::Seen);
engagement_handler!(mark_unseen, Engagement::Unseen);
engagement_handler!(mark_read, Engagement::Read);
engagement_handler!(mark_unread, Engagement::Unread);
engagement_handler!(mark_archived, Engagement::Archived);
engagement_handler!(mark_unarchived, Engagement::Unarchived);
engagement_handler!(mark_interacted, Engagement::Interacted);

async fn batch_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(status): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    let change = Engagement::parse(&status)
        .filter(|c| *c != Engagement::LinkClicked)
        .ok_or_else(|| ApiError::field("status", "is not a known engagement status"))?;
    let ids: Vec<String> = match body.get("message_ids") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::field("message_ids", "must be a list of strings"))?,
        _ => return Err(ApiError::field("message_ids", "can't be blank")),
    };
    if ids.len() > MAX_BATCH {
        return Err(ApiError::field(
            "message_ids",
            "must have at most 1000 entries",
        ));
    }
    // A public key may only touch its own user's messages: filter to those.
    let mut allowed = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(m) = state.store.get_message(caller.env_id(), &id).await? {
            if caller.require_user(&m.recipient_id).is_ok() {
                allowed.push(m.id);
            }
        }
    }
    let updated = state
        .store
        .set_engagement(caller.env_id(), &allowed, change, state.now())
        .await?;
    Ok(Json(Value::Array(
        updated.iter().map(|m| render(&state, m)).collect(),
    )))
}

/// Marks every message of one channel matching a filter, for one or more users. The
/// browser client sends `user_ids`; the spec says `recipient_ids`: both are accepted.
async fn bulk_channel_status(
    State(state): State<AppState>,
    caller: Caller,
    Path((channel_id, action)): Path<(String, String)>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    let change = Engagement::parse(&action)
        .filter(|c| *c != Engagement::LinkClicked)
        .ok_or_else(|| ApiError::field("action", "is not a known engagement status"))?;
    let channel = state
        .channels()
        .by_id_or_key(&channel_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("channel"))?;
    let users: Vec<String> = ["user_ids", "recipient_ids"]
        .iter()
        .filter_map(|k| body.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    if users.is_empty() {
        return Err(ApiError::field("user_ids", "can't be blank"));
    }
    for u in &users {
        caller.require_user(u)?;
    }
    let archived = match body.get("archived").and_then(Value::as_str) {
        Some("include") => ArchivedFilter::Include,
        Some("only") => ArchivedFilter::Only,
        _ => ArchivedFilter::Exclude,
    };
    let mut ids = Vec::new();
    for user in users {
        let filter = MessageFilter {
            recipient_id: Some(user),
            channel_key: Some(channel.key.clone()),
            archived,
            tenant: body
                .get("tenants")
                .and_then(|t| t.get(0))
                .and_then(Value::as_str)
                .map(String::from),
            ..MessageFilter::default()
        };
        let mut page = hark_store::PageRequest {
            after: None,
            before: None,
            page_size: 100,
        };
        loop {
            let result = state
                .store
                .list_messages(caller.env_id(), &filter, &page)
                .await?;
            ids.extend(result.entries.into_iter().map(|m| m.id));
            match result.after {
                Some(after) => page.after = Some(after),
                None => break,
            }
        }
    }
    let now = state.now();
    let mut count = 0;
    for chunk in ids.chunks(500) {
        count += state
            .store
            .set_engagement(caller.env_id(), chunk, change, now)
            .await?
            .len();
    }
    let op = json!({
        "__typename": "BulkOperation",
        "id": hark_core::new_id(),
        "name": format!("channel.messages.{action}"),
        "status": "completed",
        "estimated_total_rows": count,
        "processed_rows": count,
        "success_count": count,
        "error_count": 0,
        "error_items": [],
        "inserted_at": hark_core::time::rfc3339(now),
        "updated_at": hark_core::time::rfc3339(now),
        "started_at": hark_core::time::rfc3339(now),
        "completed_at": hark_core::time::rfc3339(now),
        "failed_at": null,
        "progress_path": null,
    });
    Ok(Json(op))
}
