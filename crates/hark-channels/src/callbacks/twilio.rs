//! Twilio status callbacks: a form-encoded POST to the `StatusCallback` URL Hark passed
//! when sending, signed in `X-Twilio-Signature` with the base64 HMAC-SHA1, under the
//! account's auth token, of that exact URL followed by every parameter name and value,
//! sorted by name. The signature covers the URL, so the URL must be configured (Hark
//! cannot know how a proxy in front of it rewrote the one it sees).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use serde_json::Value;
use sha1::Sha1;

use super::{header, setting, CallbackError, MessageRef, ReportedStatus, StatusReport};

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

#[derive(Debug, Clone)]
pub struct Verifier {
    auth_token: String,
    url: String,
}

impl Verifier {
    pub(super) fn from_settings(settings: &Value) -> Result<Option<Self>, String> {
        let Some(url) = setting(settings, "status_callback_url") else {
            return Ok(None);
        };
        let auth_token = setting(settings, "auth_token")
            .ok_or("`status_callback_url` needs the channel's `auth_token`")?;
        url::Url::parse(url).map_err(|e| format!("`status_callback_url` is not a URL: {e}"))?;
        Ok(Some(Self {
            auth_token: auth_token.to_string(),
            url: url.to_string(),
        }))
    }

    pub(super) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<StatusReport>, CallbackError> {
        let unauthorized = |m: &str| CallbackError::Unauthorized(m.to_string());
        let signature = header(headers, SIGNATURE_HEADER)
            .ok_or_else(|| unauthorized("the Twilio signature header is missing"))?;
        let expected = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| unauthorized("the Twilio signature is not base64"))?;
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        params.sort();
        let mut mac = Hmac::<Sha1>::new_from_slice(self.auth_token.as_bytes())
            .map_err(|_| unauthorized("the Twilio auth token is unusable"))?;
        mac.update(self.url.as_bytes());
        for (name, value) in &params {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        mac.verify_slice(&expected)
            .map_err(|_| unauthorized("the Twilio signature does not match"))?;
        Ok(report(&params).into_iter().collect())
    }
}

fn report(params: &[(String, String)]) -> Option<StatusReport> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let event = get("MessageStatus").or(get("SmsStatus"))?;
    let status = match event {
        "delivered" => ReportedStatus::Delivered,
        "undelivered" | "failed" => ReportedStatus::Undelivered,
        _ => return None,
    };
    Some(StatusReport {
        message: MessageRef::Provider(get("MessageSid").or(get("SmsSid"))?.to_string()),
        status,
        provider_event: event.to_string(),
        reason: get("ErrorCode").map(|code| format!("Twilio error {code}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature Twilio would send, computed from the pairs as given.
    fn sign(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
        let mut sorted = params.to_vec();
        sorted.sort();
        let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key");
        mac.update(url.as_bytes());
        for (name, value) in sorted {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signature_covers_url_and_sorted_params() {
        let verifier = Verifier {
            auth_token: "token".into(),
            url: "https://hark.example.com/v1/providers/sms/callbacks".into(),
        };
        let params = [
            ("MessageStatus", "undelivered"),
            ("MessageSid", "SM1"),
            ("ErrorCode", "30003"),
        ];
        let body = "MessageStatus=undelivered&MessageSid=SM1&ErrorCode=30003";
        let mut headers = HeaderMap::new();
        let signature = sign("token", &verifier.url, &params);
        headers.insert(SIGNATURE_HEADER, signature.parse().expect("header"));
        let reports = verifier.verify(&headers, body.as_bytes()).expect("valid");
        assert_eq!(reports[0].message, MessageRef::Provider("SM1".into()));
        assert_eq!(reports[0].status, ReportedStatus::Undelivered);
        let tampered = "MessageStatus=delivered&MessageSid=SM1&ErrorCode=30003";
        assert!(matches!(
            verifier.verify(&headers, tampered.as_bytes()),
            Err(CallbackError::Unauthorized(_))
        ));
    }
}
