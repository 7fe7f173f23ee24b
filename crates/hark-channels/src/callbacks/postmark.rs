//! Postmark webhooks carry no signature: the webhook URL configured in Postmark holds
//! HTTP basic credentials, which arrive as an `Authorization: Basic` header. Delivery and
//! bounce webhooks are one JSON object each, with Hark's `Metadata` echoed back.

use base64::Engine as _;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{
    constant_time_eq, header, json_body, setting, CallbackError, MessageRef, ReportedStatus,
    StatusReport,
};

/// Bounce types that mean the address will not take mail; the others (soft, transient,
/// auto-replies, challenges) say nothing final about the message.
const HARD_BOUNCE_TYPES: &[&str] = &[
    "HardBounce",
    "BadEmailAddress",
    "ManuallyDeactivated",
    "SpamNotification",
    "Blocked",
    "DMARCPolicy",
];

#[derive(Debug, Clone)]
pub struct Verifier {
    /// `user:password`, as the header carries it once decoded.
    credentials: String,
}

impl Verifier {
    pub(super) fn from_settings(settings: &Value) -> Result<Option<Self>, String> {
        match (
            setting(settings, "webhook_username"),
            setting(settings, "webhook_password"),
        ) {
            (Some(user), Some(password)) => Ok(Some(Self {
                credentials: format!("{user}:{password}"),
            })),
            (None, None) => Ok(None),
            _ => Err("`webhook_username` and `webhook_password` go together".into()),
        }
    }

    pub(super) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<StatusReport>, CallbackError> {
        let unauthorized = |m: &str| CallbackError::Unauthorized(m.to_string());
        let authorization = header(headers, "authorization")
            .ok_or_else(|| unauthorized("the Postmark webhook credentials are missing"))?;
        let encoded = authorization
            .strip_prefix("Basic ")
            .ok_or_else(|| unauthorized("Postmark webhooks use HTTP basic credentials"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| unauthorized("the basic credentials are not base64"))?;
        if !constant_time_eq(&decoded, self.credentials.as_bytes()) {
            return Err(unauthorized(
                "the Postmark webhook credentials do not match",
            ));
        }
        Ok(report(&json_body(body)?).into_iter().collect())
    }
}

fn report(event: &Value) -> Option<StatusReport> {
    let text = |field: &str| event.get(field).and_then(Value::as_str);
    let (status, provider_event) = match text("RecordType")? {
        "Delivery" => (ReportedStatus::Delivered, "Delivery"),
        "Bounce" => {
            let kind = text("Type")?;
            if !HARD_BOUNCE_TYPES.contains(&kind) {
                return None;
            }
            (ReportedStatus::Bounced, kind)
        }
        _ => return None,
    };
    let message = match event
        .get("Metadata")
        .and_then(|m| m.get("hark_message_id"))
        .and_then(Value::as_str)
    {
        Some(id) => MessageRef::Hark(id.to_string()),
        None => MessageRef::Provider(text("MessageID")?.to_string()),
    };
    Some(StatusReport {
        message,
        status,
        provider_event: provider_event.to_string(),
        reason: text("Description").or(text("Details")).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn soft_bounces_change_nothing() {
        let soft = json!({"RecordType": "Bounce", "Type": "SoftBounce", "MessageID": "x"});
        assert_eq!(report(&soft), None);
        let hard = json!({"RecordType": "Bounce", "Type": "HardBounce", "MessageID": "x",
                          "Description": "gone"});
        let r = report(&hard).expect("report");
        assert_eq!(r.status, ReportedStatus::Bounced);
        assert_eq!(r.message, MessageRef::Provider("x".into()));
    }
}
