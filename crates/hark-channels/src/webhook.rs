//! The http (webhook) channel: one templated request per message.

mod classify;
mod fetch;
pub(crate) mod log;

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;
use url::Url;

pub use classify::{outcome_for_status, parse_retry_after};
pub use fetch::{FetchAttempt, FetchResult, FETCH_BODY_LIMIT};

use crate::outbound::{
    check_url, error_chain, find_outbound_error, http_client, read_bounded, OutboundError,
    OutboundPolicy,
};
use crate::{DeliveryAttempt, Outcome};

const SERVICE_NAME: &str = "webhook";
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A rendered webhook step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookRequest {
    /// get, post, put, delete or patch, in any case.
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Appended to any query the URL already has.
    pub query_params: Vec<(String, String)>,
    pub body: Option<String>,
}

/// Sends webhooks through one shared, SSRF-guarded client (one connection pool).
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    policy: OutboundPolicy,
}

/// A request that could not be built, already carrying what to log.
struct Rejected {
    reason: String,
    request: Value,
}

impl WebhookSender {
    pub fn new(policy: OutboundPolicy, timeout: Duration) -> Result<Self, OutboundError> {
        Ok(Self {
            client: http_client(&policy, timeout)?,
            policy,
        })
    }

    /// Makes one attempt. `idempotency_key` (the message id) is sent as `Idempotency-Key`
    /// so a receiver can recognise the repeat when a crash makes us send twice.
    pub async fn send(&self, req: &WebhookRequest, idempotency_key: &str) -> DeliveryAttempt {
        let (method, url, headers, request_log) = match self.prepare(req, idempotency_key) {
            Ok(prepared) => prepared,
            Err(rejected) => {
                return attempt(
                    Outcome::Permanent {
                        reason: rejected.reason.clone(),
                    },
                    rejected.request,
                    log::error_value(&rejected.reason),
                );
            }
        };
        let mut builder = self.client.request(method, url).headers(headers);
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        match builder.send().await {
            Ok(response) => {
                let status = response.status();
                let response_headers = response.headers().clone();
                let outcome = outcome_for_status(status, &response_headers);
                let body = read_bounded(response).await;
                let response_log = log::response_value(status.as_u16(), &response_headers, &body);
                attempt(outcome, request_log, response_log)
            }
            Err(err) => {
                let detail = error_chain(&err);
                let outcome = transport_outcome(&err, &detail);
                attempt(outcome, request_log, log::error_value(&detail))
            }
        }
    }

    fn prepare(
        &self,
        req: &WebhookRequest,
        idempotency_key: &str,
    ) -> Result<(Method, Url, HeaderMap, Value), Rejected> {
        let method_name = req.method.trim().to_ascii_uppercase();
        let unparsed = |reason: String| Rejected {
            request: log::unparsed_request_value(&method_name, &req.url, req.body.as_deref()),
            reason,
        };
        let method = match method_name.as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            "PATCH" => Method::PATCH,
            _ => {
                return Err(unparsed(format!(
                    "unsupported HTTP method `{}`",
                    req.method
                )))
            }
        };
        let mut url = Url::parse(req.url.trim())
            .map_err(|e| unparsed(OutboundError::InvalidUrl(e.to_string()).to_string()))?;
        if !req.query_params.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(req.query_params.iter().map(|(k, v)| (k, v)));
        }
        let headers = build_headers(req, idempotency_key);
        let request_log = |headers: &HeaderMap| {
            log::request_value(
                &method_name,
                &url,
                log::header_map_value(headers),
                req.body.as_deref(),
            )
        };
        let headers = match headers {
            Ok(headers) => headers,
            Err(reason) => {
                return Err(Rejected {
                    request: request_log(&HeaderMap::new()),
                    reason,
                })
            }
        };
        if let Err(e) = check_url(&url, &self.policy) {
            return Err(Rejected {
                request: request_log(&headers),
                reason: e.to_string(),
            });
        }
        let logged = request_log(&headers);
        Ok((method, url, headers, logged))
    }
}

/// The template's headers, then the ones we add unless the template already set them:
/// a JSON content type for a JSON body, and the idempotency key. A template-set
/// Idempotency-Key wins because it is just as stable across retries and the author
/// asked for it.
fn build_headers(req: &WebhookRequest, idempotency_key: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &req.headers {
        let header_name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("invalid header name `{name}`"))?;
        let header_value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("invalid value for header `{name}`"))?;
        headers.append(header_name, header_value);
    }
    let is_json = req
        .body
        .as_deref()
        .is_some_and(|b| serde_json::from_str::<Value>(b).is_ok());
    if is_json && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if !headers.contains_key(IDEMPOTENCY_KEY) {
        let value = HeaderValue::from_str(idempotency_key)
            .map_err(|_| "message id is not a valid header value".to_string())?;
        headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), value);
    }
    Ok(headers)
}

/// A request that got no response. The guard refusing a resolved address is final;
/// everything else (refused connection, DNS failure, timeout, reset) may pass.
pub(crate) fn transport_outcome(err: &reqwest::Error, detail: &str) -> Outcome {
    if let Some(outbound) = find_outbound_error(err) {
        if outbound.is_refusal() {
            return Outcome::Permanent {
                reason: outbound.to_string(),
            };
        }
    }
    let reason = if err.is_timeout() {
        format!("timed out: {detail}")
    } else {
        detail.to_string()
    };
    Outcome::Retryable {
        reason,
        retry_after_ms: None,
    }
}

fn attempt(outcome: Outcome, request: Value, response: Value) -> DeliveryAttempt {
    DeliveryAttempt {
        outcome,
        service_name: SERVICE_NAME.to_string(),
        request,
        response,
    }
}
