//! Inbound status callbacks: providers tell Hark what became of a message after they
//! accepted it (delivered, bounced, dropped). Each provider proves it sent the callback in
//! its own way; this module checks that proof and turns the payload into status reports.
//! It knows nothing about the store: the API looks the messages up and applies them.

mod mailgun;
mod postmark;
mod sendgrid;
mod twilio;

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::DeliveryAttempt;

/// Which message a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageRef {
    /// The Hark message id the sender passed as metadata (SendGrid `custom_args`,
    /// Postmark `Metadata`, Mailgun `v:` variables).
    Hark(String),
    /// The id the provider gave the message when it accepted it.
    Provider(String),
}

/// The Knock message statuses a provider can report after acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedStatus {
    Delivered,
    Bounced,
    Undelivered,
}

impl ReportedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportedStatus::Delivered => "delivered",
            ReportedStatus::Bounced => "bounced",
            ReportedStatus::Undelivered => "undelivered",
        }
    }
}

/// One status change a callback reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub message: MessageRef,
    pub status: ReportedStatus,
    /// The provider's own name for the event (`bounce`, `failed`, `HardBounce`, …).
    pub provider_event: String,
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackError {
    /// Missing or wrong signature/credentials: the callback is refused.
    #[error("{0}")]
    Unauthorized(String),
    /// Correctly signed, but not a payload this provider sends.
    #[error("{0}")]
    Malformed(String),
}

/// How one channel's callbacks are authenticated, built from its settings. A channel
/// whose settings carry no verification secret has no verifier and accepts no callbacks.
#[derive(Debug, Clone)]
pub enum CallbackVerifier {
    /// SendGrid Event Webhook: ECDSA P-256 over timestamp + body.
    SendGrid(sendgrid::Verifier),
    /// Postmark: HTTP basic credentials in the webhook URL.
    Postmark(postmark::Verifier),
    /// Mailgun: HMAC-SHA256 of timestamp + token in the body.
    Mailgun(mailgun::Verifier),
    /// Twilio: HMAC-SHA1 over the callback URL and the sorted form parameters.
    Twilio(twilio::Verifier),
}

impl CallbackVerifier {
    /// The verifier for a channel of `provider` with `settings`, `None` when the settings
    /// configure no callback secret (or the provider sends no callbacks Hark reads).
    /// Settings that are present but unusable (a key that does not parse) are an error,
    /// so a misconfiguration shows at startup rather than as refused callbacks.
    pub fn from_settings(provider: &str, settings: &Value) -> Result<Option<Self>, String> {
        Ok(match provider {
            "sendgrid" => sendgrid::Verifier::from_settings(settings)?.map(Self::SendGrid),
            "postmark" => postmark::Verifier::from_settings(settings)?.map(Self::Postmark),
            "mailgun" => mailgun::Verifier::from_settings(settings)?.map(Self::Mailgun),
            "twilio" => twilio::Verifier::from_settings(settings)?.map(Self::Twilio),
            _ => None,
        })
    }

    /// Checks the callback's proof of origin, then reads its status reports. Events that
    /// do not change a message's status (opens, clicks, deferrals) yield no report.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<StatusReport>, CallbackError> {
        match self {
            Self::SendGrid(v) => v.verify(headers, body),
            Self::Postmark(v) => v.verify(headers, body),
            Self::Mailgun(v) => v.verify(body),
            Self::Twilio(v) => v.verify(headers, body),
        }
    }
}

/// The id a provider gave an accepted message, read from the logged response, so later
/// callbacks that name only that id can find the message.
pub fn provider_message_id(attempt: &DeliveryAttempt) -> Option<String> {
    if !attempt.outcome.is_success() {
        return None;
    }
    let response = &attempt.response;
    let body_field = |field: &str| {
        response
            .get("body")
            .and_then(|b| b.get(field))
            .and_then(Value::as_str)
    };
    let id = match attempt.service_name.as_str() {
        "sendgrid" => response
            .get("headers")
            .and_then(Value::as_object)
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("x-message-id"))
            })
            .and_then(|(_, value)| value.as_str()),
        "postmark" => body_field("MessageID"),
        "mailgun" => body_field("id"),
        "twilio" => body_field("sid"),
        _ => None,
    }?;
    let id = normalize_message_id(id);
    (!id.is_empty()).then(|| id.to_string())
}

/// Mailgun answers a send with `<id@domain>` but names `id@domain` in its events.
fn normalize_message_id(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

/// Compares secrets without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A non-empty string setting, trimmed.
fn setting<'a>(settings: &'a Value, name: &str) -> Option<&'a str> {
    settings
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn json_body(body: &[u8]) -> Result<Value, CallbackError> {
    serde_json::from_slice(body)
        .map_err(|e| CallbackError::Malformed(format!("the body is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;
    use serde_json::json;

    fn attempt(service: &str, response: Value) -> DeliveryAttempt {
        DeliveryAttempt {
            outcome: Outcome::Sent,
            service_name: service.into(),
            request: json!({}),
            response,
        }
    }

    #[test]
    fn provider_ids_come_from_the_logged_response() {
        let sendgrid = attempt(
            "sendgrid",
            json!({"status": 202, "headers": {"x-message-id": "abc"}, "body": ""}),
        );
        assert_eq!(provider_message_id(&sendgrid).as_deref(), Some("abc"));
        let mailgun = attempt(
            "mailgun",
            json!({"status": 200, "body": {"id": "<2024.1@mg.example.com>"}}),
        );
        assert_eq!(
            provider_message_id(&mailgun).as_deref(),
            Some("2024.1@mg.example.com")
        );
        let twilio = attempt("twilio", json!({"status": 201, "body": {"sid": "SM1"}}));
        assert_eq!(provider_message_id(&twilio).as_deref(), Some("SM1"));
        let mut failed = twilio.clone();
        failed.outcome = Outcome::Permanent { reason: "x".into() };
        assert_eq!(provider_message_id(&failed), None);
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
    }
}
