//! Expo push: `POST /--/api/v2/push/send`, one message per token. Expo answers 200 with
//! a per-message ticket; `DeviceNotRegistered` means the token is dead.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{merge, DeliveryType, PushMessage, TokenAttempt};
use crate::outbound::BoundedBody;
use crate::provider::{classify_by_status, join_url, rejected, ProviderHttp, ProviderRequest};
use crate::provider::{sandboxed, RequestBody};
use crate::Outcome;

pub const DEFAULT_BASE_URL: &str = "https://exp.host";
const SERVICE: &str = "expo";

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExpoSettings {
    /// Needed only when the Expo project enforces push security.
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub sandbox: bool,
}

fn request(
    settings: &ExpoSettings,
    token: &str,
    message: &PushMessage,
) -> Result<ProviderRequest, String> {
    let url = join_url(
        settings.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
        "/--/api/v2/push/send",
    )
    .map_err(|e| e.to_string())?;
    let mut payload = json!({"to": token, "data": message.data});
    match message.delivery_type {
        DeliveryType::Content => {
            payload["body"] = json!(message.body);
            if let Some(title) = &message.title {
                payload["title"] = json!(title);
            }
        }
        DeliveryType::Silent => payload["_contentAvailable"] = json!(true),
    }
    if let Some(overrides) = &message.payload_overrides {
        merge(&mut payload, overrides);
    }
    let mut request = ProviderRequest::new(Method::POST, url, RequestBody::Json(json!([payload])))
        .header("Accept", "application/json");
    if let Some(token) = settings.access_token.as_deref().filter(|t| !t.is_empty()) {
        request = request.bearer(token);
    }
    Ok(request)
}

fn ticket(body: &BoundedBody) -> Value {
    let parsed: Value = serde_json::from_str(&body.text).unwrap_or(Value::Null);
    parsed["data"][0].clone()
}

fn classify(status: u16, headers: &HeaderMap, body: &BoundedBody) -> Outcome {
    if !(200..300).contains(&status) {
        return classify_by_status(status, headers, body);
    }
    let ticket = ticket(body);
    if ticket["status"] == json!("ok") {
        return Outcome::Sent;
    }
    let error = ticket["details"]["error"].as_str().unwrap_or("unknown");
    let reason = format!(
        "Expo error {error}: {}",
        ticket["message"].as_str().unwrap_or_default()
    );
    if error == "MessageRateExceeded" {
        Outcome::Retryable {
            reason,
            retry_after_ms: None,
        }
    } else {
        Outcome::Permanent { reason }
    }
}

/// Sends `message` to each token.
pub async fn send(
    http: &ProviderHttp,
    settings: &ExpoSettings,
    tokens: &[String],
    message: &PushMessage,
) -> Vec<TokenAttempt> {
    let mut out = Vec::with_capacity(tokens.len());
    for token in tokens {
        let request = match request(settings, token, message) {
            Ok(request) => request,
            Err(reason) => {
                out.push(TokenAttempt::new(token, rejected(SERVICE, reason), false));
                continue;
            }
        };
        if settings.sandbox {
            out.push(TokenAttempt::new(
                token,
                sandboxed(SERVICE, &request),
                false,
            ));
            continue;
        }
        let attempt = http.send(SERVICE, &request, classify).await;
        let invalid =
            attempt.response["body"]["data"][0]["details"]["error"] == json!("DeviceNotRegistered");
        out.push(TokenAttempt::new(token, attempt, invalid));
    }
    out
}
