//! Microsoft Teams through an incoming webhook (or a Workflows webhook), with the
//! message as an Adaptive Card.

use reqwest::Method;
use serde_json::{json, Value};

use super::{redact_webhook_path, webhook_url, ChatMessage};
use crate::provider::{classify_by_status, rejected, ProviderHttp, ProviderRequest, RequestBody};
use crate::DeliveryAttempt;

const SERVICE: &str = "microsoft_teams";

/// The card: `json_body` when it is an Adaptive Card (or a whole message with
/// `attachments`), otherwise one wrapping TextBlock with the text.
fn payload(message: &ChatMessage) -> Value {
    let card = match &message.json_body {
        Some(body) if body.get("attachments").is_some() => return body.clone(),
        Some(body) if body.get("type") == Some(&json!("AdaptiveCard")) => body.clone(),
        _ => json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{"type": "TextBlock", "text": message.text, "wrap": true}],
        }),
    };
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// Posts to the channel's incoming webhook (from the recipient's channel data).
pub async fn send(http: &ProviderHttp, webhook: &str, message: &ChatMessage) -> DeliveryAttempt {
    let url = match webhook_url(webhook) {
        Ok(url) => url,
        Err(e) => return rejected(SERVICE, e),
    };
    let mut request = ProviderRequest::new(Method::POST, url, RequestBody::Json(payload(message)));
    redact_webhook_path(&mut request);
    http.send(SERVICE, &request, classify_by_status).await
}
