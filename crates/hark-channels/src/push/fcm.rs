//! Firebase Cloud Messaging HTTP v1: `POST /v1/projects/{id}/messages:send` with an OAuth
//! access token obtained from a service-account key (a JWT assertion signed RS256,
//! exchanged at the key's `token_uri`) and cached until shortly before it expires.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{merge, string_data, DeliveryType, PushMessage, TokenAttempt};
use crate::provider::{
    classify_by_status, join_url, rejected, sandboxed, ProviderHttp, ProviderRequest, RequestBody,
};
use crate::{DeliveryAttempt, Outcome};

pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const SERVICE: &str = "fcm";
/// A token this close to expiry is renewed rather than used.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The fields of a Google service-account key file that matter here.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default)]
    pub token_uri: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FcmSettings {
    /// The key file's JSON, as an object or as the file's text.
    pub service_account: Value,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub sandbox: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FcmError {
    #[error("invalid service account: {0}")]
    ServiceAccount(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

struct CachedToken {
    value: String,
    renew_at: Instant,
}

/// One FCM project; keeps its access token between sends.
pub struct FcmClient {
    http: ProviderHttp,
    account: ServiceAccount,
    key: EncodingKey,
    base_url: String,
    sandbox: bool,
    token: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for FcmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmClient")
            .field("project_id", &self.account.project_id)
            .field("client_email", &self.account.client_email)
            .finish_non_exhaustive()
    }
}

impl FcmClient {
    pub fn new(settings: &FcmSettings, http: ProviderHttp) -> Result<Self, FcmError> {
        let account_value = match &settings.service_account {
            Value::String(text) => {
                serde_json::from_str(text).map_err(|e| FcmError::ServiceAccount(e.to_string()))?
            }
            other => other.clone(),
        };
        let account: ServiceAccount = serde_json::from_value(account_value)
            .map_err(|e| FcmError::ServiceAccount(e.to_string()))?;
        if account.project_id.is_empty()
            || !account
                .project_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(FcmError::ServiceAccount("invalid project_id".into()));
        }
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| FcmError::ServiceAccount(format!("private_key: {e}")))?;
        Ok(Self {
            http,
            key,
            base_url: settings
                .base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
            sandbox: settings.sandbox,
            account,
            token: Mutex::new(None),
        })
    }

    fn token_uri(&self) -> &str {
        self.account
            .token_uri
            .as_deref()
            .unwrap_or(DEFAULT_TOKEN_URI)
    }

    /// The signed assertion exchanged for an access token.
    fn assertion(&self, now: SystemTime) -> Result<String, String> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let claims = Claims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: self.token_uri(),
            iat,
            exp: iat + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("signing the token request failed: {e}"))
    }

    /// A valid access token, or the failed token request as the attempt to record.
    async fn access_token(&self) -> Result<String, DeliveryAttempt> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            if Instant::now() < token.renew_at {
                return Ok(token.value.clone());
            }
        }
        let assertion = self
            .assertion(SystemTime::now())
            .map_err(|reason| rejected(SERVICE, reason))?;
        let url = url::Url::parse(self.token_uri())
            .map_err(|_| rejected(SERVICE, "invalid token_uri".into()))?;
        let form = vec![
            (
                "grant_type".to_string(),
                "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
            ),
            ("assertion".to_string(), assertion),
        ];
        let mut request = ProviderRequest::new(Method::POST, url, RequestBody::Form(form));
        request.secret_fields = &["assertion"];
        let mut attempt = self.http.send(SERVICE, &request, classify_by_status).await;
        if !attempt.outcome.is_success() {
            return Err(attempt);
        }
        let body = &attempt.response["body"];
        let Some(value) = body["access_token"].as_str().map(str::to_string) else {
            attempt.outcome = Outcome::Retryable {
                reason: "the token endpoint answered without an access_token".into(),
                retry_after_ms: None,
            };
            attempt.response["body"] = Value::String(crate::REDACTED.into());
            return Err(attempt);
        };
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        *cached = Some(CachedToken {
            value: value.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
        });
        Ok(value)
    }

    fn request(&self, token: &str, message: &PushMessage) -> Result<ProviderRequest, String> {
        let path = format!("/v1/projects/{}/messages:send", self.account.project_id);
        let url = join_url(&self.base_url, &path).map_err(|e| e.to_string())?;
        let mut fcm = json!({"token": token, "data": string_data(&message.data)});
        match message.delivery_type {
            DeliveryType::Content => {
                let mut notification = json!({"body": message.body});
                if let Some(title) = &message.title {
                    notification["title"] = json!(title);
                }
                fcm["notification"] = notification;
            }
            DeliveryType::Silent => {
                fcm["apns"] = json!({
                    "headers": {"apns-push-type": "background", "apns-priority": "5"},
                    "payload": {"aps": {"content-available": 1}},
                });
            }
        }
        if let Some(overrides) = &message.payload_overrides {
            merge(&mut fcm, overrides);
        }
        Ok(ProviderRequest::new(
            Method::POST,
            url,
            RequestBody::Json(json!({"message": fcm})),
        ))
    }

    /// Sends `message` to each registration token.
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
            if self.sandbox {
                out.push(TokenAttempt::new(
                    token,
                    sandboxed(SERVICE, &request),
                    false,
                ));
                continue;
            }
            let access_token = match self.access_token().await {
                Ok(access_token) => access_token,
                Err(attempt) => {
                    out.push(TokenAttempt::new(token, attempt, false));
                    continue;
                }
            };
            let request = request.bearer(&access_token);
            let attempt = self.http.send(SERVICE, &request, classify_by_status).await;
            if attempt.response["status"] == json!(401) {
                // Revoked or expired early: the next attempt fetches a new one.
                *self.token.lock().await = None;
            }
            let invalid = is_dead_token(&attempt.response);
            out.push(TokenAttempt::new(token, attempt, invalid));
        }
        out
    }
}

/// FCM's answers for a token that will never work: `UNREGISTERED` (404), or a token
/// that is not a registration token at all (400 `INVALID_ARGUMENT` naming it).
fn is_dead_token(response: &Value) -> bool {
    let error = &response["body"]["error"];
    let unregistered = error["details"].as_array().is_some_and(|details| {
        details
            .iter()
            .any(|d| d["errorCode"] == json!("UNREGISTERED"))
    });
    let malformed = error["status"] == json!("INVALID_ARGUMENT")
        && error["message"]
            .as_str()
            .is_some_and(|m| m.contains("registration token"));
    unregistered || malformed
}
