//! Push notifications through Expo, OneSignal, Firebase Cloud Messaging and APNs: one
//! request per device token, and the tokens the provider says are dead, so the caller
//! can remove them from the recipient's channel data (the engine's push channels take
//! the tokens from there).

pub mod apns;
pub mod ece;
pub mod expo;
pub mod fcm;
pub mod onesignal;
pub mod webpush;

use serde_json::{Map, Value};

use crate::DeliveryAttempt;

/// Knock's push delivery types: a visible notification, or a data-only ("silent")
/// message the app handles in the background.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeliveryType {
    #[default]
    Content,
    Silent,
}

/// A rendered push notification (Knock's MessagePushContent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushMessage {
    pub title: Option<String>,
    pub body: String,
    /// Custom data delivered to the app.
    pub data: Map<String, Value>,
    pub delivery_type: DeliveryType,
    /// Merged into the provider's payload last, so a template can set any field the
    /// provider supports.
    pub payload_overrides: Option<Value>,
    pub message_id: String,
}

/// What sending to one device token produced.
#[derive(Debug, Clone)]
pub struct TokenAttempt {
    pub token: String,
    pub attempt: DeliveryAttempt,
    /// The provider says this token will never work again (uninstalled app, expired or
    /// malformed token): remove it from the recipient's channel data.
    pub invalid_token: bool,
}

impl TokenAttempt {
    pub fn new(token: &str, attempt: DeliveryAttempt, invalid_token: bool) -> Self {
        Self {
            token: token.to_string(),
            attempt,
            invalid_token,
        }
    }
}

/// The tokens of `attempts` that should be removed from channel data.
pub fn invalid_tokens(attempts: &[TokenAttempt]) -> Vec<String> {
    attempts
        .iter()
        .filter(|a| a.invalid_token)
        .map(|a| a.token.clone())
        .collect()
}

/// Merges `overrides` into `payload`: objects key by key, anything else replaced.
pub fn merge(payload: &mut Value, overrides: &Value) {
    match (payload, overrides) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, source) => *target = source.clone(),
    }
}

/// Custom data as string values, which FCM and some others require.
fn string_data(data: &Map<String, Value>) -> Map<String, Value> {
    data.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), Value::String(text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn overrides_merge_deeply() {
        let mut payload = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut payload, &json!({"a": {"c": 3}, "d": [2], "e": true}));
        assert_eq!(payload, json!({"a": {"b": 1, "c": 3}, "d": [2], "e": true}));
    }
}
