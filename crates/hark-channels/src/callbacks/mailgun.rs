//! Mailgun webhooks: a JSON body `{"signature": {timestamp, token, signature},
//! "event-data": {…}}`, where `signature` is the hex HMAC-SHA256 of timestamp + token
//! under the domain's webhook signing key. Hark's `v:` variables come back in
//! `event-data.user-variables`.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{json_body, setting, CallbackError, MessageRef, ReportedStatus, StatusReport};

#[derive(Debug, Clone)]
pub struct Verifier {
    signing_key: String,
}

impl Verifier {
    pub(super) fn from_settings(settings: &Value) -> Result<Option<Self>, String> {
        Ok(setting(settings, "webhook_signing_key").map(|key| Self {
            signing_key: key.to_string(),
        }))
    }

    pub(super) fn verify(&self, body: &[u8]) -> Result<Vec<StatusReport>, CallbackError> {
        let unauthorized = |m: &str| CallbackError::Unauthorized(m.to_string());
        // The signature is inside the body, so the body must parse before it can be
        // checked; nothing in it is used until it is.
        let payload = json_body(body).map_err(|_| unauthorized("the Mailgun body is not JSON"))?;
        let signature = payload
            .get("signature")
            .ok_or_else(|| unauthorized("the Mailgun signature is missing"))?;
        let field = |name: &str| signature.get(name).and_then(Value::as_str);
        let (Some(timestamp), Some(token), Some(hex_signature)) =
            (field("timestamp"), field("token"), field("signature"))
        else {
            return Err(unauthorized("the Mailgun signature is incomplete"));
        };
        let expected = hex::decode(hex_signature)
            .map_err(|_| unauthorized("the Mailgun signature is not hex"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.signing_key.as_bytes())
            .map_err(|_| unauthorized("the Mailgun signing key is unusable"))?;
        mac.update(timestamp.as_bytes());
        mac.update(token.as_bytes());
        mac.verify_slice(&expected)
            .map_err(|_| unauthorized("the Mailgun signature does not match"))?;
        let event = payload.get("event-data").ok_or_else(|| {
            CallbackError::Malformed("a Mailgun webhook carries `event-data`".into())
        })?;
        Ok(report(event).into_iter().collect())
    }
}

fn report(event: &Value) -> Option<StatusReport> {
    let text =
        |value: &Value, field: &str| value.get(field).and_then(Value::as_str).map(str::to_string);
    let name = text(event, "event")?;
    let status = match (name.as_str(), text(event, "severity").as_deref()) {
        ("delivered", _) => ReportedStatus::Delivered,
        ("failed", Some("permanent")) => ReportedStatus::Bounced,
        ("rejected", _) => ReportedStatus::Undelivered,
        // Temporary failures are retried by Mailgun: not final.
        _ => return None,
    };
    let message = match event
        .get("user-variables")
        .and_then(|v| v.get("hark_message_id"))
        .and_then(Value::as_str)
    {
        Some(id) => MessageRef::Hark(id.to_string()),
        None => {
            let headers = event.get("message")?.get("headers")?;
            let id = text(headers, "message-id")?;
            MessageRef::Provider(super::normalize_message_id(&id).to_string())
        }
    };
    let reason = event.get("delivery-status").and_then(|d| {
        text(d, "message")
            .filter(|m| !m.is_empty())
            .or_else(|| text(d, "description"))
    });
    Some(StatusReport {
        message,
        status,
        provider_event: name,
        reason: reason.or_else(|| text(event, "reason")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signed(key: &str, event: Value) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("key");
        mac.update(b"1700000000tok");
        let signature = hex::encode(mac.finalize().into_bytes());
        json!({"signature": {"timestamp": "1700000000", "token": "tok", "signature": signature},
               "event-data": event})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn signature_is_checked_before_the_event_is_read() {
        let verifier = Verifier {
            signing_key: "key-1".into(),
        };
        let event = json!({"event": "failed", "severity": "permanent",
                           "user-variables": {"hark_message_id": "m1"},
                           "delivery-status": {"message": "mailbox unavailable"}});
        let reports = verifier
            .verify(&signed("key-1", event.clone()))
            .expect("valid");
        assert_eq!(reports[0].status, ReportedStatus::Bounced);
        assert_eq!(reports[0].reason.as_deref(), Some("mailbox unavailable"));
        assert!(matches!(
            verifier.verify(&signed("key-2", event)),
            Err(CallbackError::Unauthorized(_))
        ));
        let temporary = json!({"event": "failed", "severity": "temporary",
                               "user-variables": {"hark_message_id": "m1"}});
        assert!(verifier
            .verify(&signed("key-1", temporary))
            .expect("valid")
            .is_empty());
    }
}
