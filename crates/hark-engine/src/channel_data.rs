//! A recipient's channel data (Knock's `ChannelData`): the device tokens of a push
//! channel, the connections of a chat channel. The API validates it against the shape the
//! channel's provider expects; the engine reads tokens and connections from it and
//! removes tokens the provider reports dead.

use hark_core::recipient::FieldError;
use hark_core::workflow::ChannelType;
use serde_json::{json, Map, Value};

use crate::registry::Channel;

/// Checks `data` (the `data` of a `ChannelDataRequest`) for `channel` and returns it as
/// stored. Errors name the offending field (`data.tokens[1]`…).
pub fn validate(channel: &Channel, data: &Value) -> Result<Value, Vec<FieldError>> {
    let Some(map) = data.as_object() else {
        return Err(vec![FieldError::new("data", "must be an object")]);
    };
    match channel.channel_type {
        ChannelType::Push if channel.provider == "onesignal" => {
            let ids = string_list(map, "player_ids")?
                .ok_or_else(|| vec![FieldError::new("data.player_ids", "is required")])?;
            Ok(json!({"player_ids": ids}))
        }
        ChannelType::Push => {
            let data = validate_push(map)?;
            if channel.provider == "webpush" {
                for (i, token) in push_tokens(&data).iter().enumerate() {
                    if !is_subscription(token) {
                        return Err(vec![FieldError::new(
                            format!("data.tokens[{i}]"),
                            "must be a PushSubscription as JSON text (endpoint, keys.p256dh, keys.auth)",
                        )]);
                    }
                }
            }
            Ok(data)
        }
        ChannelType::Chat => validate_chat(&channel.provider, map),
        other => Err(vec![FieldError::new(
            "channel_id",
            format!(
                "channel data is only kept for push and chat channels, not `{}`",
                other.as_str()
            ),
        )]),
    }
}

fn string_list(
    map: &Map<String, Value>,
    field: &str,
) -> Result<Option<Vec<String>>, Vec<FieldError>> {
    let Some(value) = map.get(field) else {
        return Ok(None);
    };
    let Some(items) = value.as_array() else {
        return Err(vec![FieldError::new(
            format!("data.{field}"),
            "must be a list of strings",
        )]);
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.as_str().map(str::trim) {
            Some(text) if !text.is_empty() => out.push(text.to_string()),
            _ => {
                return Err(vec![FieldError::new(
                    format!("data.{field}[{i}]"),
                    "must be a non-empty string",
                )])
            }
        }
    }
    Ok(Some(out))
}

/// `tokens`, `devices` or both (Knock's `PushChannelDataFull`); one of them is required.
fn validate_push(map: &Map<String, Value>) -> Result<Value, Vec<FieldError>> {
    let tokens = string_list(map, "tokens")?;
    let devices = match map.get("devices") {
        None => None,
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let field = format!("data.devices[{i}]");
                let token = item
                    .get("token")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        vec![FieldError::new(format!("{field}.token"), "is required")]
                    })?;
                let optional = |name: &str| match item.get(name) {
                    None | Some(Value::Null) => Ok(Value::Null),
                    Some(Value::String(s)) => Ok(Value::String(s.clone())),
                    Some(_) => Err(vec![FieldError::new(
                        format!("{field}.{name}"),
                        "must be a string or null",
                    )]),
                };
                out.push(json!({
                    "token": token,
                    "locale": optional("locale")?,
                    "timezone": optional("timezone")?,
                }));
            }
            Some(out)
        }
        Some(_) => {
            return Err(vec![FieldError::new(
                "data.devices",
                "must be a list of devices",
            )])
        }
    };
    if tokens.is_none() && devices.is_none() {
        return Err(vec![FieldError::new(
            "data.tokens",
            "is required (or data.devices)",
        )]);
    }
    let mut out = Map::new();
    out.insert("tokens".into(), json!(tokens.unwrap_or_default()));
    if let Some(devices) = devices {
        out.insert("devices".into(), Value::Array(devices));
    }
    Ok(Value::Object(out))
}

/// `connections`: each one a token connection or an incoming webhook, as the provider
/// defines them.
fn validate_chat(provider: &str, map: &Map<String, Value>) -> Result<Value, Vec<FieldError>> {
    let Some(Value::Array(items)) = map.get("connections") else {
        return Err(vec![FieldError::new(
            "data.connections",
            "is required and must be a list",
        )]);
    };
    let mut connections = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("data.connections[{i}]");
        let Some(conn) = item.as_object() else {
            return Err(vec![FieldError::new(field, "must be an object")]);
        };
        let text = |name: &str| {
            conn.get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let webhook = conn
            .get("incoming_webhook")
            .and_then(|w| w.get("url"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty());
        if let Some(url) = webhook {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(vec![FieldError::new(
                    format!("{field}.incoming_webhook.url"),
                    "must be a URL",
                )]);
            }
        } else {
            // Teams token connections need the Bot Framework, which this server does not
            // speak: only incoming webhooks are accepted for Teams.
            let ok = match provider {
                "slack" => text("channel_id").is_some() || text("user_id").is_some(),
                "discord" => text("channel_id").is_some(),
                _ => false,
            };
            if !ok {
                let expected = match provider {
                    "slack" => "needs channel_id (or user_id) or incoming_webhook.url",
                    "discord" => "needs channel_id or incoming_webhook.url",
                    _ => "needs incoming_webhook.url",
                };
                return Err(vec![FieldError::new(field, expected)]);
            }
        }
        connections.push(Value::Object(conn.clone()));
    }
    let mut out = map.clone();
    out.insert("connections".into(), Value::Array(connections));
    Ok(Value::Object(out))
}

/// Web Push tokens are the browser's `PushSubscription` serialised as JSON.
fn is_subscription(token: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(token) else {
        return false;
    };
    ["/endpoint", "/keys/p256dh", "/keys/auth"].iter().all(|p| {
        value
            .pointer(p)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    })
}

/// Knock's `provider` name for a channel's channel data, where Knock has one.
pub fn knock_provider(channel: &Channel) -> Option<&'static str> {
    Some(match channel.provider.as_str() {
        "expo" => "push_expo",
        "fcm" => "push_fcm",
        "apns" => "push_apns",
        "onesignal" => "push_one_signal",
        "slack" => "chat_slack",
        "ms_teams" | "microsoft_teams" => "chat_ms_teams",
        "discord" => "chat_discord",
        _ => return None,
    })
}

/// The push tokens to send to: `tokens`, then device tokens not already listed (and
/// OneSignal's `player_ids`).
pub fn push_tokens(data: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |t: &str| {
        if !t.is_empty() && !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    };
    for field in ["tokens", "player_ids"] {
        for t in data[field].as_array().into_iter().flatten() {
            add(t.as_str().unwrap_or_default());
        }
    }
    for d in data["devices"].as_array().into_iter().flatten() {
        add(d["token"].as_str().unwrap_or_default());
    }
    out
}

/// The chat connections to post to.
pub fn chat_connections(data: &Value) -> Vec<Value> {
    data["connections"].as_array().cloned().unwrap_or_default()
}

/// `data` without `dead` tokens, or `None` when none of them was in it.
pub fn without_tokens(data: &Value, dead: &[String]) -> Option<Value> {
    let mut next = data.clone();
    let mut changed = false;
    let is_dead = |v: &Value| v.as_str().is_some_and(|t| dead.iter().any(|d| d == t));
    for field in ["tokens", "player_ids"] {
        if let Some(items) = next.get_mut(field).and_then(Value::as_array_mut) {
            let before = items.len();
            items.retain(|t| !is_dead(t));
            changed |= items.len() != before;
        }
    }
    if let Some(items) = next.get_mut("devices").and_then(Value::as_array_mut) {
        let before = items.len();
        items.retain(|d| !is_dead(&d["token"]));
        changed |= items.len() != before;
    }
    changed.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Sender;

    fn channel(channel_type: ChannelType, provider: &str) -> Channel {
        Channel {
            id: "c".into(),
            key: "c".into(),
            name: "c".into(),
            channel_type,
            provider: provider.into(),
            sender: Sender::Webhook,
            status_callbacks: None,
            tracking: Default::default(),
            environments: Default::default(),
            sandbox: false,
        }
    }

    fn field_of(result: Result<Value, Vec<FieldError>>) -> String {
        result.err().map(|e| e[0].field.clone()).unwrap_or_default()
    }

    #[test]
    fn shapes_follow_the_provider() {
        let push = channel(ChannelType::Push, "apns");
        assert_eq!(field_of(validate(&push, &json!([]))), "data");
        assert_eq!(
            field_of(validate(
                &push,
                &json!({"devices": [{"token": "t", "locale": 1}]})
            )),
            "data.devices[0].locale"
        );
        let web = channel(ChannelType::Push, "webpush");
        assert_eq!(
            field_of(validate(&web, &json!({"tokens": ["t"]}))),
            "data.tokens[0]"
        );
        let sub =
            json!({"endpoint": "https://push.example/1", "keys": {"p256dh": "k", "auth": "a"}});
        assert!(validate(&web, &json!({"tokens": [sub.to_string()]})).is_ok());
        let teams = channel(ChannelType::Chat, "ms_teams");
        assert_eq!(
            field_of(validate(
                &teams,
                &json!({"connections": [{"ms_teams_channel_id": "x"}]})
            )),
            "data.connections[0]"
        );
        assert_eq!(
            field_of(validate(
                &teams,
                &json!({"connections": [{"incoming_webhook": {"url": "ftp://x"}}]})
            )),
            "data.connections[0].incoming_webhook.url"
        );
        let discord = channel(ChannelType::Chat, "discord");
        assert!(validate(&discord, &json!({"connections": [{"channel_id": "1"}]})).is_ok());
        let email = channel(ChannelType::Email, "smtp");
        assert_eq!(
            field_of(validate(&email, &json!({"tokens": []}))),
            "channel_id"
        );
    }

    #[test]
    fn tokens_come_from_tokens_and_devices_once() {
        let data = json!({"tokens": ["a", "b"], "devices": [{"token": "b"}, {"token": "c"}]});
        assert_eq!(push_tokens(&data), vec!["a", "b", "c"]);
        let pruned = without_tokens(&data, &["b".to_string()]).expect("changed");
        assert_eq!(
            pruned,
            json!({"tokens": ["a"], "devices": [{"token": "c"}]})
        );
        assert!(without_tokens(&data, &["z".to_string()]).is_none());
    }
}
