//! Apple Push Notification service over HTTP/2 with token-based authentication: an
//! ES256 provider JWT made from the team's `.p8` key, reused for 50 minutes (Apple
//! refuses tokens older than an hour and too-frequent renewals).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use super::{merge, DeliveryType, PushMessage, TokenAttempt};
use crate::provider::{
    classify_by_status, join_url, rejected, sandboxed, ProviderHttp, ProviderRequest, RequestBody,
};

pub const PRODUCTION_BASE_URL: &str = "https://api.push.apple.com";
pub const DEVELOPMENT_BASE_URL: &str = "https://api.sandbox.push.apple.com";
const SERVICE: &str = "apns";
const TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

#[derive(Debug, Clone, Deserialize)]
pub struct ApnsSettings {
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id, sent as `apns-topic`.
    pub bundle_id: String,
    /// The `.p8` key's PEM text.
    pub private_key: String,
    /// `production` (default) or `development` (Apple's sandbox gateway).
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub sandbox: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ApnsError {
    #[error("invalid APNs settings: {0}")]
    Settings(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

/// One APNs key and app; keeps its provider token between sends.
pub struct ApnsClient {
    http: ProviderHttp,
    settings: ApnsSettings,
    key: EncodingKey,
    base_url: String,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for ApnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsClient")
            .field("key_id", &self.settings.key_id)
            .field("bundle_id", &self.settings.bundle_id)
            .finish_non_exhaustive()
    }
}

impl ApnsClient {
    /// `http` must speak HTTP/2 ([`ProviderHttp::new_http2`]).
    pub fn new(settings: ApnsSettings, http: ProviderHttp) -> Result<Self, ApnsError> {
        for (name, value) in [
            ("key_id", &settings.key_id),
            ("team_id", &settings.team_id),
            ("bundle_id", &settings.bundle_id),
        ] {
            if value.trim().is_empty() {
                return Err(ApnsError::Settings(format!("`{name}` can't be blank")));
            }
        }
        let key = EncodingKey::from_ec_pem(settings.private_key.as_bytes())
            .map_err(|e| ApnsError::Settings(format!("private_key: {e}")))?;
        let base_url = match (&settings.base_url, settings.environment.as_deref()) {
            (Some(url), _) => url.clone(),
            (None, Some("development")) => DEVELOPMENT_BASE_URL.to_string(),
            (None, None | Some("production")) => PRODUCTION_BASE_URL.to_string(),
            (None, Some(other)) => {
                return Err(ApnsError::Settings(format!(
                    "unknown environment `{other}`"
                )))
            }
        };
        Ok(Self {
            http,
            settings,
            key,
            base_url,
            token: Mutex::new(None),
        })
    }

    async fn provider_token(&self) -> Result<String, String> {
        let mut cached = self.token.lock().await;
        if let Some((token, made_at)) = cached.as_ref() {
            if made_at.elapsed() < TOKEN_LIFETIME {
                return Ok(token.clone());
            }
        }
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.settings.key_id.clone());
        let claims = Claims {
            iss: &self.settings.team_id,
            iat,
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("signing the provider token failed: {e}"))?;
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    fn request(
        &self,
        device_token: &str,
        message: &PushMessage,
    ) -> Result<ProviderRequest, String> {
        if device_token.is_empty() || !device_token.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("an APNs device token is hexadecimal".into());
        }
        let url = join_url(&self.base_url, &format!("/3/device/{device_token}"))
            .map_err(|e| e.to_string())?;
        let mut payload = Value::Object(Map::new());
        for (key, value) in &message.data {
            payload[key] = value.clone();
        }
        let (push_type, priority) = match message.delivery_type {
            DeliveryType::Content => {
                let mut alert = json!({"body": message.body});
                if let Some(title) = &message.title {
                    alert["title"] = json!(title);
                }
                payload["aps"] = json!({"alert": alert, "sound": "default"});
                ("alert", "10")
            }
            DeliveryType::Silent => {
                payload["aps"] = json!({"content-available": 1});
                ("background", "5")
            }
        };
        if let Some(overrides) = &message.payload_overrides {
            merge(&mut payload, overrides);
        }
        let mut request = ProviderRequest::new(Method::POST, url, RequestBody::Json(payload))
            .header("apns-topic", self.settings.bundle_id.clone())
            .header("apns-push-type", push_type)
            .header("apns-priority", priority);
        // APNs takes a UUID as the notification id and echoes it back.
        if uuid_like(&message.message_id) {
            request = request.header("apns-id", message.message_id.clone());
        }
        Ok(request)
    }

    /// Sends `message` to each device token.
    pub async fn send(&self, tokens: &[String], message: &PushMessage) -> Vec<TokenAttempt> {
        let mut out = Vec::with_capacity(tokens.len());
        for token in tokens {
            let request = match self.request(token, message) {
                Ok(request) => request,
                Err(reason) => {
                    out.push(TokenAttempt::new(token, rejected(SERVICE, reason), false));
                    continue;
                }
            };
            if self.settings.sandbox {
                out.push(TokenAttempt::new(
                    token,
                    sandboxed(SERVICE, &request),
                    false,
                ));
                continue;
            }
            let jwt = match self.provider_token().await {
                Ok(jwt) => jwt,
                Err(reason) => {
                    out.push(TokenAttempt::new(token, rejected(SERVICE, reason), false));
                    continue;
                }
            };
            let request = request.header("authorization", format!("bearer {jwt}"));
            let attempt = self.http.send(SERVICE, &request, classify_by_status).await;
            let reason = attempt.response["body"]["reason"]
                .as_str()
                .unwrap_or_default();
            if reason == "ExpiredProviderToken" {
                *self.token.lock().await = None;
            }
            let status = attempt.response["status"].as_u64().unwrap_or_default();
            let invalid = status == 410
                || (status == 400 && matches!(reason, "BadDeviceToken" | "DeviceTokenNotForTopic"));
            out.push(TokenAttempt::new(token, attempt, invalid));
        }
        out
    }
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}
