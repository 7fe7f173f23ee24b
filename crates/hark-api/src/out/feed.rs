//! Feed entries (Knock's `FeedItem` and `Activity`), serialized straight from store
//! records. Built as `Value` trees instead, a page of 50 entries cloned every message's
//! data, blocks and actors and allocated every key: about a quarter of a feed read's CPU
//! went to allocating and freeing them.

use std::borrow::Cow;

use hark_core::time::rfc3339;
use hark_store::MessageRecord;
use serde::Serialize;
use serde_json::{json, Value};

static NULL: Value = Value::Null;
static EMPTY_ARRAY: Value = Value::Array(Vec::new());

/// One entry of a feed page.
#[derive(Serialize)]
pub struct FeedItem<'a> {
    #[serde(rename = "__typename")]
    typename: &'static str,
    #[serde(rename = "__cursor")]
    cursor: String,
    id: &'a str,
    actors: Vec<&'a Value>,
    activities: Vec<Activity<'a>>,
    blocks: &'a Value,
    data: Cow<'a, Value>,
    source: Source<'a>,
    tenant: Option<&'a str>,
    total_activities: i64,
    total_actors: usize,
    seen_at: Option<String>,
    read_at: Option<String>,
    interacted_at: Option<String>,
    link_clicked_at: Option<String>,
    clicked_at: Option<String>,
    archived_at: Option<String>,
    inserted_at: String,
    updated_at: String,
}

#[derive(Serialize)]
struct Source<'a> {
    #[serde(rename = "__typename")]
    typename: &'static str,
    key: &'a str,
    version_id: String,
    categories: &'a [String],
}

/// One activity of a message: a batched trigger, or the message's own trigger.
#[derive(Serialize)]
pub struct Activity<'a> {
    #[serde(rename = "__typename")]
    typename: &'static str,
    id: Cow<'a, Value>,
    actor: Cow<'a, Value>,
    recipient: &'a Value,
    data: Cow<'a, Value>,
    inserted_at: Cow<'a, Value>,
    updated_at: Cow<'a, Value>,
}

impl<'a> FeedItem<'a> {
    /// `actors` are the message's actors as user objects, `recipient` its recipient;
    /// `compact` (Knock's `mode=compact`) keeps one actor and drops activities and
    /// nested data.
    pub fn of(
        m: &'a MessageRecord,
        cursor: String,
        actors: Vec<&'a Value>,
        recipient: &'a Value,
        compact: bool,
    ) -> Self {
        let data = match &m.data {
            Value::Object(map) if compact => Cow::Owned(Value::Object(
                map.iter()
                    .filter(|(_, v)| !v.is_object() && !v.is_array())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )),
            data => Cow::Borrowed(data),
        };
        let (activities, total_activities) = activities_out(m, &actors, recipient);
        let total_actors = m
            .batch
            .as_ref()
            .and_then(|b| b.get("total_actors"))
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .unwrap_or(actors.len());
        let (activities, actors) = if compact {
            (Vec::new(), actors.into_iter().take(1).collect())
        } else {
            (activities, actors)
        };
        FeedItem {
            typename: "FeedItem",
            cursor,
            id: &m.id,
            actors,
            activities,
            blocks: m.content.get("blocks").unwrap_or(&EMPTY_ARRAY),
            data,
            source: Source {
                typename: "NotificationSource",
                key: &m.workflow_key,
                version_id: m.workflow_version.to_string(),
                categories: &m.categories,
            },
            tenant: m.tenant.as_deref(),
            total_activities,
            total_actors,
            seen_at: m.seen_at.map(rfc3339),
            read_at: m.read_at.map(rfc3339),
            interacted_at: m.interacted_at.map(rfc3339),
            link_clicked_at: m.link_clicked_at.map(rfc3339),
            clicked_at: m.link_clicked_at.map(rfc3339),
            archived_at: m.archived_at.map(rfc3339),
            inserted_at: rfc3339(m.inserted_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

/// A message's activities: one per batched trigger after a batch, else the message's own
/// trigger; and their total (a batch may hold more than it lists). `actors` are the
/// message's actors as user objects.
pub fn activities_out<'a>(
    m: &'a MessageRecord,
    actors: &[&'a Value],
    recipient: &'a Value,
) -> (Vec<Activity<'a>>, i64) {
    let Some(batch) = &m.batch else {
        let single = Activity {
            typename: "Activity",
            id: Cow::Owned(Value::String(m.id.clone())),
            actor: Cow::Borrowed(actors.first().copied().unwrap_or(&NULL)),
            recipient,
            data: Cow::Borrowed(&m.data),
            inserted_at: Cow::Owned(Value::String(rfc3339(m.inserted_at))),
            updated_at: Cow::Owned(Value::String(rfc3339(m.updated_at))),
        };
        return (vec![single], 1);
    };
    let actor_named = |id: Option<&str>| -> Cow<'a, Value> {
        match id {
            None => Cow::Borrowed(&NULL),
            Some(id) => actors
                .iter()
                .find(|a| a["id"] == id)
                .map(|a| Cow::Borrowed(*a))
                .unwrap_or_else(|| Cow::Owned(json!({"__typename": "User", "id": id}))),
        }
    };
    let field = |a: &'a Value, key: &str| Cow::Borrowed(a.get(key).unwrap_or(&NULL));
    let items: Vec<Activity<'a>> = batch
        .get("activities")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|a| Activity {
                    typename: "Activity",
                    id: field(a, "id"),
                    actor: actor_named(a.get("actor").and_then(Value::as_str)),
                    recipient,
                    data: a
                        .get("data")
                        .map(Cow::Borrowed)
                        .unwrap_or_else(|| Cow::Owned(json!({}))),
                    inserted_at: field(a, "inserted_at"),
                    updated_at: field(a, "inserted_at"),
                })
                .collect()
        })
        .unwrap_or_default();
    let total = batch
        .get("total_activities")
        .and_then(Value::as_i64)
        .unwrap_or(items.len() as i64);
    (items, total)
}
