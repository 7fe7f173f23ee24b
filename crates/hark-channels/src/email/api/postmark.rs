//! Postmark: `POST /email` with the server token header, 200 `{"ErrorCode": 0}` on
//! acceptance, 422 with a Postmark error code otherwise.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{bodies, OutboundEmail};
use crate::provider::{join_url, ProviderRequest, RequestBody};

const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(alias = "api_key")]
    pub server_token: String,
    /// Postmark's stream; its default is `outbound` (transactional).
    #[serde(default)]
    pub message_stream: Option<String>,
}

pub fn request(
    settings: &Settings,
    email: &OutboundEmail,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let url =
        join_url(base_url.unwrap_or(DEFAULT_BASE_URL), "/email").map_err(|e| e.to_string())?;
    let (text, html) = bodies(email);
    let mut body = json!({
        "From": email.from,
        "To": email.to.join(", "),
        "Subject": email.subject,
        "Metadata": {"hark_message_id": email.message_id},
    });
    let mut set = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            body[key] = json!(value);
        }
    };
    set("Cc", (!email.cc.is_empty()).then(|| email.cc.join(", ")));
    set("Bcc", (!email.bcc.is_empty()).then(|| email.bcc.join(", ")));
    set(
        "ReplyTo",
        (!email.reply_to.is_empty()).then(|| email.reply_to.join(", ")),
    );
    set("HtmlBody", html.map(str::to_string));
    set("TextBody", text.map(str::to_string));
    set("MessageStream", settings.message_stream.clone());
    Ok(
        ProviderRequest::new(Method::POST, url, RequestBody::Json(body))
            .header("Accept", "application/json")
            .header("X-Postmark-Server-Token", settings.server_token.clone()),
    )
}
