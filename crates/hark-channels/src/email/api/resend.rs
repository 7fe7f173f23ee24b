//! Resend: `POST /emails`, bearer API key. Resend honours `Idempotency-Key`, so a repeat
//! after a crash is dropped by the provider.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{bodies, OutboundEmail};
use crate::provider::{join_url, ProviderRequest, RequestBody};

const DEFAULT_BASE_URL: &str = "https://api.resend.com";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub api_key: String,
}

pub fn request(
    settings: &Settings,
    email: &OutboundEmail,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let url =
        join_url(base_url.unwrap_or(DEFAULT_BASE_URL), "/emails").map_err(|e| e.to_string())?;
    let (text, html) = bodies(email);
    let mut body = json!({
        "from": email.from,
        "to": email.to,
        "subject": email.subject,
    });
    if !email.cc.is_empty() {
        body["cc"] = json!(email.cc);
    }
    if !email.bcc.is_empty() {
        body["bcc"] = json!(email.bcc);
    }
    if !email.reply_to.is_empty() {
        body["reply_to"] = json!(email.reply_to);
    }
    if let Some(html) = html {
        body["html"] = json!(html);
    }
    if let Some(text) = text {
        body["text"] = json!(text);
    }
    Ok(
        ProviderRequest::new(Method::POST, url, RequestBody::Json(body))
            .bearer(&settings.api_key)
            .header("Idempotency-Key", email.message_id.clone()),
    )
}
