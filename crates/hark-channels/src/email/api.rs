//! Email through providers' HTTP APIs (SendGrid, Postmark, Mailgun, Resend, Amazon SES):
//! the settings every provider shares, one sender the engine calls, and one module per
//! provider that turns an email into that provider's request.

mod mailgun;
mod postmark;
mod resend;
mod sendgrid;
mod ses;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::provider::{classify_by_status, rejected, sandboxed, ProviderHttp, ProviderRequest};
use crate::DeliveryAttempt;

/// The providers this module speaks, by their configuration name.
pub const EMAIL_API_PROVIDERS: &[&str] = &["sendgrid", "postmark", "mailgun", "resend", "ses"];

/// One rendered email as the engine hands it over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundEmail {
    /// `addr@example.com` or `Name <addr@example.com>`; the channel's sender when empty.
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Vec<String>,
    pub subject: String,
    pub html_body: Option<String>,
    pub text_body: Option<String>,
    /// The Hark message id, passed to providers that take an idempotency key or metadata.
    pub message_id: String,
    /// Merged into the provider's payload last (Knock's `json_overrides`); replaces the
    /// channel's own when set.
    pub json_overrides: Option<Value>,
}

/// Settings every email provider channel takes besides its credentials. The address
/// fields are channel-level overrides, as in Knock's channel settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct EmailChannelSettings {
    pub from_address: String,
    #[serde(default)]
    pub from_name: Option<String>,
    /// Sends every message of the channel to this address instead (e.g. a catch-all
    /// inbox for a staging environment).
    #[serde(default)]
    pub to_address: Option<String>,
    /// Used when the step sets none; comma-separated lists allowed.
    #[serde(default)]
    pub cc_address: Option<String>,
    #[serde(default)]
    pub bcc_address: Option<String>,
    #[serde(default)]
    pub reply_to_address: Option<String>,
    /// Record messages as `not_sent` without calling the provider.
    #[serde(default)]
    pub sandbox: bool,
    /// The provider's API root; defaults to the provider's public endpoint.
    #[serde(default)]
    pub base_url: Option<String>,
    /// A JSON object merged into every request's payload, for provider features Hark
    /// has no setting for.
    #[serde(default)]
    pub json_overrides: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailApiError {
    #[error("unknown email provider `{0}`")]
    UnknownProvider(String),
    /// Why the settings were refused (the caller names the channel).
    #[error("{0}")]
    Settings(String),
}

#[derive(Debug, Clone)]
enum Provider {
    SendGrid(sendgrid::Settings),
    Postmark(postmark::Settings),
    Mailgun(mailgun::Settings),
    Resend(resend::Settings),
    Ses(ses::Settings),
}

/// Sends email through one configured provider.
#[derive(Debug, Clone)]
pub struct EmailApiSender {
    provider: Provider,
    settings: EmailChannelSettings,
    http: ProviderHttp,
}

fn parse<T: DeserializeOwned>(settings: &Value) -> Result<T, EmailApiError> {
    serde_json::from_value(settings.clone()).map_err(|e| EmailApiError::Settings(e.to_string()))
}

fn required(name: &str, value: &str) -> Result<(), EmailApiError> {
    if value.trim().is_empty() {
        return Err(EmailApiError::Settings(format!("`{name}` can't be blank")));
    }
    Ok(())
}

impl EmailApiSender {
    /// Reads `settings` for `provider` (one of [`EMAIL_API_PROVIDERS`]).
    pub fn new(
        provider: &str,
        settings: &Value,
        http: ProviderHttp,
    ) -> Result<Self, EmailApiError> {
        let common: EmailChannelSettings = parse(settings)?;
        required("from_address", &common.from_address)?;
        let provider = match provider {
            "sendgrid" => {
                let s: sendgrid::Settings = parse(settings)?;
                required("api_key", &s.api_key)?;
                Provider::SendGrid(s)
            }
            "postmark" => {
                let s: postmark::Settings = parse(settings)?;
                required("server_token", &s.server_token)?;
                Provider::Postmark(s)
            }
            "mailgun" => {
                let s: mailgun::Settings = parse(settings)?;
                required("api_key", &s.api_key)?;
                required("domain", &s.domain)?;
                Provider::Mailgun(s)
            }
            "resend" => {
                let s: resend::Settings = parse(settings)?;
                required("api_key", &s.api_key)?;
                Provider::Resend(s)
            }
            "ses" | "aws_ses" => {
                let s: ses::Settings = parse(settings)?;
                required("region", &s.region)?;
                required("access_key_id", &s.credentials.access_key_id)?;
                required("secret_access_key", &s.credentials.secret_access_key)?;
                Provider::Ses(s)
            }
            other => return Err(EmailApiError::UnknownProvider(other.to_string())),
        };
        Ok(Self {
            provider,
            settings: common,
            http,
        })
    }

    pub fn settings(&self) -> &EmailChannelSettings {
        &self.settings
    }

    /// Knock's `service_name` for this provider.
    pub fn service_name(&self) -> &'static str {
        match self.provider {
            Provider::SendGrid(_) => "sendgrid",
            Provider::Postmark(_) => "postmark",
            Provider::Mailgun(_) => "mailgun",
            Provider::Resend(_) => "resend",
            Provider::Ses(_) => "aws_ses",
        }
    }

    /// The email with the channel's defaults and overrides applied.
    pub fn resolve(&self, email: &OutboundEmail) -> OutboundEmail {
        let s = &self.settings;
        let mut out = email.clone();
        if out.from.trim().is_empty() {
            out.from = s.from_address.clone();
        }
        if let Some(name) = s.from_name.as_deref().filter(|n| !n.trim().is_empty()) {
            if !out.from.contains('<') {
                out.from = format!("{} <{}>", name.trim(), out.from.trim());
            }
        }
        if let Some(to) = s.to_address.as_deref().filter(|t| !t.trim().is_empty()) {
            out.to = split_addresses(to);
        }
        let fallback = |list: &mut Vec<String>, setting: &Option<String>| {
            if list.is_empty() {
                if let Some(value) = setting {
                    *list = split_addresses(value);
                }
            }
        };
        fallback(&mut out.cc, &s.cc_address);
        fallback(&mut out.bcc, &s.bcc_address);
        fallback(&mut out.reply_to, &s.reply_to_address);
        out
    }

    /// Makes one attempt.
    pub async fn send(&self, email: &OutboundEmail) -> DeliveryAttempt {
        let service = self.service_name();
        let email = self.resolve(email);
        if email.to.is_empty() {
            return rejected(service, "the email has no recipient address".into());
        }
        let base = self.settings.base_url.as_deref();
        let built: Result<ProviderRequest, String> = match &self.provider {
            Provider::SendGrid(s) => sendgrid::request(s, &email, base),
            Provider::Postmark(s) => postmark::request(s, &email, base),
            Provider::Mailgun(s) => mailgun::request(s, &email, base),
            Provider::Resend(s) => resend::request(s, &email, base),
            Provider::Ses(s) => ses::request(s, &email, base),
        };
        let mut request = match built {
            Ok(request) => request,
            Err(reason) => return rejected(service, reason),
        };
        if let Some(overrides) = email
            .json_overrides
            .as_ref()
            .or(self.settings.json_overrides.as_ref())
        {
            request.apply_overrides(overrides);
        }
        if let Provider::Ses(s) = &self.provider {
            ses::sign_request(s, &mut request);
        }
        if self.settings.sandbox {
            return sandboxed(service, &request);
        }
        self.http.send(service, &request, classify_by_status).await
    }
}

/// Splits a comma-separated address list, dropping empty entries.
pub fn split_addresses(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// `Name <addr>` → (Some("Name"), "addr"); a bare address → (None, addr).
pub fn split_mailbox(mailbox: &str) -> (Option<String>, String) {
    let mailbox = mailbox.trim();
    match (mailbox.rfind('<'), mailbox.ends_with('>')) {
        (Some(open), true) => {
            let name = mailbox[..open].trim().trim_matches('"').trim();
            let address = mailbox[open + 1..mailbox.len() - 1].trim();
            let name = (!name.is_empty()).then(|| name.to_string());
            (name, address.to_string())
        }
        _ => (None, mailbox.to_string()),
    }
}

/// The bodies to send, empty ones left out.
fn bodies(email: &OutboundEmail) -> (Option<&str>, Option<&str>) {
    let text = email.text_body.as_deref().filter(|t| !t.is_empty());
    let html = email.html_body.as_deref().filter(|h| !h.is_empty());
    (text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_split() {
        assert_eq!(
            split_mailbox("\"Hark Alerts\" <a@example.com>"),
            (Some("Hark Alerts".into()), "a@example.com".into())
        );
        assert_eq!(
            split_mailbox(" a@example.com "),
            (None, "a@example.com".into())
        );
        assert_eq!(
            split_addresses("a@x.com, ,b@x.com"),
            vec!["a@x.com".to_string(), "b@x.com".to_string()]
        );
    }
}
