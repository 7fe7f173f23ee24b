//! Slack: `chat.postMessage` with a bot token, or an incoming webhook. The Web API
//! answers 200 with `{"ok": false, "error": …}` for most failures, so the body decides.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use super::{redact_webhook_path, webhook_url, ChatMessage};
use crate::outbound::BoundedBody;
use crate::provider::{classify_by_status, join_url, rejected, ProviderHttp, RequestBody};
use crate::{DeliveryAttempt, Outcome};

pub const DEFAULT_BASE_URL: &str = "https://slack.com";
const SERVICE: &str = "slack";

/// Where a Slack message goes, from the recipient's channel data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackConnection {
    /// A bot token (`xoxb-…`) and a channel or user id.
    Bot {
        access_token: String,
        channel_id: String,
    },
    IncomingWebhook {
        url: String,
    },
}

/// The payload: Block Kit from `json_body` (an object with `blocks`, or the blocks
/// array itself), with the text as the notification fallback.
fn payload(message: &ChatMessage) -> Value {
    let mut body = match &message.json_body {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(Value::Array(blocks)) => json!({"blocks": blocks}),
        _ => json!({}),
    };
    if body.get("text").is_none() {
        body["text"] = json!(message.text);
    }
    body
}

pub async fn send(
    http: &ProviderHttp,
    base_url: Option<&str>,
    connection: &SlackConnection,
    message: &ChatMessage,
) -> DeliveryAttempt {
    match connection {
        SlackConnection::Bot {
            access_token,
            channel_id,
        } => {
            let url = match join_url(
                base_url.unwrap_or(DEFAULT_BASE_URL),
                "/api/chat.postMessage",
            ) {
                Ok(url) => url,
                Err(e) => return rejected(SERVICE, e.to_string()),
            };
            let mut body = payload(message);
            body["channel"] = json!(channel_id);
            let request =
                crate::provider::ProviderRequest::new(Method::POST, url, RequestBody::Json(body))
                    .header("Content-Type", "application/json; charset=utf-8")
                    .bearer(access_token);
            http.send(SERVICE, &request, classify_web_api).await
        }
        SlackConnection::IncomingWebhook { url } => {
            let url = match webhook_url(url) {
                Ok(url) => url,
                Err(e) => return rejected(SERVICE, e),
            };
            let mut request = crate::provider::ProviderRequest::new(
                Method::POST,
                url,
                RequestBody::Json(payload(message)),
            );
            redact_webhook_path(&mut request);
            http.send(SERVICE, &request, classify_by_status).await
        }
    }
}

/// Slack Web API errors that may clear up on their own.
const TRANSIENT_ERRORS: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

pub fn classify_web_api(status: u16, headers: &HeaderMap, body: &BoundedBody) -> Outcome {
    if !(200..300).contains(&status) {
        return classify_by_status(status, headers, body);
    }
    let parsed: Value = serde_json::from_str(&body.text).unwrap_or(Value::Null);
    if parsed["ok"] == json!(true) {
        return Outcome::Sent;
    }
    let error = parsed["error"].as_str().unwrap_or("unknown_error");
    let reason = format!("Slack error: {error}");
    if TRANSIENT_ERRORS.contains(&error) {
        Outcome::Retryable {
            reason,
            retry_after_ms: None,
        }
    } else {
        Outcome::Permanent { reason }
    }
}
