//! SMS through providers' HTTP APIs (Twilio, Vonage, MessageBird, Plivo, Telnyx, Amazon
//! SNS): the settings they share, one sender the engine calls, one module per provider.

mod messagebird;
mod plivo;
mod sns;
mod telnyx;
mod twilio;
mod vonage;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::provider::{
    classify_by_status, rejected, sandboxed, Classify, ProviderHttp, ProviderRequest,
};
use crate::DeliveryAttempt;

/// The providers this module speaks, by their configuration name.
pub const SMS_PROVIDERS: &[&str] = &["twilio", "vonage", "messagebird", "plivo", "telnyx", "sns"];

/// One rendered text message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundSms {
    /// E.164, e.g. `+15555550123`.
    pub to: String,
    pub body: String,
    /// The Hark message id, passed as the provider's client reference where it has one.
    pub message_id: String,
    /// Merged into the provider's payload last (Knock's payload overrides); replaces the
    /// channel's own when set.
    pub json_overrides: Option<Value>,
}

/// Settings every SMS channel takes besides its credentials.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SmsChannelSettings {
    /// The sending number or sender id. Twilio may use `messaging_service_sid` instead,
    /// Telnyx `messaging_profile_id`, and SNS needs none.
    #[serde(default)]
    pub from_number: Option<String>,
    /// Sends every message of the channel to this number instead.
    #[serde(default)]
    pub to_number: Option<String>,
    /// Record messages as `not_sent` without calling the provider.
    #[serde(default)]
    pub sandbox: bool,
    /// The provider's API root; defaults to the provider's public endpoint.
    #[serde(default)]
    pub base_url: Option<String>,
    /// A JSON object merged into every request's payload.
    #[serde(default)]
    pub json_overrides: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("unknown SMS provider `{0}`")]
    UnknownProvider(String),
    /// Why the settings were refused (the caller names the channel).
    #[error("{0}")]
    Settings(String),
}

#[derive(Debug, Clone)]
enum Provider {
    Twilio(twilio::Settings),
    Vonage(vonage::Settings),
    MessageBird(messagebird::Settings),
    Plivo(plivo::Settings),
    Telnyx(telnyx::Settings),
    Sns(sns::Settings),
}

/// Sends text messages through one configured provider.
#[derive(Debug, Clone)]
pub struct SmsSender {
    provider: Provider,
    settings: SmsChannelSettings,
    http: ProviderHttp,
}

fn parse<T: DeserializeOwned>(settings: &Value) -> Result<T, SmsError> {
    serde_json::from_value(settings.clone()).map_err(|e| SmsError::Settings(e.to_string()))
}

fn required(name: &str, value: Option<&str>) -> Result<(), SmsError> {
    if value.is_none_or(|v| v.trim().is_empty()) {
        return Err(SmsError::Settings(format!("`{name}` can't be blank")));
    }
    Ok(())
}

impl SmsSender {
    /// Reads `settings` for `provider` (one of [`SMS_PROVIDERS`]).
    pub fn new(provider: &str, settings: &Value, http: ProviderHttp) -> Result<Self, SmsError> {
        let common: SmsChannelSettings = parse(settings)?;
        let from = common.from_number.as_deref();
        let provider = match provider {
            "twilio" => {
                let s: twilio::Settings = parse(settings)?;
                required("account_sid", Some(&s.account_sid))?;
                required("auth_token", Some(&s.auth_token))?;
                if s.messaging_service_sid.is_none() {
                    required("from_number", from)?;
                }
                Provider::Twilio(s)
            }
            "vonage" => {
                let s: vonage::Settings = parse(settings)?;
                required("api_key", Some(&s.api_key))?;
                required("api_secret", Some(&s.api_secret))?;
                required("from_number", from)?;
                Provider::Vonage(s)
            }
            "messagebird" => {
                let s: messagebird::Settings = parse(settings)?;
                required("access_key", Some(&s.access_key))?;
                required("from_number", from)?;
                Provider::MessageBird(s)
            }
            "plivo" => {
                let s: plivo::Settings = parse(settings)?;
                required("auth_id", Some(&s.auth_id))?;
                required("auth_token", Some(&s.auth_token))?;
                required("from_number", from)?;
                Provider::Plivo(s)
            }
            "telnyx" => {
                let s: telnyx::Settings = parse(settings)?;
                required("api_key", Some(&s.api_key))?;
                if s.messaging_profile_id.is_none() {
                    required("from_number", from)?;
                }
                Provider::Telnyx(s)
            }
            "sns" | "aws_sns" => {
                let s: sns::Settings = parse(settings)?;
                required("region", Some(&s.region))?;
                required("access_key_id", Some(&s.credentials.access_key_id))?;
                required("secret_access_key", Some(&s.credentials.secret_access_key))?;
                Provider::Sns(s)
            }
            other => return Err(SmsError::UnknownProvider(other.to_string())),
        };
        Ok(Self {
            provider,
            settings: common,
            http,
        })
    }

    pub fn settings(&self) -> &SmsChannelSettings {
        &self.settings
    }

    /// Knock's `service_name` for this provider.
    pub fn service_name(&self) -> &'static str {
        match self.provider {
            Provider::Twilio(_) => "twilio",
            Provider::Vonage(_) => "vonage",
            Provider::MessageBird(_) => "messagebird",
            Provider::Plivo(_) => "plivo",
            Provider::Telnyx(_) => "telnyx",
            Provider::Sns(_) => "aws_sns",
        }
    }

    /// Makes one attempt.
    pub async fn send(&self, sms: &OutboundSms) -> DeliveryAttempt {
        let service = self.service_name();
        let mut sms = sms.clone();
        if let Some(to) = self
            .settings
            .to_number
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        {
            sms.to = to.trim().to_string();
        }
        if sms.to.trim().is_empty() {
            return rejected(service, "the message has no recipient phone number".into());
        }
        let from = self.settings.from_number.as_deref().unwrap_or_default();
        let base = self.settings.base_url.as_deref();
        let built: Result<(ProviderRequest, Classify), String> = match &self.provider {
            Provider::Twilio(s) => twilio::request(s, from, &sms, base).map(by_status),
            Provider::Vonage(s) => {
                vonage::request(s, from, &sms, base).map(|r| (r, vonage::classify as Classify))
            }
            Provider::MessageBird(s) => messagebird::request(s, from, &sms, base).map(by_status),
            Provider::Plivo(s) => plivo::request(s, from, &sms, base).map(by_status),
            Provider::Telnyx(s) => telnyx::request(s, from, &sms, base).map(by_status),
            Provider::Sns(s) => {
                sns::request(s, from, &sms, base).map(|r| (r, sns::classify as Classify))
            }
        };
        let (mut request, classify) = match built {
            Ok(built) => built,
            Err(reason) => return rejected(service, reason),
        };
        if let Some(overrides) = sms
            .json_overrides
            .as_ref()
            .or(self.settings.json_overrides.as_ref())
        {
            request.apply_overrides(overrides);
        }
        if let Provider::Sns(s) = &self.provider {
            sns::sign_request(s, &mut request);
        }
        if self.settings.sandbox {
            return sandboxed(service, &request);
        }
        self.http.send(service, &request, classify).await
    }
}

fn by_status(request: ProviderRequest) -> (ProviderRequest, Classify) {
    (request, classify_by_status as Classify)
}

/// Rejects path segments taken from settings that would change the URL's shape.
fn path_segment(name: &str, value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() || value.contains(['/', '?', '#', '%']) {
        return Err(format!("invalid {name} `{value}`"));
    }
    Ok(value.to_string())
}
