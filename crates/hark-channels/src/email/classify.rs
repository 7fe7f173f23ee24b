//! Turning an SMTP result into an outcome and a response log.

use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::Error as SmtpError;
use serde_json::{json, Value};

use crate::outbound::error_chain;
use crate::Outcome;

pub fn accepted(response: &Response) -> (Outcome, Value) {
    let code: u16 = response.code().into();
    let text = response.message().collect::<Vec<_>>().join("\n");
    (Outcome::Sent, json!({"status": code, "body": text}))
}

/// 5xx replies are final. Everything else (4xx, refused or dropped connections,
/// timeouts, TLS trouble, garbled replies) may clear up, so it is retried; the engine's
/// attempt limit bounds a misconfiguration.
pub fn failed(err: &SmtpError) -> (Outcome, Value) {
    let detail = error_chain(err);
    let response = match err.status() {
        Some(code) => json!({"status": u16::from(code), "body": detail}),
        None => json!({"error": detail}),
    };
    let outcome = if err.is_permanent() {
        Outcome::Permanent { reason: detail }
    } else {
        let reason = if err.is_timeout() {
            format!("timed out: {detail}")
        } else {
            detail
        };
        Outcome::Retryable {
            reason,
            retry_after_ms: None,
        }
    };
    (outcome, response)
}
