//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded, basic auth with the account SID and auth token; 201 on acceptance.

use reqwest::Method;
use serde::Deserialize;

use super::{path_segment, OutboundSms};
use crate::provider::{join_url, ProviderRequest, RequestBody};

const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub account_sid: String,
    pub auth_token: String,
    /// Sends through a messaging service instead of a single number.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Where Twilio reports delivery (Hark's `/v1/providers/{channel}/callbacks` as the
    /// world reaches it); sent as `StatusCallback` and covered by Twilio's signature.
    #[serde(default)]
    pub status_callback_url: Option<String>,
}

pub fn request(
    settings: &Settings,
    from: &str,
    sms: &OutboundSms,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let sid = path_segment("account_sid", &settings.account_sid)?;
    let url = join_url(
        base_url.unwrap_or(DEFAULT_BASE_URL),
        &format!("/2010-04-01/Accounts/{sid}/Messages.json"),
    )
    .map_err(|e| e.to_string())?;
    let mut form = vec![("To".to_string(), sms.to.clone())];
    match settings.messaging_service_sid.as_deref() {
        Some(service) => form.push(("MessagingServiceSid".into(), service.to_string())),
        None => form.push(("From".into(), from.to_string())),
    }
    form.push(("Body".into(), sms.body.clone()));
    if let Some(callback) = settings
        .status_callback_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        form.push(("StatusCallback".into(), callback.to_string()));
    }
    Ok(
        ProviderRequest::new(Method::POST, url, RequestBody::Form(form))
            .basic(&sid, &settings.auth_token),
    )
}
