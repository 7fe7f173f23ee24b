//! SendGrid Event Webhook. A signed webhook carries
//! `X-Twilio-Email-Event-Webhook-Signature` (base64 DER ECDSA P-256 signature over the
//! timestamp header followed by the raw body) and `X-Twilio-Email-Event-Webhook-Timestamp`;
//! the verification key SendGrid shows is a base64 DER public key. The body is a JSON
//! array of events; Hark's `custom_args` come back as top-level fields of each event.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{header, json_body, setting, CallbackError, MessageRef, ReportedStatus, StatusReport};

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

#[derive(Debug, Clone)]
pub struct Verifier {
    key: VerifyingKey,
}

impl Verifier {
    pub(super) fn from_settings(settings: &Value) -> Result<Option<Self>, String> {
        let Some(encoded) = setting(settings, "webhook_verification_key") else {
            return Ok(None);
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("`webhook_verification_key` is not base64: {e}"))?;
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| format!("`webhook_verification_key` is not a P-256 public key: {e}"))?;
        Ok(Some(Self { key }))
    }

    pub(super) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<StatusReport>, CallbackError> {
        let unauthorized = |m: &str| CallbackError::Unauthorized(m.to_string());
        let signature = header(headers, SIGNATURE_HEADER)
            .ok_or_else(|| unauthorized("the SendGrid signature header is missing"))?;
        let timestamp = header(headers, TIMESTAMP_HEADER)
            .ok_or_else(|| unauthorized("the SendGrid timestamp header is missing"))?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| unauthorized("the SendGrid signature is not base64"))?;
        let signature = Signature::from_der(&der)
            .map_err(|_| unauthorized("the SendGrid signature is not a DER ECDSA signature"))?;
        // Either half of the (r, s) / (r, n - s) pair is a valid signature; accept both,
        // since SendGrid does not promise the low one.
        let signature = signature.normalize_s().unwrap_or(signature);
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.key
            .verify(&signed, &signature)
            .map_err(|_| unauthorized("the SendGrid signature does not match"))?;
        parse(&json_body(body)?)
    }
}

fn parse(body: &Value) -> Result<Vec<StatusReport>, CallbackError> {
    let events = body.as_array().ok_or_else(|| {
        CallbackError::Malformed("a SendGrid event webhook body is an array of events".into())
    })?;
    Ok(events.iter().filter_map(report).collect())
}

fn report(event: &Value) -> Option<StatusReport> {
    let text = |field: &str| event.get(field).and_then(Value::as_str);
    let name = text("event")?;
    let status = match (name, text("type")) {
        ("delivered", _) => ReportedStatus::Delivered,
        // A block is the receiving server refusing for now (reputation, content), not a
        // bad address.
        ("bounce", Some("blocked")) => ReportedStatus::Undelivered,
        ("bounce", _) => ReportedStatus::Bounced,
        ("dropped", _) => ReportedStatus::Undelivered,
        _ => return None,
    };
    let message = match text("hark_message_id") {
        Some(id) => MessageRef::Hark(id.to_string()),
        // `sg_message_id` is the X-Message-Id of the send followed by `.filter…`.
        None => {
            let sg = text("sg_message_id")?;
            MessageRef::Provider(sg.split('.').next().unwrap_or(sg).to_string())
        }
    };
    Some(StatusReport {
        message,
        status,
        provider_event: name.to_string(),
        reason: text("reason").or(text("response")).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_map_to_statuses() {
        let body = json!([
            {"event": "processed", "hark_message_id": "m1"},
            {"event": "delivered", "hark_message_id": "m1"},
            {"event": "bounce", "type": "bounce", "reason": "no such user", "hark_message_id": "m2"},
            {"event": "bounce", "type": "blocked", "sg_message_id": "abc.filter001"},
            {"event": "open", "hark_message_id": "m1"},
        ]);
        let reports = parse(&body).expect("parse");
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[0].status, ReportedStatus::Delivered);
        assert_eq!(reports[1].status, ReportedStatus::Bounced);
        assert_eq!(reports[1].reason.as_deref(), Some("no such user"));
        assert_eq!(reports[2].message, MessageRef::Provider("abc".into()));
        assert_eq!(reports[2].status, ReportedStatus::Undelivered);
    }
}
