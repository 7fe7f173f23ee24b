//! Web Push to browser subscriptions: the payload encrypted per RFC 8291 and the request
//! authorised with VAPID (RFC 8292), an ES256 JWT for the push service's origin.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::SecretKey;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use super::ece::encrypt;
use super::{merge, DeliveryType, PushMessage, TokenAttempt};
use crate::provider::RequestBody;
use crate::provider::{classify_by_status, rejected, sandboxed, ProviderHttp, ProviderRequest};

const SERVICE: &str = "web_push";
/// How long the push service keeps an undelivered message (four weeks, the usual cap).
const DEFAULT_TTL_SECONDS: u64 = 2_419_200;
/// VAPID tokens may live at most 24 hours; 12 leaves room for clock skew.
const VAPID_LIFETIME_SECONDS: u64 = 12 * 3600;

#[derive(Debug, Clone, Deserialize)]
pub struct WebPushSettings {
    /// The application server's private key: 32 bytes, base64url.
    pub vapid_private_key: String,
    /// A contact for the push service operator: `mailto:…` or `https://…`.
    pub vapid_subject: String,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub sandbox: bool,
}

/// A browser's `PushSubscription`, as stored in the recipient's channel data.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint: String,
    pub keys: SubscriptionKeys,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SubscriptionKeys {
    pub p256dh: String,
    pub auth: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WebPushError {
    #[error("invalid VAPID key: {0}")]
    Key(String),
}

/// One application server identity.
pub struct WebPushClient {
    http: ProviderHttp,
    settings: WebPushSettings,
    signing_key: SigningKey,
    /// The public key, base64url, sent as the `k` of the Authorization header.
    public_key: String,
}

impl std::fmt::Debug for WebPushClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushClient")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .ok()
}

impl WebPushClient {
    pub fn new(settings: WebPushSettings, http: ProviderHttp) -> Result<Self, WebPushError> {
        let raw = b64(&settings.vapid_private_key)
            .ok_or_else(|| WebPushError::Key("not base64url".into()))?;
        let secret =
            SecretKey::from_slice(&raw).map_err(|_| WebPushError::Key("not a P-256 key".into()))?;
        let public_key =
            URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
        Ok(Self {
            http,
            settings,
            signing_key: SigningKey::from(secret),
            public_key,
        })
    }

    /// The VAPID public key browsers subscribe with (`applicationServerKey`).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// `vapid t=<jwt>, k=<public key>` for the endpoint's origin.
    fn authorization(&self, endpoint: &Url, now: SystemTime) -> String {
        let exp = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            + VAPID_LIFETIME_SECONDS;
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = json!({
            "aud": endpoint.origin().ascii_serialization(),
            "exp": exp,
            "sub": self.settings.vapid_subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let signature: Signature = self.signing_key.sign(signing_input.as_bytes());
        let jwt = format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        );
        format!("vapid t={jwt}, k={}", self.public_key)
    }

    fn payload(message: &PushMessage) -> Value {
        let mut payload = json!({"data": message.data});
        if message.delivery_type == DeliveryType::Content {
            payload["body"] = json!(message.body);
            if let Some(title) = &message.title {
                payload["title"] = json!(title);
            }
        }
        if let Some(overrides) = &message.payload_overrides {
            merge(&mut payload, overrides);
        }
        payload
    }

    fn request(
        &self,
        subscription: &Subscription,
        message: &PushMessage,
    ) -> Result<ProviderRequest, String> {
        let endpoint = Url::parse(subscription.endpoint.trim())
            .map_err(|_| "invalid subscription endpoint".to_string())?;
        let ua_public = b64(&subscription.keys.p256dh)
            .ok_or_else(|| "the subscription's p256dh key is not base64url".to_string())?;
        let auth = b64(&subscription.keys.auth)
            .ok_or_else(|| "the subscription's auth secret is not base64url".to_string())?;
        let sender = SecretKey::random(&mut rand::rngs::OsRng);
        let salt: [u8; 16] = rand::random();
        let plaintext = Self::payload(message).to_string();
        let body = encrypt(plaintext.as_bytes(), &ua_public, &auth, &sender, &salt)
            .map_err(|e| e.to_string())?;
        let ttl = self.settings.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        let mut request = ProviderRequest::new(
            Method::POST,
            endpoint.clone(),
            RequestBody::Binary {
                content_type: "application/octet-stream",
                bytes: body,
            },
        )
        .header("Content-Encoding", "aes128gcm")
        .header("TTL", ttl.to_string())
        .header("Urgency", "normal")
        .header(
            "Authorization",
            self.authorization(&endpoint, SystemTime::now()),
        );
        // Push service URLs identify the subscription; keep them out of the log.
        request.logged_path = Some(format!("/{}", crate::REDACTED));
        Ok(request)
    }

    /// Sends `message` to each subscription. The token reported back is the endpoint.
    pub async fn send(
        &self,
        subscriptions: &[Subscription],
        message: &PushMessage,
    ) -> Vec<TokenAttempt> {
        let mut out = Vec::with_capacity(subscriptions.len());
        for subscription in subscriptions {
            let endpoint = subscription.endpoint.as_str();
            let request = match self.request(subscription, message) {
                Ok(request) => request,
                Err(reason) => {
                    out.push(TokenAttempt::new(
                        endpoint,
                        rejected(SERVICE, reason),
                        false,
                    ));
                    continue;
                }
            };
            if self.settings.sandbox {
                out.push(TokenAttempt::new(
                    endpoint,
                    sandboxed(SERVICE, &request),
                    false,
                ));
                continue;
            }
            let attempt = self.http.send(SERVICE, &request, classify_by_status).await;
            // 404 and 410: the subscription expired or was revoked.
            let status = attempt.response["status"].as_u64().unwrap_or_default();
            let invalid = status == 404 || status == 410;
            out.push(TokenAttempt::new(endpoint, attempt, invalid));
        }
        out
    }
}
