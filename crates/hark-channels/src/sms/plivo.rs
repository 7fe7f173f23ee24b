//! Plivo: `POST /v1/Account/{auth_id}/Message/`, JSON, basic auth; 202 on acceptance.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{path_segment, OutboundSms};
use crate::provider::{join_url, ProviderRequest, RequestBody};

const DEFAULT_BASE_URL: &str = "https://api.plivo.com";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub auth_id: String,
    pub auth_token: String,
}

pub fn request(
    settings: &Settings,
    from: &str,
    sms: &OutboundSms,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let auth_id = path_segment("auth_id", &settings.auth_id)?;
    let url = join_url(
        base_url.unwrap_or(DEFAULT_BASE_URL),
        &format!("/v1/Account/{auth_id}/Message/"),
    )
    .map_err(|e| e.to_string())?;
    let body = json!({"src": from, "dst": sms.to, "text": sms.body});
    Ok(
        ProviderRequest::new(Method::POST, url, RequestBody::Json(body))
            .basic(&auth_id, &settings.auth_token),
    )
}
