//! The feed options a client reference joins with, and which references a new message
//! concerns. Matching and counting run through the same store filter as
//! `GET /v1/users/{id}/feeds/{channel}`, so a push never disagrees with the refetch it
//! triggers.

use hark_store::{ArchivedFilter, FeedCounts, MessageFilter, Store, StoreError};
use serde_json::{json, Map, Value};

/// One client reference's feed: the filter its feed requests use, minus the read/seen
/// status, which (as on the HTTP feed) narrows the items but not the badge counts.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRef {
    pub name: String,
    counts_filter: MessageFilter,
    status: Option<String>,
}

/// What a new message means for one reference that it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct RefUpdate {
    pub name: String,
    pub counts: FeedCounts,
}

fn text<'a>(options: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    options
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn option_error(reference: &str, key: &str, expected: &str) -> String {
    format!("`{reference}.{key}` must be {expected}")
}

impl FeedRef {
    /// Reads one reference's options. Unknown keys (paging, `mode`, client-only flags)
    /// are ignored: they change how a feed is shown, not which messages belong to it.
    pub fn parse(
        name: &str,
        options: &Value,
        recipient_id: &str,
        channel_key: &str,
    ) -> Result<Self, String> {
        let empty = Map::new();
        let options = match options {
            Value::Object(map) => map,
            Value::Null => &empty,
            _ => return Err(format!("`{name}` must map to an object of feed options")),
        };
        let archived = match text(options, "archived") {
            None | Some("exclude") => ArchivedFilter::Exclude,
            Some("include") => ArchivedFilter::Include,
            Some("only") => ArchivedFilter::Only,
            Some(_) => return Err(option_error(name, "archived", "exclude, include or only")),
        };
        let has_tenant = match options.get("has_tenant") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if s == "true" => Some(true),
            Some(Value::String(s)) if s == "false" => Some(false),
            Some(_) => return Err(option_error(name, "has_tenant", "a boolean")),
        };
        let categories = match options.get("workflow_categories") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|c| c.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| option_error(name, "workflow_categories", "a list of strings"))?,
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect(),
            Some(_) => {
                return Err(option_error(
                    name,
                    "workflow_categories",
                    "a list of strings",
                ))
            }
        };
        let trigger_data = match options.get("trigger_data") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map.clone().into_iter().collect(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(map)) => map.into_iter().collect(),
                _ => return Err(option_error(name, "trigger_data", "a JSON object")),
            },
            Some(_) => return Err(option_error(name, "trigger_data", "a JSON object")),
        };
        let status = match text(options, "status") {
            None | Some("all") => None,
            Some(s @ ("unread" | "read" | "unseen" | "seen")) => Some(s.to_string()),
            Some(_) => {
                return Err(option_error(
                    name,
                    "status",
                    "one of unread, read, unseen, seen, all",
                ))
            }
        };
        Ok(FeedRef {
            name: name.to_string(),
            counts_filter: MessageFilter {
                recipient_id: Some(recipient_id.to_string()),
                channel_key: Some(channel_key.to_string()),
                workflow_key: text(options, "source").map(String::from),
                tenant: text(options, "tenant").map(String::from),
                has_tenant,
                archived,
                categories,
                trigger_data,
                ..MessageFilter::default()
            },
            status,
        })
    }

    /// The reference's update if `message_id` belongs to its feed, else `None`.
    pub async fn update_for(
        &self,
        store: &dyn Store,
        environment_id: &str,
        message_id: &str,
    ) -> Result<Option<RefUpdate>, StoreError> {
        if !self.admits_every_new_message() {
            let mut membership = self.counts_filter.clone();
            membership.message_ids = vec![message_id.to_string()];
            membership.engagement.extend(self.status.clone());
            if store.count_feed(environment_id, &membership).await?.total == 0 {
                return Ok(None);
            }
        }
        let counts = self.counts(store, environment_id).await?;
        Ok(Some(RefUpdate {
            name: self.name.clone(),
            counts,
        }))
    }
}

impl FeedRef {
    /// Whether the reference's options admit every message just created for its user and
    /// channel (the socket only hears of those): nothing narrows the feed beyond "not
    /// archived", which a new message is. Then asking the database whether the message
    /// belongs is a query per message and reference that can only answer yes.
    fn admits_every_new_message(&self) -> bool {
        // Every field named, so that a new filter cannot be forgotten here.
        let MessageFilter {
            recipient_id: _,
            recipient_collection,
            channel_key: _,
            workflow_key,
            workflow_run_id,
            recipient_run_id,
            tenant,
            has_tenant,
            statuses,
            engagement,
            archived,
            categories,
            message_ids,
            trigger_data,
            inserted_at_gte,
            inserted_at_lte,
            inserted_at_gt,
            inserted_at_lt,
        } = &self.counts_filter;
        self.status.is_none()
            && recipient_collection.is_none()
            && workflow_key.is_none()
            && workflow_run_id.is_none()
            && recipient_run_id.is_none()
            && tenant.is_none()
            && has_tenant.is_none()
            && statuses.is_empty()
            && engagement.is_empty()
            && *archived != ArchivedFilter::Only
            && categories.is_empty()
            && message_ids.is_empty()
            && trigger_data.is_empty()
            && inserted_at_gte.is_none()
            && inserted_at_lte.is_none()
            && inserted_at_gt.is_none()
            && inserted_at_lt.is_none()
    }

    /// The reference's badge counts, as the HTTP feed reports them.
    pub async fn counts(
        &self,
        store: &dyn Store,
        environment_id: &str,
    ) -> Result<FeedCounts, StoreError> {
        store.count_feed(environment_id, &self.counts_filter).await
    }
}

/// All references of one join payload (`{"<ref>": {<feed options>}, …}`).
pub fn parse_join_payload(
    payload: &Value,
    recipient_id: &str,
    channel_key: &str,
) -> Result<Vec<FeedRef>, String> {
    match payload {
        Value::Object(map) => map
            .iter()
            .map(|(name, options)| FeedRef::parse(name, options, recipient_id, channel_key))
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err("the join payload must map client references to feed options".to_string()),
    }
}

fn metadata(counts: &FeedCounts) -> Value {
    json!({
        "__typename": "FeedMetadata",
        "total_count": counts.total,
        "unread_count": counts.unread,
        "unseen_count": counts.unseen,
    })
}

/// The `new-message` payload: counts per matching reference, `attn` naming them, and the
/// first one's counts at the top level, where older clients read them.
pub fn new_message_payload(updates: &[RefUpdate]) -> Value {
    let data: Map<String, Value> = updates
        .iter()
        .map(|u| (u.name.clone(), json!({"metadata": metadata(&u.counts)})))
        .collect();
    let top = updates
        .first()
        .map(|u| metadata(&u.counts))
        .unwrap_or_else(|| json!({}));
    json!({
        "event": "new-message",
        "metadata": top,
        "data": data,
        "attn": updates.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_client_options() {
        let r = FeedRef::parse(
            "client_1",
            &json!({"tenant": "acme", "has_tenant": true, "workflow_categories": ["a", "b"],
                    "archived": "include", "status": "unread", "page_size": 20,
                    "trigger_data": {"k": 1}}),
            "u1",
            "in-app",
        )
        .expect("valid options");
        assert_eq!(r.counts_filter.tenant.as_deref(), Some("acme"));
        assert_eq!(r.counts_filter.has_tenant, Some(true));
        assert_eq!(r.counts_filter.categories, vec!["a", "b"]);
        assert_eq!(r.counts_filter.archived, ArchivedFilter::Include);
        assert_eq!(r.counts_filter.trigger_data, vec![("k".into(), json!(1))]);
        assert_eq!(r.status.as_deref(), Some("unread"));
    }

    #[test]
    fn only_unnarrowed_references_skip_the_membership_query() {
        let admits = |options: Value| {
            FeedRef::parse("r", &options, "u1", "in-app")
                .expect("valid options")
                .admits_every_new_message()
        };
        assert!(admits(json!({})));
        assert!(admits(json!({"archived": "include", "page_size": 20})));
        assert!(!admits(json!({"archived": "only"})));
        assert!(!admits(json!({"status": "unread"})));
        assert!(!admits(json!({"source": "welcome"})));
        assert!(!admits(json!({"tenant": "acme"})));
        assert!(!admits(json!({"has_tenant": false})));
        assert!(!admits(json!({"workflow_categories": ["a"]})));
        assert!(!admits(json!({"trigger_data": {"k": 1}})));
    }

    #[test]
    fn refuses_bad_options() {
        assert!(FeedRef::parse("r", &json!({"archived": "never"}), "u", "c").is_err());
        assert!(FeedRef::parse("r", &json!({"status": "new"}), "u", "c").is_err());
        assert!(FeedRef::parse("r", &json!([1]), "u", "c").is_err());
        assert!(parse_join_payload(&json!("x"), "u", "c").is_err());
    }
}
