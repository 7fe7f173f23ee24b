//! Amazon SNS `Publish` to a phone number: the Query API (form-encoded), signed with
//! SigV4; the answer is XML.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;

use super::OutboundSms;
use crate::outbound::BoundedBody;
use crate::provider::sigv4::{sign, AwsCredentials};
use crate::provider::{classify_by_status, join_url, ProviderRequest, RequestBody};
use crate::Outcome;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub region: String,
    #[serde(flatten)]
    pub credentials: AwsCredentials,
    /// `Transactional` (default, optimised for reliability) or `Promotional`.
    #[serde(default)]
    pub sms_type: Option<String>,
}

pub fn request(
    settings: &Settings,
    sender_id: &str,
    sms: &OutboundSms,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let region = settings.region.trim();
    if !region
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(format!("invalid AWS region `{region}`"));
    }
    let default_base = format!("https://sns.{region}.amazonaws.com");
    let url = join_url(base_url.unwrap_or(&default_base), "/").map_err(|e| e.to_string())?;
    let mut form = vec![
        ("Action".to_string(), "Publish".to_string()),
        ("Version".to_string(), "2010-03-31".to_string()),
        ("PhoneNumber".to_string(), sms.to.clone()),
        ("Message".to_string(), sms.body.clone()),
    ];
    let mut attributes = vec![(
        "AWS.SNS.SMS.SMSType",
        settings
            .sms_type
            .clone()
            .unwrap_or_else(|| "Transactional".into()),
    )];
    if !sender_id.is_empty() {
        attributes.push(("AWS.SNS.SMS.SenderID", sender_id.to_string()));
    }
    for (i, (name, value)) in attributes.into_iter().enumerate() {
        let prefix = format!("MessageAttributes.entry.{}", i + 1);
        form.push((format!("{prefix}.Name"), name.to_string()));
        form.push((format!("{prefix}.Value.DataType"), "String".to_string()));
        form.push((format!("{prefix}.Value.StringValue"), value));
    }
    // Signed by the caller once overrides are applied: the signature covers the body.
    Ok(ProviderRequest::new(
        Method::POST,
        url,
        RequestBody::Form(form),
    ))
}

/// Signs the finished request.
pub fn sign_request(settings: &Settings, request: &mut ProviderRequest) {
    sign(
        request,
        &settings.credentials,
        settings.region.trim(),
        "sns",
        std::time::SystemTime::now(),
    );
}

/// SNS reports throttling as a 400 with an error code in the XML body; that one is worth
/// retrying, unlike other 400s.
pub fn classify(status: u16, headers: &HeaderMap, body: &BoundedBody) -> Outcome {
    let throttled = ["<Code>Throttling</Code>", "<Code>ThrottledException</Code>"];
    if status == 400 && throttled.iter().any(|code| body.text.contains(code)) {
        return Outcome::Retryable {
            reason: "SNS throttled the request".into(),
            retry_after_ms: None,
        };
    }
    classify_by_status(status, headers, body)
}
