//! `/v1/audiences/{key}/members`: static audiences of users, optionally per tenant.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use hark_core::recipient::{validate_id, FieldError};
use hark_store::cursor;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{KnockJson, Params};
use crate::out::recipient_ref;
use crate::state::AppState;

/// Members one request may add or remove.
const MAX_MEMBERS_PER_CALL: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/audiences/{key}/members",
        get(list_members).post(add_members).delete(remove_members),
    )
}

/// One member of a request: user id, tenant, and the inline user to identify (if any).
type MemberIn = (String, Option<String>, Option<Value>);

/// `members: [{user: {id, …}, tenant?}]`, with inline user properties to identify.
fn parse_members(body: &Value) -> ApiResult<Vec<MemberIn>> {
    let Some(items) = body.get("members").and_then(Value::as_array) else {
        return Err(ApiError::field("members", "must be a list of members"));
    };
    if items.is_empty() || items.len() > MAX_MEMBERS_PER_CALL {
        return Err(ApiError::field(
            "members",
            "must have between 1 and 1000 members",
        ));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("members[{i}]");
        let user = item.get("user");
        let id = user
            .and_then(|u| u.get("id"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Err(e) = validate_id(id, &format!("{field}.user.id")) {
            errors.push(e);
            continue;
        }
        let tenant = match item.get("tenant") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
            Some(_) => {
                errors.push(FieldError::new(
                    format!("{field}.tenant"),
                    "must be a tenant id",
                ));
                continue;
            }
        };
        let inline = user
            .filter(|u| u.as_object().is_some_and(|m| m.len() > 1))
            .cloned();
        out.push((id.to_string(), tenant, inline));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// Member endpoints serve static audiences only. A dynamic audience's membership is its
/// segments evaluated against each user's current properties, so there is no member list
/// to change, and listing it would mean evaluating every user in the environment; both
/// are refused with an error that says why.
async fn refuse_dynamic(state: &AppState, environment_id: &str, key: &str) -> ApiResult<()> {
    let dynamic = state
        .store
        .get_audience(environment_id, key)
        .await?
        .is_some_and(|a| a.audience_type == "dynamic" && a.archived_at.is_none());
    if dynamic {
        return Err(ApiError::field(
            "key",
            &format!(
                "`{key}` is a dynamic audience: its members follow its segments and can't be listed or changed directly"
            ),
        ));
    }
    Ok(())
}

async fn add_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<StatusCode> {
    caller.require_secret()?;
    validate_id(&key, "key").map_err(|e| ApiError::invalid(vec![e]))?;
    refuse_dynamic(&state, caller.env_id(), &key).await?;
    let members = parse_members(&body)?;
    let env = caller.env_id();
    let mut inline = Vec::new();
    for (id, _, user) in &members {
        if let Some(user) = user {
            let props = super::users::user_properties(user, "user").map_err(ApiError::invalid)?;
            inline.push((id.clone(), props));
        }
    }
    for (id, props) in &inline {
        state.store.upsert_user(env, id, props, state.now()).await?;
    }
    let pairs: Vec<(String, Option<String>)> = members
        .into_iter()
        .map(|(id, tenant, _)| (id, tenant))
        .collect();
    state
        .store
        .add_audience_members(env, &key, &pairs, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<StatusCode> {
    caller.require_secret()?;
    refuse_dynamic(&state, caller.env_id(), &key).await?;
    let pairs: Vec<(String, Option<String>)> = parse_members(&body)?
        .into_iter()
        .map(|(id, tenant, _)| (id, tenant))
        .collect();
    state
        .store
        .remove_audience_members(caller.env_id(), &key, &pairs)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    caller.require_secret()?;
    refuse_dynamic(&state, caller.env_id(), &key).await?;
    let size = params.page_size()?;
    let after = params.get("after").and_then(cursor::decode).and_then(|k| {
        let mut parts = k.splitn(3, '\u{1f}');
        let at = parts.next()?.parse().ok()?;
        Some((at, parts.next()?.to_string(), parts.next()?.to_string()))
    });
    let env = caller.env_id();
    let mut members = state
        .store
        .list_audience_members(env, &key, after.as_ref(), size + 1)
        .await?;
    let has_more = members.len() as i64 > size;
    members.truncate(size as usize);
    let ids: Vec<String> = members.iter().map(|m| m.user_id.clone()).collect();
    let users = state.store.get_users(env, &ids).await?;
    let entries: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({
                "__typename": "AudienceMember",
                "user_id": m.user_id,
                "user": recipient_ref(&m.user_id, users.iter().find(|u| u.id == m.user_id)),
                "tenant": m.tenant,
                "added_at": hark_core::time::rfc3339(m.added_at),
            })
        })
        .collect();
    let after = members.last().filter(|_| has_more).map(|m| {
        cursor::encode(&format!(
            "{}\u{1f}{}\u{1f}{}",
            m.added_at,
            m.user_id,
            m.tenant.clone().unwrap_or_default()
        ))
    });
    Ok(Json(json!({
        "entries": entries,
        "page_info": {"__typename": "PageInfo", "after": after, "before": null, "page_size": size},
    })))
}
