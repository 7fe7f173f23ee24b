//! Amazon SES v2 `SendEmail`: `POST /v2/email/outbound-emails`, signed with SigV4.

use crate::provider::sigv4::sign;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{bodies, OutboundEmail};
use crate::provider::sigv4::AwsCredentials;
use crate::provider::{join_url, ProviderRequest, RequestBody};

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub region: String,
    #[serde(flatten)]
    pub credentials: AwsCredentials,
    #[serde(default)]
    pub configuration_set_name: Option<String>,
}

fn content(data: &str) -> Value {
    json!({"Data": data, "Charset": "UTF-8"})
}

pub fn request(
    settings: &Settings,
    email: &OutboundEmail,
    base_url: Option<&str>,
) -> Result<ProviderRequest, String> {
    let region = settings.region.trim();
    if !region
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(format!("invalid AWS region `{region}`"));
    }
    let default_base = format!("https://email.{region}.amazonaws.com");
    let url = join_url(
        base_url.unwrap_or(&default_base),
        "/v2/email/outbound-emails",
    )
    .map_err(|e| e.to_string())?;
    let mut destination = Map::new();
    destination.insert("ToAddresses".into(), json!(email.to));
    if !email.cc.is_empty() {
        destination.insert("CcAddresses".into(), json!(email.cc));
    }
    if !email.bcc.is_empty() {
        destination.insert("BccAddresses".into(), json!(email.bcc));
    }
    let (text, html) = bodies(email);
    let mut message_body = Map::new();
    if let Some(text) = text {
        message_body.insert("Text".into(), content(text));
    }
    if let Some(html) = html {
        message_body.insert("Html".into(), content(html));
    }
    let mut body = json!({
        "FromEmailAddress": email.from,
        "Destination": destination,
        "Content": {"Simple": {"Subject": content(&email.subject), "Body": message_body}},
    });
    if !email.reply_to.is_empty() {
        body["ReplyToAddresses"] = json!(email.reply_to);
    }
    if let Some(set) = settings
        .configuration_set_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        body["ConfigurationSetName"] = json!(set);
    }
    // Signed by the caller once overrides are applied: the signature covers the body.
    Ok(ProviderRequest::new(
        Method::POST,
        url,
        RequestBody::Json(body),
    ))
}

/// Signs the finished request.
pub fn sign_request(settings: &Settings, request: &mut ProviderRequest) {
    let region = settings.region.trim();
    sign(
        request,
        &settings.credentials,
        region,
        "ses",
        std::time::SystemTime::now(),
    );
}
