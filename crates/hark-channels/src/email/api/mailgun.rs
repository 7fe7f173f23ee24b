//! Mailgun: `POST /v3/{domain}/messages`, form-encoded, HTTP basic auth as `api`.

use reqwest::Method;
use serde::Deserialize;

use super::{bodies, OutboundEmail};
use crate::provider::{join_url, ProviderRequest, RequestBody};

/// The US region; EU domains use `https://api.eu.mailgun.net`.
const DEFAULT_BASE_URL: &str = "https://api.mailgun.net";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub api_key: String,
    pub domain: String,
}

pub fn request(
    settings: &Settings,
    email: &OutboundEmail,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let domain = settings.domain.trim();
    if domain.contains('/') || domain.contains('?') || domain.contains('#') {
        return Err(format!("invalid Mailgun domain `{domain}`"));
    }
    let url = join_url(
        base_url.unwrap_or(DEFAULT_BASE_URL),
        &format!("/v3/{domain}/messages"),
    )
    .map_err(|e| e.to_string())?;
    let mut form = vec![
        ("from".to_string(), email.from.clone()),
        ("to".to_string(), email.to.join(", ")),
    ];
    if !email.cc.is_empty() {
        form.push(("cc".into(), email.cc.join(", ")));
    }
    if !email.bcc.is_empty() {
        form.push(("bcc".into(), email.bcc.join(", ")));
    }
    form.push(("subject".into(), email.subject.clone()));
    let (text, html) = bodies(email);
    if let Some(text) = text {
        form.push(("text".into(), text.to_string()));
    }
    if let Some(html) = html {
        form.push(("html".into(), html.to_string()));
    }
    if !email.reply_to.is_empty() {
        form.push(("h:Reply-To".into(), email.reply_to.join(", ")));
    }
    form.push(("v:hark_message_id".into(), email.message_id.clone()));
    Ok(
        ProviderRequest::new(Method::POST, url, RequestBody::Form(form))
            .basic("api", &settings.api_key),
    )
}
