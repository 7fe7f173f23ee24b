//! Vonage (Nexmo) SMS API: `POST /sms/json`, form-encoded with the key and secret in the
//! body. Vonage answers 200 even for failures; the per-message `status` says what
//! happened.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::OutboundSms;
use crate::outbound::BoundedBody;
use crate::provider::{classify_by_status, join_url, ProviderRequest, RequestBody};
use crate::Outcome;

const DEFAULT_BASE_URL: &str = "https://rest.nexmo.com";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub api_key: String,
    pub api_secret: String,
}

pub fn request(
    settings: &Settings,
    from: &str,
    sms: &OutboundSms,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let url =
        join_url(base_url.unwrap_or(DEFAULT_BASE_URL), "/sms/json").map_err(|e| e.to_string())?;
    // Vonage wants international numbers without the leading `+`.
    let to = sms.to.trim().trim_start_matches('+').to_string();
    let form = vec![
        ("api_key".to_string(), settings.api_key.clone()),
        ("api_secret".to_string(), settings.api_secret.clone()),
        ("from".to_string(), from.to_string()),
        ("to".to_string(), to),
        ("text".to_string(), sms.body.clone()),
        ("client-ref".to_string(), sms.message_id.clone()),
    ];
    let mut request = ProviderRequest::new(Method::POST, url, RequestBody::Form(form));
    request.secret_fields = &["api_secret"];
    Ok(request)
}

/// Status `0` is success; `1` (throttled) and `5` (internal error) may pass; the rest
/// (missing or invalid parameters, bad credentials, barred numbers…) are final.
pub fn classify(status: u16, headers: &HeaderMap, body: &BoundedBody) -> Outcome {
    if !(200..300).contains(&status) {
        return classify_by_status(status, headers, body);
    }
    let parsed: Value = serde_json::from_str(&body.text).unwrap_or(Value::Null);
    let Some(first) = parsed["messages"].as_array().and_then(|m| m.first()) else {
        return Outcome::Retryable {
            reason: "Vonage answered without a message status".into(),
            retry_after_ms: None,
        };
    };
    let code = match &first["status"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = first["error-text"].as_str().unwrap_or_default();
    match code.as_str() {
        "0" => Outcome::Sent,
        "1" | "5" => Outcome::Retryable {
            reason: format!("Vonage status {code}: {text}"),
            retry_after_ms: None,
        },
        _ => Outcome::Permanent {
            reason: format!("Vonage status {code}: {text}"),
        },
    }
}
