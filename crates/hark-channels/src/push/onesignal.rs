//! OneSignal: `POST /notifications` targeting one subscription id at a time, with the
//! app's REST API key. OneSignal answers 200 even when the subscription is gone, naming
//! it in `errors`.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{merge, DeliveryType, PushMessage, TokenAttempt};
use crate::outbound::BoundedBody;
use crate::provider::{classify_by_status, join_url, rejected, ProviderHttp, ProviderRequest};
use crate::provider::{sandboxed, RequestBody};
use crate::Outcome;

pub const DEFAULT_BASE_URL: &str = "https://api.onesignal.com";
const SERVICE: &str = "onesignal";

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OneSignalSettings {
    pub app_id: String,
    pub api_key: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub sandbox: bool,
}

fn request(
    settings: &OneSignalSettings,
    subscription: &str,
    message: &PushMessage,
) -> Result<ProviderRequest, String> {
    let url = join_url(
        settings.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
        "/notifications",
    )
    .map_err(|e| e.to_string())?;
    let mut payload = json!({
        "app_id": settings.app_id,
        "target_channel": "push",
        "include_subscription_ids": [subscription],
        "data": message.data,
        "external_id": message.message_id,
    });
    match message.delivery_type {
        DeliveryType::Content => {
            payload["contents"] = json!({"en": message.body});
            if let Some(title) = &message.title {
                payload["headings"] = json!({"en": title});
            }
        }
        DeliveryType::Silent => payload["content_available"] = json!(true),
    }
    if let Some(overrides) = &message.payload_overrides {
        merge(&mut payload, overrides);
    }
    Ok(
        ProviderRequest::new(Method::POST, url, RequestBody::Json(payload))
            .header("Authorization", format!("Key {}", settings.api_key)),
    )
}

/// Whether a 200 answer says the subscription is unknown or unsubscribed.
fn names_dead_subscription(body: &Value) -> bool {
    let errors = &body["errors"];
    errors["invalid_player_ids"]
        .as_array()
        .is_some_and(|ids| !ids.is_empty())
        || errors.as_array().is_some_and(|list| {
            list.iter()
                .any(|e| e.as_str().is_some_and(|e| e.contains("not subscribed")))
        })
}

fn classify(status: u16, headers: &HeaderMap, body: &BoundedBody) -> Outcome {
    if !(200..300).contains(&status) {
        return classify_by_status(status, headers, body);
    }
    let parsed: Value = serde_json::from_str(&body.text).unwrap_or(Value::Null);
    if names_dead_subscription(&parsed) || parsed["id"].as_str().is_none_or(str::is_empty) {
        return Outcome::Permanent {
            reason: format!("OneSignal did not send: {}", parsed["errors"]),
        };
    }
    Outcome::Sent
}

/// Sends `message` to each subscription id.
pub async fn send(
    http: &ProviderHttp,
    settings: &OneSignalSettings,
    subscriptions: &[String],
    message: &PushMessage,
) -> Vec<TokenAttempt> {
    let mut out = Vec::with_capacity(subscriptions.len());
    for subscription in subscriptions {
        let request = match request(settings, subscription, message) {
            Ok(request) => request,
            Err(reason) => {
                out.push(TokenAttempt::new(
                    subscription,
                    rejected(SERVICE, reason),
                    false,
                ));
                continue;
            }
        };
        if settings.sandbox {
            out.push(TokenAttempt::new(
                subscription,
                sandboxed(SERVICE, &request),
                false,
            ));
            continue;
        }
        let attempt = http.send(SERVICE, &request, classify).await;
        let ok_status = attempt.response["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s));
        let invalid = ok_status && names_dead_subscription(&attempt.response["body"]);
        out.push(TokenAttempt::new(subscription, attempt, invalid));
    }
    out
}
