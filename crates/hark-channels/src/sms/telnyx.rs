//! Telnyx Messaging: `POST /v2/messages`, JSON, bearer API key; 200 on acceptance.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::OutboundSms;
use crate::provider::{join_url, ProviderRequest, RequestBody};

const DEFAULT_BASE_URL: &str = "https://api.telnyx.com";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub api_key: String,
    /// Lets Telnyx pick the sending number from the profile's pool.
    #[serde(default)]
    pub messaging_profile_id: Option<String>,
}

pub fn request(
    settings: &Settings,
    from: &str,
    sms: &OutboundSms,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let url = join_url(base_url.unwrap_or(DEFAULT_BASE_URL), "/v2/messages")
        .map_err(|e| e.to_string())?;
    let mut body = json!({"to": sms.to, "text": sms.body});
    if !from.is_empty() {
        body["from"] = json!(from);
    }
    if let Some(profile) = &settings.messaging_profile_id {
        body["messaging_profile_id"] = json!(profile);
    }
    Ok(ProviderRequest::new(Method::POST, url, RequestBody::Json(body)).bearer(&settings.api_key))
}
