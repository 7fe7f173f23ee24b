//! `/v1/workflows/{key}/trigger` and `/cancel`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hark_core::preferences::{PersistenceStrategy, PreferenceSet};
use hark_core::recipient::{validate_user_properties, FieldError, RecipientRequest};
use hark_core::{new_id, Millis};
use hark_store::{
    hash_secret, DocumentKind, IdempotencyClaim, Owner, TriggerOutcome, TriggerWrite,
    TENANTS_COLLECTION,
};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::KnockJson;
use crate::public::preferences::{inline_sets, merged_sets};
use crate::public::tenants::parse_tenant;
use crate::state::AppState;

const MAX_RECIPIENTS: usize = 1000;
const IDEMPOTENCY_WINDOW_MS: Millis = 24 * 60 * 60 * 1000;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/workflows/{key}/trigger", post(trigger))
        .route("/v1/workflows/{key}/cancel", post(cancel))
}

/// A validated trigger body.
struct TriggerIn {
    recipients: Vec<String>,
    /// Object recipients `(collection, id)`: their subscribers are notified.
    objects: Vec<(String, String)>,
    inline_users: Vec<(String, Map<String, Value>)>,
    /// Inline `preferences` of inline users, validated, to merge into what is stored.
    inline_preferences: Vec<(String, InlineSets)>,
    actor: Option<String>,
    tenant: Option<String>,
    data: Value,
    cancellation_key: Option<String>,
    /// An inline tenant to set before the runs start.
    inline_tenant: Option<(String, Map<String, Value>)>,
    /// `sandbox_mode` and `skip_delay`, kept in each run's state.
    settings: Value,
}

type InlineSets = Vec<(String, PreferenceSet, PersistenceStrategy)>;

/// Inline users of a trigger (recipients and actor): properties and preference sets.
#[derive(Default)]
struct InlineUsers {
    properties: Vec<(String, Map<String, Value>)>,
    preferences: Vec<(String, InlineSets)>,
}

fn push_inline(
    inline: &mut InlineUsers,
    errors: &mut Vec<FieldError>,
    request: RecipientRequest,
    field: &str,
) -> String {
    let id = request.id().to_string();
    if let RecipientRequest::InlineUser { properties, .. } = request {
        // Inline preferences follow identify's rules: merged into stored sets by default.
        let preferences = properties
            .get("preferences")
            .map(|p| json!({ "preferences": p }))
            .unwrap_or(Value::Null);
        match inline_sets(&preferences) {
            Ok(sets) if !sets.is_empty() => inline.preferences.push((id.clone(), sets)),
            Ok(_) => {}
            Err(e) => errors.extend(
                e.into_iter()
                    .map(|e| FieldError::new(format!("{field}.{}", e.field), e.message)),
            ),
        }
        let mut props = properties;
        props.remove("__typename");
        props.remove("channel_data");
        props.remove("preferences");
        for e in validate_user_properties(&props) {
            errors.push(FieldError::new(format!("{field}.{}", e.field), e.message));
        }
        inline.properties.push((id.clone(), props));
    }
    id
}

fn parse_trigger(body: &Value) -> Result<TriggerIn, Vec<FieldError>> {
    let Some(body) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be an object")]);
    };
    let mut errors = Vec::new();
    let mut inline = InlineUsers::default();
    let mut recipients = Vec::new();
    let mut objects: Vec<(String, String)> = Vec::new();
    match body.get("recipients") {
        Some(Value::Array(items)) => {
            if items.is_empty() {
                errors.push(FieldError::new(
                    "recipients",
                    "must have at least one recipient",
                ));
            }
            if items.len() > MAX_RECIPIENTS {
                errors.push(FieldError::new(
                    "recipients",
                    "must have at most 1000 recipients",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, item) in items.iter().enumerate().take(MAX_RECIPIENTS) {
                let field = format!("recipients[{i}]");
                if let Some(collection) = item.get("collection") {
                    match (collection.as_str(), item.get("id").and_then(Value::as_str)) {
                        (Some(c), Some(id))
                            if !c.is_empty() && !c.starts_with('$') && !id.is_empty() =>
                        {
                            let key = (c.to_string(), id.to_string());
                            if !objects.contains(&key) {
                                objects.push(key);
                            }
                        }
                        _ => errors.push(FieldError::new(
                            field,
                            "an object recipient needs a collection and an id",
                        )),
                    }
                    continue;
                }
                match RecipientRequest::parse(item, &field) {
                    Ok(r) => {
                        let id = push_inline(&mut inline, &mut errors, r, &field);
                        if seen.insert(id.clone()) {
                            recipients.push(id);
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        None | Some(Value::Null) => errors.push(FieldError::new("recipients", "can't be blank")),
        Some(_) => errors.push(FieldError::new("recipients", "must be a list")),
    }
    let actor = match body.get("actor") {
        None | Some(Value::Null) => None,
        Some(value) => match RecipientRequest::parse(value, "actor") {
            Ok(r) => Some(push_inline(&mut inline, &mut errors, r, "actor")),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    let mut inline_tenant = None;
    let tenant = match body.get("tenant") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
        Some(value @ Value::Object(_)) => match parse_tenant(value, None, "tenant") {
            Ok((id, props)) => {
                if !props.is_empty() {
                    inline_tenant = Some((id.clone(), props));
                }
                Some(id)
            }
            Err(e) => {
                errors.extend(e);
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "tenant",
                "must be a tenant id or an object with an id",
            ));
            None
        }
    };
    let data = match body.get("data") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(d)) => Value::Object(d.clone()),
        Some(_) => {
            errors.push(FieldError::new("data", "must be an object"));
            Value::Null
        }
    };
    let cancellation_key = match body.get("cancellation_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.len() <= 255 => Some(k.clone()),
        Some(_) => {
            errors.push(FieldError::new(
                "cancellation_key",
                "must be a string of at most 255 characters",
            ));
            None
        }
    };
    let mut settings = serde_json::Map::new();
    match body.get("settings") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            for key in ["sandbox_mode", "skip_delay"] {
                match given.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::Bool(on)) => {
                        settings.insert(key.to_string(), Value::Bool(*on));
                    }
                    Some(_) => errors.push(FieldError::new(
                        format!("settings.{key}"),
                        "must be a boolean",
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::new("settings", "must be an object")),
    }
    if errors.is_empty() {
        Ok(TriggerIn {
            recipients,
            objects,
            inline_users: inline.properties,
            inline_preferences: inline.preferences,
            actor,
            tenant,
            data,
            cancellation_key,
            inline_tenant,
            settings: Value::Object(settings),
        })
    } else {
        Err(errors)
    }
}

async fn trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<Response> {
    caller.require_secret()?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN => Some(k.to_string()),
            _ => {
                return Err(ApiError::field(
                    "Idempotency-Key",
                    "must be a non-empty string of at most 255 characters",
                ))
            }
        },
    };
    let input = parse_trigger(&body).map_err(ApiError::invalid)?;
    let head = match state.lookups.workflow_head(caller.env_id(), &key) {
        Some(head) => Some(head),
        None => {
            let head = state.store.committed_version(caller.env_id(), &key).await?;
            if let Some(head) = head {
                state
                    .lookups
                    .remember_workflow_head(caller.env_id(), &key, head);
            }
            head
        }
    };
    let Some((version, active)) = head else {
        return Err(ApiError::new(
            ErrorCode::WorkflowMissing,
            format!("The workflow `{key}` was not found or has no committed version"),
        ));
    };
    if !active {
        return Err(ApiError::new(
            ErrorCode::WorkflowInactive,
            format!("The workflow `{key}` is inactive"),
        ));
    }
    let definition = match state
        .engine
        .pinned_workflow(caller.env_id(), &key, version)
        .await?
    {
        Ok(definition) => definition,
        Err(errors) => return Err(ApiError::invalid(errors)),
    };
    if let Some(schema) = &definition.trigger_data_json_schema {
        trigger_data_errors(schema, &input.data).map_err(ApiError::invalid)?;
    }
    let now = state.now();
    let workflow_run_id = new_id();
    let response = json!({"workflow_run_id": workflow_run_id});
    let idempotency = idempotency_key.map(|k| IdempotencyClaim {
        key: format!("trigger:{key}:{k}"),
        request_hash: hash_secret(&body.to_string()),
        response: response.clone(),
        not_before: now - IDEMPOTENCY_WINDOW_MS,
    });
    let inline_documents =
        merged_inline_documents(&state, caller.env_id(), &input.inline_preferences).await?;
    let write = TriggerWrite {
        environment_id: caller.env_id().to_string(),
        workflow_key: key,
        workflow_version: version,
        workflow_run_id,
        actor: input.actor,
        tenant: input.tenant,
        data: input.data,
        cancellation_key: input.cancellation_key,
        recipients: input.recipients,
        inline_users: input.inline_users,
        fan_outs: input.objects,
        inline_objects: input
            .inline_tenant
            .map(|(id, props)| (TENANTS_COLLECTION.to_string(), id, props))
            .into_iter()
            .collect(),
        inline_documents,
        idempotency,
        state: json!({"settings": input.settings}),
        frequency: definition.trigger_frequency,
        lease: None,
        now,
    };
    match state.triggers.submit(write).await? {
        TriggerOutcome::Accepted => {
            // The committer handed the runs' jobs to this node's workers or woke workers
            // for them.
            metrics::counter!("hark_triggers_accepted_total").increment(1);
            Ok(Json(response).into_response())
        }
        TriggerOutcome::Replayed(previous) => {
            let mut resp = Json(previous).into_response();
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
        TriggerOutcome::IdempotencyKeyReused => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "This Idempotency-Key was already used with a different request body",
        )),
    }
}

/// The documents inline preferences become: each set merged (or replaced) over what is
/// stored now, written in the trigger's transaction so the runs see them.
async fn merged_inline_documents(
    state: &AppState,
    environment_id: &str,
    inline: &[(String, InlineSets)],
) -> ApiResult<Vec<(Owner, DocumentKind, String, Value)>> {
    let mut documents = Vec::new();
    for (user_id, sets) in inline {
        let owner = Owner::User(user_id.clone());
        for (set_id, next) in merged_sets(state, environment_id, &owner, sets).await? {
            documents.push((
                owner.clone(),
                DocumentKind::Preferences,
                set_id,
                next.to_json(),
            ));
        }
    }
    Ok(documents)
}

/// Checks trigger data against the workflow's `trigger_data_json_schema`: every violation
/// becomes one field error named by its JSON pointer under `data`.
pub(crate) fn trigger_data_errors(schema: &Value, data: &Value) -> Result<(), Vec<FieldError>> {
    let validator = jsonschema::validator_for(schema).map_err(|e| {
        vec![FieldError::new(
            "trigger_data_json_schema",
            format!("the workflow's schema is invalid: {e}"),
        )]
    })?;
    let errors: Vec<FieldError> = validator
        .iter_errors(data)
        .map(|e| {
            let pointer = e.instance_path.to_string();
            let field = if pointer.is_empty() {
                "data".to_string()
            } else {
                format!("data{}", pointer.replace('/', "."))
            };
            FieldError::new(field, e.to_string())
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    KnockJson(body): KnockJson<Value>,
) -> ApiResult<StatusCode> {
    caller.require_secret()?;
    let Some(cancellation_key) = body
        .get("cancellation_key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    else {
        return Err(ApiError::field("cancellation_key", "can't be blank"));
    };
    let recipients = match body.get("recipients") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut ids = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let r = RecipientRequest::parse(item, &format!("recipients[{i}]"))
                    .map_err(|e| ApiError::invalid(vec![e]))?;
                ids.push(r.id().to_string());
            }
            Some(ids)
        }
        Some(_) => return Err(ApiError::field("recipients", "must be a list")),
    };
    let cancelled = state
        .store
        .cancel_runs(
            caller.env_id(),
            &key,
            cancellation_key,
            recipients.as_deref(),
            state.now(),
        )
        .await?;
    metrics::counter!("hark_runs_finished_total", "status" => "cancelled").increment(cancelled);
    Ok(StatusCode::NO_CONTENT)
}
