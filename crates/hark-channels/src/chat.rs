//! Chat through Slack, Microsoft Teams and Discord. Where a message goes (a channel id
//! and token, or an incoming-webhook URL) comes from the recipient's channel data, so
//! these clients take the connection as input.

pub mod discord;
pub mod slack;
pub mod teams;

use serde_json::Value;
use url::Url;

use crate::provider::ProviderRequest;

/// A rendered chat message (Knock's MessageChatContent template).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatMessage {
    /// Markdown (Slack mrkdwn / Discord markdown / Teams TextBlock).
    pub text: String,
    /// A provider-specific JSON payload (Slack Block Kit blocks, an Adaptive Card,
    /// Discord embeds) that replaces the default built from `text`.
    pub json_body: Option<Value>,
    /// The Hark message id.
    pub message_id: String,
}

/// An incoming-webhook URL is a credential: the log shows only its host and that a
/// path was there.
fn redact_webhook_path(request: &mut ProviderRequest) {
    request.logged_path = Some(format!("/{}", crate::REDACTED));
}

/// Parses a webhook URL taken from channel data.
fn webhook_url(raw: &str) -> Result<Url, String> {
    Url::parse(raw.trim()).map_err(|_| "invalid incoming webhook URL".to_string())
}
