//! Discord: a channel webhook, or a bot posting to a channel id.

use reqwest::Method;
use serde_json::{json, Value};

use super::{redact_webhook_path, webhook_url, ChatMessage};
use crate::provider::{
    classify_by_status, join_url, rejected, ProviderHttp, ProviderRequest, RequestBody,
};
use crate::DeliveryAttempt;

pub const DEFAULT_BASE_URL: &str = "https://discord.com";
const SERVICE: &str = "discord";

/// Where a Discord message goes, from the recipient's channel data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscordConnection {
    /// The bot token comes from the channel settings; the channel id from channel data.
    Bot {
        bot_token: String,
        channel_id: String,
    },
    IncomingWebhook {
        url: String,
    },
}

/// `json_body` (embeds, components…) when given, with the text as `content` unless the
/// body sets its own.
fn payload(message: &ChatMessage) -> Value {
    let mut body = match &message.json_body {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        _ => json!({}),
    };
    if body.get("content").is_none() && !message.text.is_empty() {
        body["content"] = json!(message.text);
    }
    body
}

pub async fn send(
    http: &ProviderHttp,
    base_url: Option<&str>,
    connection: &DiscordConnection,
    message: &ChatMessage,
) -> DeliveryAttempt {
    let request = match connection {
        DiscordConnection::Bot {
            bot_token,
            channel_id,
        } => {
            if channel_id.is_empty() || !channel_id.chars().all(|c| c.is_ascii_digit()) {
                return rejected(
                    SERVICE,
                    format!("invalid Discord channel id `{channel_id}`"),
                );
            }
            let path = format!("/api/v10/channels/{channel_id}/messages");
            let url = match join_url(base_url.unwrap_or(DEFAULT_BASE_URL), &path) {
                Ok(url) => url,
                Err(e) => return rejected(SERVICE, e.to_string()),
            };
            ProviderRequest::new(Method::POST, url, RequestBody::Json(payload(message)))
                .header("Authorization", format!("Bot {bot_token}"))
        }
        DiscordConnection::IncomingWebhook { url } => {
            let mut url = match webhook_url(url) {
                Ok(url) => url,
                Err(e) => return rejected(SERVICE, e),
            };
            // Without `wait`, Discord answers 204 before validating the message.
            url.query_pairs_mut().append_pair("wait", "true");
            let mut request =
                ProviderRequest::new(Method::POST, url, RequestBody::Json(payload(message)));
            redact_webhook_path(&mut request);
            request
        }
    };
    http.send(SERVICE, &request, classify_by_status).await
}
