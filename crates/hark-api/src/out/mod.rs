//! Wire shapes (Knock's JSON) built from store records.

mod feed;

pub use feed::{activities_out, FeedItem};

use hark_core::time::rfc3339;
use hark_core::workflow::ChannelType;
use hark_engine::registry::Channel;
use hark_store::{
    BulkOperation, DeliveryLog, MessageEvent, MessageRecord, Page, RecipientRun, RunEvent,
    UserRecord, WorkflowRecord,
};
use serde_json::{json, Map, Value};

fn ts(ms: Option<i64>) -> Value {
    ms.map(|m| Value::String(rfc3339(m))).unwrap_or(Value::Null)
}

pub fn page_info<T>(page: &Page<T>, page_size: i64) -> Value {
    json!({
        "__typename": "PageInfo",
        "after": page.after,
        "before": page.before,
        "page_size": page_size,
    })
}

pub fn user_out(user: &UserRecord) -> Value {
    let mut map: Map<String, Value> = user.properties.clone();
    map.insert("__typename".into(), json!("User"));
    map.insert("id".into(), json!(user.id));
    map.insert("updated_at".into(), json!(rfc3339(user.updated_at)));
    for field in [
        "created_at",
        "email",
        "name",
        "phone_number",
        "avatar",
        "timezone",
    ] {
        map.entry(field).or_insert(Value::Null);
    }
    Value::Object(map)
}

/// A user as it appears nested in feeds (actors) when we only know its id.
pub fn recipient_ref(id: &str, user: Option<&UserRecord>) -> Value {
    match user {
        Some(u) => user_out(u),
        None => json!({"__typename": "User", "id": id}),
    }
}

fn engagement_statuses(m: &MessageRecord) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (at, name) in [
        (m.seen_at, "seen"),
        (m.read_at, "read"),
        (m.interacted_at, "interacted"),
        (m.link_clicked_at, "link_clicked"),
        (m.archived_at, "archived"),
    ] {
        if at.is_some() {
            out.push(name);
        }
    }
    out
}

fn source_out(m: &MessageRecord) -> Value {
    json!({
        "__typename": "NotificationSource",
        "key": m.workflow_key,
        "version_id": format!("{}", m.workflow_version),
        "categories": m.categories,
        "step_ref": m.step_ref,
        "type": "workflow",
        "workflow_run_id": m.workflow_run_id,
        "workflow_recipient_run_id": m.recipient_run_id,
    })
}

pub fn message_out(m: &MessageRecord, channel: Option<&Channel>) -> Value {
    json!({
        "__typename": "Message",
        "id": m.id,
        "channel_id": channel.map(|c| c.id.clone()).unwrap_or_else(|| m.channel_key.clone()),
        "channel": channel.map(channel_out),
        "recipient": recipient_out(m.recipient_collection.as_deref(), &m.recipient_id),
        "actors": m.actors,
        "workflow": m.workflow_key,
        "tenant": m.tenant,
        "status": m.status,
        "engagement_statuses": engagement_statuses(m),
        "seen_at": ts(m.seen_at),
        "read_at": ts(m.read_at),
        "interacted_at": ts(m.interacted_at),
        "link_clicked_at": ts(m.link_clicked_at),
        "clicked_at": ts(m.link_clicked_at),
        "archived_at": ts(m.archived_at),
        "inserted_at": rfc3339(m.inserted_at),
        "updated_at": rfc3339(m.updated_at),
        "scheduled_at": null,
        "source": source_out(m),
        "data": m.data,
        "metadata": {},
    })
}

pub fn message_event_out(e: &MessageEvent) -> Value {
    json!({
        "__typename": "MessageEvent",
        "id": e.id,
        "type": e.event_type,
        "recipient": e.recipient_id,
        "data": e.data,
        "inserted_at": rfc3339(e.inserted_at),
    })
}

pub fn delivery_log_out(l: &DeliveryLog) -> Value {
    json!({
        "__typename": "MessageDeliveryLog",
        "id": l.id,
        "environment_id": l.environment_id,
        "message_id": l.message_id,
        "service_name": l.service_name,
        "request": l.request,
        "response": l.response,
        "inserted_at": rfc3339(l.inserted_at),
    })
}

/// Knock's recipient reference: a user is its id, an object `{collection, id}`.
fn recipient_out(collection: Option<&str>, id: &str) -> Value {
    match collection {
        Some(collection) => json!({"collection": collection, "id": id}),
        None => json!(id),
    }
}

pub fn run_out(r: &RecipientRun) -> Value {
    json!({
        "__typename": "WorkflowRecipientRun",
        "id": r.id,
        "workflow_run_id": r.workflow_run_id,
        "workflow": r.workflow_key,
        "recipient": recipient_out(r.recipient_collection.as_deref(), &r.recipient_id),
        "actor": r.actor,
        "tenant": r.tenant,
        "status": r.status.as_str(),
        "error_count": r.error_count,
        "trigger_source": {"type": "api", "cancellation_key": r.cancellation_key},
        "inserted_at": rfc3339(r.inserted_at),
        "updated_at": rfc3339(r.updated_at),
    })
}

pub fn run_event_out(e: &RunEvent) -> Value {
    json!({
        "__typename": "WorkflowRecipientRunEvent",
        "id": e.id,
        "event": e.event,
        "status": e.status,
        "step_ref": e.step_ref,
        "step_type": e.step_type,
        "attempt": e.attempt,
        "data": e.data,
        "inserted_at": rfc3339(e.inserted_at),
    })
}

pub fn bulk_out(b: &BulkOperation, base_path: &str) -> Value {
    json!({
        "__typename": "BulkOperation",
        "id": b.id,
        "name": b.name,
        "status": b.status,
        "estimated_total_rows": b.estimated_total_rows,
        "processed_rows": b.processed_rows,
        "success_count": b.success_count,
        "error_count": b.error_count,
        "error_items": b.error_items,
        "progress_path": format!("{base_path}/v1/bulk_operations/{}", b.id),
        "inserted_at": rfc3339(b.inserted_at),
        "updated_at": rfc3339(b.updated_at),
        "started_at": ts(b.started_at),
        "completed_at": ts(b.completed_at),
        "failed_at": null,
    })
}

pub fn channel_out(c: &Channel) -> Value {
    json!({
        "__typename": "Channel",
        "id": c.id,
        "key": c.key,
        "name": c.name,
        "type": c.channel_type.as_str(),
        "provider": c.provider,
        "description": null,
        "custom_icon_url": null,
        "archived_at": null,
        "visible_in": ["workflow", "broadcast"],
        "environment_settings": {},
        "created_at": rfc3339(0),
        "updated_at": rfc3339(0),
    })
}

/// Hark's environments; a channel's settings differ between them only as the
/// configuration's `[channels.environments.<slug>]` says.
const ENVIRONMENT_SLUGS: [&str; 2] = ["development", "production"];

/// A channel for the Management API, with Knock's `environment_settings` per
/// environment. Only settings that are not secrets are shown (the tracking switches);
/// credentials stay in the configuration file.
pub fn channel_with_environments_out(c: &std::sync::Arc<Channel>) -> Value {
    let mut out = channel_out(c);
    let settings: Map<String, Value> = ENVIRONMENT_SLUGS
        .iter()
        .map(|slug| {
            let variant = c.variant(slug);
            let id = uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("{}/{slug}", c.id).as_bytes(),
            );
            let mut provider_settings = Map::new();
            if c.channel_type != ChannelType::Http && c.channel_type != ChannelType::Push {
                provider_settings.insert("link_tracking".into(), json!(variant.tracking.links));
            }
            if c.channel_type == ChannelType::Email {
                provider_settings.insert("open_tracking".into(), json!(variant.tracking.opens));
            }
            let entry = json!({
                "id": id.to_string(),
                "is_valid": true,
                "is_sandbox": variant.sandbox,
                "provider_settings": provider_settings,
                "channel_settings": null,
            });
            (slug.to_string(), entry)
        })
        .collect();
    out["environment_settings"] = Value::Object(settings);
    out
}

pub fn workflow_out(
    w: &WorkflowRecord,
    environment: &str,
    channel_type_of: &dyn Fn(&str) -> Option<&'static str>,
) -> Value {
    let mut out = match &w.draft {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    if let Some(Value::Array(steps)) = out.get_mut("steps") {
        for step in steps.iter_mut() {
            if let Some(obj) = step.as_object_mut() {
                if obj.get("type").and_then(Value::as_str) == Some("channel") {
                    let ty = obj
                        .get("channel_key")
                        .and_then(Value::as_str)
                        .and_then(channel_type_of);
                    if let Some(ty) = ty {
                        obj.insert("channel_type".into(), json!(ty));
                    }
                }
            }
        }
    }
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(w.draft.to_string().as_bytes()))
    };
    out.insert("key".into(), json!(w.key));
    out.insert("active".into(), json!(w.active));
    out.insert("valid".into(), json!(true));
    out.insert("environment".into(), json!(environment));
    out.insert("sha".into(), json!(sha));
    out.insert("created_at".into(), json!(rfc3339(w.created_at)));
    out.insert("updated_at".into(), json!(rfc3339(w.updated_at)));
    for (field, default) in [
        ("categories", json!([])),
        ("tags", json!([])),
        ("description", json!("")),
        ("settings", json!({})),
        ("trigger_frequency", json!("every_trigger")),
        ("conditions", Value::Null),
    ] {
        out.entry(field).or_insert(default);
    }
    Value::Object(out)
}
