//! MessageBird (Bird) SMS: `POST /messages`, JSON, `Authorization: AccessKey …`; 201 on
//! acceptance, 422 with `errors` otherwise.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::OutboundSms;
use crate::provider::{join_url, ProviderRequest, RequestBody};

const DEFAULT_BASE_URL: &str = "https://rest.messagebird.com";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub access_key: String,
}

pub fn request(
    settings: &Settings,
    from: &str,
    sms: &OutboundSms,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let url =
        join_url(base_url.unwrap_or(DEFAULT_BASE_URL), "/messages").map_err(|e| e.to_string())?;
    let body = json!({
        "originator": from,
        "recipients": [sms.to],
        "body": sms.body,
        "reference": sms.message_id,
    });
    Ok(
        ProviderRequest::new(Method::POST, url, RequestBody::Json(body)).header(
            "Authorization",
            format!("AccessKey {}", settings.access_key),
        ),
    )
}
