//! SendGrid v3 Mail Send: `POST /v3/mail/send`, bearer API key, 202 on acceptance.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{bodies, split_mailbox, OutboundEmail};
use crate::provider::{join_url, ProviderRequest, RequestBody};

const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub api_key: String,
}

fn address(mailbox: &str) -> Value {
    match split_mailbox(mailbox) {
        (Some(name), email) => json!({"email": email, "name": name}),
        (None, email) => json!({"email": email}),
    }
}

fn addresses(list: &[String]) -> Value {
    Value::Array(list.iter().map(|a| address(a)).collect())
}

pub fn request(
    settings: &Settings,
    email: &OutboundEmail,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let url = join_url(base_url.unwrap_or(DEFAULT_BASE_URL), "/v3/mail/send")
        .map_err(|e| e.to_string())?;
    let mut personalization = Map::new();
    personalization.insert("to".into(), addresses(&email.to));
    if !email.cc.is_empty() {
        personalization.insert("cc".into(), addresses(&email.cc));
    }
    if !email.bcc.is_empty() {
        personalization.insert("bcc".into(), addresses(&email.bcc));
    }
    // SendGrid wants text/plain before text/html and refuses empty content.
    let (text, html) = bodies(email);
    let mut content = Vec::new();
    if let Some(text) = text {
        content.push(json!({"type": "text/plain", "value": text}));
    }
    if let Some(html) = html {
        content.push(json!({"type": "text/html", "value": html}));
    }
    if content.is_empty() {
        content.push(json!({"type": "text/plain", "value": " "}));
    }
    let mut body = json!({
        "personalizations": [Value::Object(personalization)],
        "from": address(&email.from),
        "subject": email.subject,
        "content": content,
        "custom_args": {"hark_message_id": email.message_id},
    });
    if let Some(reply_to) = email.reply_to.first() {
        body["reply_to"] = address(reply_to);
    }
    Ok(ProviderRequest::new(Method::POST, url, RequestBody::Json(body)).bearer(&settings.api_key))
}
