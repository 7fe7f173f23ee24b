//! `/mgmt/v1/email_layouts`: the frames email steps render into. A step selects one with
//! its template's `settings.layout_key`; the layout's `html_layout` and `text_layout` are
//! Liquid with the rendered body as `{{ content }}` (see `hark-engine::render`).
//!
//! Hark has no branches or commits for layouts: a write takes effect at once in the
//! addressed environment, so `branch`, `commit`, `commit_message`, `annotate` and `force`
//! are accepted and ignored.

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use hark_core::recipient::{validate_id, FieldError};
use hark_core::time::rfc3339;
use hark_engine::layout::has_content_tag;
use hark_store::EmailLayout;
use serde_json::{json, Value};

use crate::auth::MgmtCaller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{KnockJson, Params};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/email_layouts", get(list_layouts))
        .route(
            "/v1/email_layouts/{email_layout_key}",
            get(get_layout).put(upsert_layout),
        )
        .route(
            "/v1/email_layouts/{email_layout_key}/validate",
            put(validate_layout),
        )
}

/// Knock's `EmailLayout`.
fn layout_out(layout: &EmailLayout, environment: &str) -> Value {
    json!({
        "key": layout.key,
        "name": layout.name,
        "html_layout": layout.html_layout,
        "text_layout": layout.text_layout,
        "footer_links": layout.footer_links,
        "is_mjml": false,
        "environment": environment,
        "sha": null,
        "created_at": rfc3339(layout.created_at),
        "updated_at": rfc3339(layout.updated_at),
    })
}

async fn list_layouts(
    State(state): State<AppState>,
    caller: MgmtCaller,
    params: Params,
) -> ApiResult<Json<Value>> {
    let page_size = params.page_size()?;
    let mut layouts = state
        .store
        .list_email_layouts(&caller.environment.id, params.get("after"), page_size + 1)
        .await?;
    let more = layouts.len() as i64 > page_size;
    layouts.truncate(page_size as usize);
    let after = match layouts.last() {
        Some(last) if more => json!(last.key),
        _ => Value::Null,
    };
    Ok(Json(json!({
        "entries": layouts
            .iter()
            .map(|l| layout_out(l, &caller.environment.slug))
            .collect::<Vec<_>>(),
        "page_info": {"__typename": "PageInfo", "after": after, "before": null, "page_size": page_size},
    })))
}

async fn get_layout(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    let layout = state
        .store
        .get_email_layout(&caller.environment.id, &key)
        .await?
        .ok_or_else(|| ApiError::not_found("email_layout"))?;
    Ok(Json(layout_out(&layout, &caller.environment.slug)))
}

fn required_string(
    layout: &Value,
    field: &str,
    errors: &mut Vec<FieldError>,
    allow_blank: bool,
) -> String {
    match layout.get(field) {
        Some(Value::String(s)) if allow_blank || !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => {
            errors.push(FieldError::new(
                format!("email_layout.{field}"),
                "can't be blank",
            ));
            String::new()
        }
        _ => {
            errors.push(FieldError::new(
                format!("email_layout.{field}"),
                "is required and must be a string",
            ));
            String::new()
        }
    }
}

/// Validates a `WrappedEmailLayoutRequestRequest` into the layout to store.
fn parse_layout(key: &str, body: &Value) -> Result<EmailLayout, Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Err(e) = validate_id(key, "email_layout_key") {
        errors.push(e);
    }
    let Some(layout) = body.get("email_layout").filter(|l| l.is_object()) else {
        errors.push(FieldError::new("email_layout", "must be an object"));
        return Err(errors);
    };
    let name = required_string(layout, "name", &mut errors, false);
    let html_layout = required_string(layout, "html_layout", &mut errors, false);
    let text_layout = required_string(layout, "text_layout", &mut errors, true);
    // Knock: `content` "must appear somewhere in every layout"; a text layout left blank
    // is allowed and sends an empty text part.
    if !html_layout.is_empty() && !has_content_tag(&html_layout) {
        errors.push(FieldError::new(
            "email_layout.html_layout",
            "must contain {{ content }}",
        ));
    }
    if !text_layout.trim().is_empty() && !has_content_tag(&text_layout) {
        errors.push(FieldError::new(
            "email_layout.text_layout",
            "must contain {{ content }}",
        ));
    }
    // Hark renders Liquid layouts only; MJML would need a compiler.
    if layout.get("is_mjml").and_then(Value::as_bool) == Some(true) {
        errors.push(FieldError::new(
            "email_layout.is_mjml",
            "MJML layouts are not supported",
        ));
    }
    let footer_links = match layout.get("footer_links") {
        None | Some(Value::Null) => json!([]),
        Some(Value::Array(links)) => {
            for (i, link) in links.iter().enumerate() {
                for part in ["text", "url"] {
                    if !link.get(part).is_some_and(Value::is_string) {
                        errors.push(FieldError::new(
                            format!("email_layout.footer_links[{i}].{part}"),
                            "is required and must be a string",
                        ));
                    }
                }
            }
            Value::Array(links.clone())
        }
        Some(_) => {
            errors.push(FieldError::new(
                "email_layout.footer_links",
                "must be a list of {text, url}",
            ));
            Value::Null
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(EmailLayout {
        key: key.to_string(),
        name,
        html_layout,
        text_layout,
        footer_links,
        created_at: 0,
        updated_at: 0,
    })
}

async fn upsert_layout(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    let layout = parse_layout(&key, &body).map_err(ApiError::invalid)?;
    let stored = state
        .store
        .upsert_email_layout(&caller.environment.id, &layout, state.now())
        .await?;
    Ok(Json(
        json!({ "email_layout": layout_out(&stored, &caller.environment.slug) }),
    ))
}

/// `PUT …/validate`: the layout as it would be stored, without storing it. Timestamps are
/// those of the stored layout, or now for a new one.
async fn validate_layout(
    State(state): State<AppState>,
    caller: MgmtCaller,
    Path(key): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Json<Value>> {
    let mut layout = parse_layout(&key, &body).map_err(ApiError::invalid)?;
    let now = state.now();
    let created_at = state
        .store
        .get_email_layout(&caller.environment.id, &key)
        .await?
        .map_or(now, |existing| existing.created_at);
    layout.created_at = created_at;
    layout.updated_at = now;
    Ok(Json(
        json!({ "email_layout": layout_out(&layout, &caller.environment.slug) }),
    ))
}
