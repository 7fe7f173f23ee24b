//! `/v1/users/{user_id}/feeds/{channel_id}`: the in-app feed, newest first.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hark_core::workflow::ChannelType;
use hark_store::{ArchivedFilter, MessageFilter};
use serde::Serialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::Params;
use crate::out::{page_info, recipient_ref, FeedItem};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/{user_id}/feeds/{channel_id}", get(get_feed))
        .route(
            "/v1/users/{user_id}/feeds/{channel_id}/settings",
            get(get_feed_settings),
        )
}

pub fn archived_filter(params: &Params, default: ArchivedFilter) -> ApiResult<ArchivedFilter> {
    Ok(match params.get("archived") {
        None => default,
        Some("exclude") => ArchivedFilter::Exclude,
        Some("include") => ArchivedFilter::Include,
        Some("only") => ArchivedFilter::Only,
        Some(_) => {
            return Err(ApiError::field(
                "archived",
                "must be exclude, include or only",
            ))
        }
    })
}

/// `trigger_data` arrives as a JSON object string; a message matches when each given key
/// equals the message's trigger data at that key.
pub fn trigger_data_filter(params: &Params) -> ApiResult<Vec<(String, Value)>> {
    match params.get("trigger_data") {
        None => Ok(Vec::new()),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map.into_iter().collect()),
            _ => Err(ApiError::field("trigger_data", "must be a JSON object")),
        },
    }
}

async fn get_feed(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, channel_id)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Response> {
    caller.require_user(&user_id)?;
    let channel = state
        .channels()
        .by_id_or_key(&channel_id)
        .filter(|c| c.channel_type == ChannelType::InAppFeed)
        .cloned()
        .ok_or_else(|| ApiError::not_found("feed channel"))?;
    let page = params.page()?;
    let mut filter = MessageFilter {
        recipient_id: Some(user_id.clone()),
        channel_key: Some(channel.key.clone()),
        workflow_key: params.get("source").map(String::from),
        tenant: params.get("tenant").map(String::from),
        has_tenant: params.bool("has_tenant")?,
        archived: archived_filter(&params, ArchivedFilter::Exclude)?,
        trigger_data: trigger_data_filter(&params)?,
        categories: params.list("workflow_categories"),
        inserted_at_gte: params.timestamp("inserted_at.gte")?,
        inserted_at_lte: params.timestamp("inserted_at.lte")?,
        inserted_at_gt: params.timestamp("inserted_at.gt")?,
        inserted_at_lt: params.timestamp("inserted_at.lt")?,
        ..MessageFilter::default()
    };
    // Badge counts ignore the read/seen status filter: they are what the bell shows.
    let count_filter = filter.clone();
    match params.get("status") {
        None | Some("all") => {}
        Some(s @ ("unread" | "read" | "unseen" | "seen")) => filter.engagement.push(s.to_string()),
        Some(_) => {
            return Err(ApiError::field(
                "status",
                "must be one of unread, read, unseen, seen, all",
            ))
        }
    }
    // The page, its counts and the recipient are one statement: each new message makes
    // every watching client read its feed again.
    let read = state
        .store
        .read_feed(caller.env_id(), &filter, &count_filter, &page, &user_id)
        .await?;
    let (counts, result, recipient) = (read.counts, read.page, read.user);
    let compact = params.get("mode") == Some("compact");

    let mut ids: Vec<String> = result
        .entries
        .iter()
        .flat_map(|m| m.actors.iter().chain(std::iter::once(&m.recipient_id)))
        .cloned()
        .collect();
    ids.sort();
    ids.dedup();
    let mut found: HashMap<String, hark_store::UserRecord> =
        recipient.into_iter().map(|u| (u.id.clone(), u)).collect();
    let others: Vec<String> = ids.iter().filter(|id| **id != user_id).cloned().collect();
    if !others.is_empty() {
        found.extend(
            state
                .store
                .get_users(caller.env_id(), &others)
                .await?
                .into_iter()
                .map(|u| (u.id.clone(), u)),
        );
    }
    let users: HashMap<&String, Value> = ids
        .iter()
        .map(|id| (id, recipient_ref(id, found.get(id))))
        .collect();
    let null = Value::Null;
    let entries: Vec<FeedItem<'_>> = result
        .entries
        .iter()
        .map(|m| {
            let actors = m.actors.iter().filter_map(|a| users.get(a)).collect();
            let recipient = users.get(&m.recipient_id).unwrap_or(&null);
            FeedItem::of(m, crate::cursor_for(&m.id), actors, recipient, compact)
        })
        .collect();
    let page = FeedPage {
        entries,
        meta: FeedMeta {
            typename: "FeedMetadata",
            total_count: counts.total,
            unread_count: counts.unread,
            unseen_count: counts.unseen,
        },
        page_info: page_info(&result, page.page_size),
        vars: serde_json::Map::new(),
    };
    // Serialized here: the entries borrow the records read above.
    let body = serde_json::to_vec(&page)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("feed page: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A feed page as Knock's client reads it.
#[derive(Serialize)]
struct FeedPage<'a> {
    entries: Vec<FeedItem<'a>>,
    meta: FeedMeta,
    page_info: Value,
    vars: serde_json::Map<String, Value>,
}

#[derive(Serialize)]
struct FeedMeta {
    #[serde(rename = "__typename")]
    typename: &'static str,
    total_count: i64,
    unread_count: i64,
    unseen_count: i64,
}

async fn get_feed_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, channel_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_user(&user_id)?;
    state
        .channels()
        .by_id_or_key(&channel_id)
        .filter(|c| c.channel_type == ChannelType::InAppFeed)
        .ok_or_else(|| ApiError::not_found("feed channel"))?;
    Ok(Json(json!({"features": {"branding_required": false}})))
}
