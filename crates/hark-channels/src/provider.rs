//! What every HTTP provider client (email APIs, SMS, chat, push) shares: one SSRF-guarded
//! client, request encoding, outcome classification and the redacted delivery log.

pub mod sigv4;

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Map, Value};
use url::Url;

use crate::outbound::{
    check_url, error_chain, http2_client, http_client, read_bounded, OutboundError,
};
use crate::outbound::{BoundedBody, OutboundPolicy};
use crate::webhook::{log, outcome_for_status, transport_outcome};
use crate::{DeliveryAttempt, Outcome, REDACTED};

/// How much of a provider's error body goes into the outcome's reason.
const REASON_BODY_LIMIT: usize = 300;

/// A request body as a provider expects it.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    Empty,
    Json(Value),
    /// `application/x-www-form-urlencoded`, in this order.
    Form(Vec<(String, String)>),
    /// Opaque bytes (an encrypted Web Push payload); the log records only the size.
    Binary {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
}

impl RequestBody {
    /// The content type and the exact bytes sent; signing (SigV4) hashes these.
    pub fn encode(&self) -> (Option<&'static str>, Vec<u8>) {
        match self {
            RequestBody::Empty => (None, Vec::new()),
            RequestBody::Json(value) => (Some("application/json"), value.to_string().into_bytes()),
            RequestBody::Form(pairs) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in pairs {
                    form.append_pair(k, v);
                }
                (
                    Some("application/x-www-form-urlencoded"),
                    form.finish().into_bytes(),
                )
            }
            RequestBody::Binary {
                content_type,
                bytes,
            } => (Some(content_type), bytes.clone()),
        }
    }

    fn content_type(&self) -> Option<&'static str> {
        match self {
            RequestBody::Empty => None,
            RequestBody::Json(_) => Some("application/json"),
            RequestBody::Form(_) => Some("application/x-www-form-urlencoded"),
            RequestBody::Binary { content_type, .. } => Some(content_type),
        }
    }
}

/// One request to a provider, fully built.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    pub method: Method,
    pub url: Url,
    /// Sent as given; the content type is added from the body unless set here.
    pub headers: Vec<(String, String)>,
    pub body: RequestBody,
    /// Body fields (JSON keys at any depth, or form names) that are credentials and must
    /// not reach the log.
    pub secret_fields: &'static [&'static str],
    /// Replaces the URL path in the log when the path itself is a credential (webhook
    /// URLs of chat tools).
    pub logged_path: Option<String>,
}

impl ProviderRequest {
    pub fn new(method: Method, url: Url, body: RequestBody) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body,
            secret_fields: &[],
            logged_path: None,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    pub fn basic(self, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("Authorization", format!("Basic {encoded}"))
    }

    /// The request as written to the delivery log, secrets redacted.
    pub fn log_value(&self) -> Value {
        let content_type = self.body.content_type();
        let mut headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(ct) = content_type {
            if !self.has_header("content-type") {
                headers.push(("content-type", ct));
            }
        }
        let body = match &self.body {
            RequestBody::Empty => Value::Null,
            RequestBody::Json(value) => redact_fields(value.clone(), self.secret_fields),
            RequestBody::Form(pairs) => {
                let mut map = Map::new();
                for (k, v) in pairs {
                    let v = if self.secret_fields.contains(&k.as_str()) {
                        REDACTED
                    } else {
                        v.as_str()
                    };
                    map.insert(k.clone(), Value::String(v.to_string()));
                }
                Value::Object(map)
            }
            RequestBody::Binary { bytes, .. } => {
                Value::String(format!("<{} bytes, not logged>", bytes.len()))
            }
        };
        let mut value = log::request_value(
            self.method.as_str(),
            &self.url,
            log::headers_value(headers),
            None,
        );
        value["body"] = body;
        if let Some(path) = &self.logged_path {
            value["path"] = Value::String(path.clone());
            value["query"] = Value::Null;
        }
        value
    }

    /// Merges a provider JSON override (Knock's `json_overrides`) into the body: deeply
    /// into a JSON body; as replaced or added fields into a form.
    pub fn apply_overrides(&mut self, overrides: &Value) {
        match &mut self.body {
            RequestBody::Json(body) => crate::push::merge(body, overrides),
            RequestBody::Form(pairs) => {
                if let Value::Object(map) = overrides {
                    for (key, value) in map {
                        let text = match value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        pairs.retain(|(k, _)| k != key);
                        pairs.push((key.clone(), text));
                    }
                }
            }
            RequestBody::Empty | RequestBody::Binary { .. } => {}
        }
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }
}

/// Replaces the values of `fields` anywhere in a JSON value.
fn redact_fields(value: Value, fields: &[&str]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if fields.contains(&k.as_str()) {
                        (k, Value::String(REDACTED.to_string()))
                    } else {
                        (k, redact_fields(v, fields))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| redact_fields(v, fields))
                .collect(),
        ),
        other => other,
    }
}

/// Decides the outcome of a response a provider answered. Most providers say everything
/// with the status; some answer 200 with an error in the body.
pub type Classify = fn(u16, &HeaderMap, &BoundedBody) -> Outcome;

/// 2xx means the provider accepted the message (`Sent`); otherwise as for webhooks (5xx,
/// 408 and 429 retried, honouring Retry-After; other 4xx final), with the start of the
/// provider's error body in the reason so the log says why.
pub fn classify_by_status(status: u16, headers: &HeaderMap, body: &BoundedBody) -> Outcome {
    let code = reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
    match outcome_for_status(code, headers) {
        Outcome::Delivered => Outcome::Sent,
        Outcome::Retryable {
            reason,
            retry_after_ms,
        } => Outcome::Retryable {
            reason: with_body(reason, body),
            retry_after_ms,
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: with_body(reason, body),
        },
        other => other,
    }
}

fn with_body(reason: String, body: &BoundedBody) -> String {
    let text = body.text.trim();
    if text.is_empty() {
        return reason;
    }
    let mut end = text.len().min(REASON_BODY_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{reason}: {}", &text[..end])
}

/// Joins a configured base URL and an API path: `https://api.example.com` + `/v3/mail`.
/// A base URL with a path prefix (a proxy, a regional gateway) keeps it.
pub fn join_url(base: &str, path: &str) -> Result<Url, OutboundError> {
    let base = base.trim().trim_end_matches('/');
    Url::parse(&format!("{base}{path}")).map_err(|e| OutboundError::InvalidUrl(e.to_string()))
}

/// The one client all provider channels share (one connection pool, one SSRF policy).
#[derive(Debug, Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
    policy: OutboundPolicy,
}

impl ProviderHttp {
    pub fn new(policy: OutboundPolicy, timeout: Duration) -> Result<Self, OutboundError> {
        Ok(Self {
            client: http_client(&policy, timeout)?,
            policy,
        })
    }

    /// A client that speaks only HTTP/2 (APNs).
    pub fn new_http2(policy: OutboundPolicy, timeout: Duration) -> Result<Self, OutboundError> {
        Ok(Self {
            client: http2_client(&policy, timeout)?,
            policy,
        })
    }

    /// Makes one attempt and records it. Base URLs come from operator configuration, but
    /// go through the same guard as webhooks: a loopback base URL only works where private
    /// networks are allowed (local development, tests).
    pub async fn send(
        &self,
        service: &str,
        request: &ProviderRequest,
        classify: Classify,
    ) -> DeliveryAttempt {
        let request_log = request.log_value();
        let attempt = |outcome, response| DeliveryAttempt {
            outcome,
            service_name: service.to_string(),
            request: request_log.clone(),
            response,
        };
        if let Err(e) = check_url(&request.url, &self.policy) {
            let reason = e.to_string();
            return attempt(
                Outcome::Permanent {
                    reason: reason.clone(),
                },
                log::error_value(&reason),
            );
        }
        let headers = match header_map(request) {
            Ok(headers) => headers,
            Err(reason) => {
                return attempt(
                    Outcome::Permanent {
                        reason: reason.clone(),
                    },
                    log::error_value(&reason),
                )
            }
        };
        let (_, body) = request.body.encode();
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .headers(headers);
        if request.body != RequestBody::Empty {
            builder = builder.body(body);
        }
        match builder.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let response_headers = response.headers().clone();
                let body = read_bounded(response).await;
                let outcome = classify(status, &response_headers, &body);
                attempt(
                    outcome,
                    log::response_value(status, &response_headers, &body),
                )
            }
            Err(err) => {
                // The URL is already in the request log, where a secret path is redacted;
                // reqwest would repeat it unredacted in its message.
                let err = err.without_url();
                let detail = error_chain(&err);
                attempt(transport_outcome(&err, &detail), log::error_value(&detail))
            }
        }
    }
}

/// What a channel in sandbox mode records instead of calling its provider: the request
/// it would have made, and `not_sent`.
pub fn sandboxed(service: &str, request: &ProviderRequest) -> DeliveryAttempt {
    DeliveryAttempt {
        outcome: Outcome::NotSent {
            reason: "sandbox mode: the provider was not called".into(),
        },
        service_name: service.to_string(),
        request: request.log_value(),
        response: json!({"sandbox": true}),
    }
}

/// A request that could not be built (bad settings or content): final, logged as such.
pub fn rejected(service: &str, reason: String) -> DeliveryAttempt {
    DeliveryAttempt {
        outcome: Outcome::Permanent {
            reason: reason.clone(),
        },
        service_name: service.to_string(),
        request: json!({}),
        response: log::error_value(&reason),
    }
}

fn header_map(request: &ProviderRequest) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name `{name}`"))?;
        let header_value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header `{name}`"))?;
        headers.append(header_name, header_value);
    }
    if let (Some(ct), false) = (
        request.body.content_type(),
        headers.contains_key(CONTENT_TYPE),
    ) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let value = json!({"api_secret": "x", "nested": [{"api_secret": "y", "to": "z"}]});
        assert_eq!(
            redact_fields(value, &["api_secret"]),
            json!({"api_secret": REDACTED, "nested": [{"api_secret": REDACTED, "to": "z"}]})
        );
    }

    #[test]
    fn base_urls_keep_their_prefix() {
        let url = join_url("http://127.0.0.1:9/proxy/", "/v3/mail/send").expect("url");
        assert_eq!(url.as_str(), "http://127.0.0.1:9/proxy/v3/mail/send");
    }
}
