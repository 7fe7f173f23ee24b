//! Outbound delivery for Hark's channels: webhooks over HTTP, email over SMTP and email
//! and SMS provider APIs, plus test peers (`testing`) that other crates' tests use to
//! receive what was sent.

pub mod callbacks;
pub mod chat;
pub mod email;
pub mod outbound;
pub mod provider;
pub mod push;
pub mod sms;
pub mod testing;
pub mod webhook;

mod redact;

pub use redact::{is_secret_header, REDACTED};

/// Result of one delivery attempt, as the engine records it.
#[derive(Debug, Clone)]
pub struct DeliveryAttempt {
    pub outcome: Outcome,
    /// Name of the service called, e.g. "webhook" or "smtp" (Knock's `service_name`).
    pub service_name: String,
    /// Knock MessageDeliveryLogRequest shape: {"method","host","path","query","headers","body"}
    /// (body string or object). Secrets are redacted as "[REDACTED]".
    pub request: serde_json::Value,
    /// Knock MessageDeliveryLogResponse shape: {"status","headers","body"}; for transport
    /// failures {"error": "..."}; for SMTP {"status": <smtp code>, "body": "<reply text>"}.
    pub response: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Provider confirmed delivery (webhook 2xx).
    Delivered,
    /// Provider accepted it (SMTP 250) — Knock status `sent`.
    Sent,
    /// Worth retrying: 5xx, 408, 429, connect errors, timeouts, SMTP 4xx transient.
    /// `retry_after_ms` from a Retry-After header (seconds or HTTP date) when present.
    Retryable {
        reason: String,
        retry_after_ms: Option<i64>,
    },
    /// Final failure: other 4xx, SSRF-refused URL, invalid URL, SMTP 5xx permanent.
    Permanent { reason: String },
    /// Deliberately not sent (the channel is in sandbox mode) — Knock status `not_sent`.
    NotSent { reason: String },
}

impl Outcome {
    /// Whether the provider took the message (`Delivered` or `Sent`).
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Delivered | Outcome::Sent)
    }
}
