//! The fetch function: a templated request whose JSON answer feeds later steps. It
//! shares the webhook's request building and SSRF guard, but classifies responses the way
//! Knock's fetch step does and returns the decoded body.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{log, transport_outcome, WebhookRequest, WebhookSender};
use crate::outbound::{error_chain, BoundedBody};
use crate::Outcome;

/// The largest response body a fetch step accepts; larger answers fail the step rather
/// than bloat the run's data.
pub const FETCH_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum FetchResult {
    /// 200, 201 or 204; the decoded JSON object, or `None` for an empty body.
    Data(Option<serde_json::Map<String, Value>>),
    /// 5xx or a timeout: worth another attempt.
    Retryable(String),
    /// Anything else: the step fails.
    Fatal(String),
}

#[derive(Debug, Clone)]
pub struct FetchAttempt {
    pub result: FetchResult,
    /// Delivery-log shaped request and response, secrets redacted.
    pub request: Value,
    pub response: Value,
    pub duration_ms: i64,
}

impl WebhookSender {
    /// Makes one fetch request with `timeout`. `idempotency_key` is sent as
    /// `Idempotency-Key` so a retried fetch can be recognised.
    pub async fn fetch(
        &self,
        req: &WebhookRequest,
        idempotency_key: &str,
        timeout: Duration,
    ) -> FetchAttempt {
        let started = Instant::now();
        let (method, url, headers, request_log) = match self.prepare(req, idempotency_key) {
            Ok(prepared) => prepared,
            Err(rejected) => {
                return FetchAttempt {
                    result: FetchResult::Fatal(rejected.reason.clone()),
                    request: rejected.request,
                    response: log::error_value(&rejected.reason),
                    duration_ms: 0,
                }
            }
        };
        let mut builder = self
            .client
            .request(method, url)
            .headers(headers)
            .timeout(timeout);
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let (result, response_log) = match builder.send().await {
            Ok(response) => {
                let status = response.status();
                let response_headers = response.headers().clone();
                let (body, too_large) = read_limited(response).await;
                let logged = BoundedBody {
                    text: body
                        .chars()
                        .take(crate::outbound::LOGGED_BODY_LIMIT)
                        .collect(),
                    truncated: too_large || body.len() > crate::outbound::LOGGED_BODY_LIMIT,
                };
                let response_log = log::response_value(status.as_u16(), &response_headers, &logged);
                let result = match status.as_u16() {
                    200 | 201 | 204 if too_large => FetchResult::Fatal(format!(
                        "the response is larger than {FETCH_BODY_LIMIT} bytes"
                    )),
                    200 | 201 | 204 => decode(&body),
                    500..=599 => FetchResult::Retryable(format!("server error {status}")),
                    _ => FetchResult::Fatal(format!("unexpected status {status}")),
                };
                (result, response_log)
            }
            Err(err) => {
                let detail = error_chain(&err);
                let result = match transport_outcome(&err, &detail) {
                    Outcome::Retryable { reason, .. } if err.is_timeout() => {
                        FetchResult::Retryable(reason)
                    }
                    Outcome::Retryable { reason, .. } | Outcome::Permanent { reason } => {
                        FetchResult::Fatal(reason)
                    }
                    Outcome::Delivered | Outcome::Sent | Outcome::NotSent { .. } => {
                        FetchResult::Fatal(detail.clone())
                    }
                };
                (result, log::error_value(&detail))
            }
        };
        FetchAttempt {
            result,
            request: request_log,
            response: response_log,
            duration_ms: started.elapsed().as_millis() as i64,
        }
    }
}

fn decode(body: &str) -> FetchResult {
    if body.trim().is_empty() {
        return FetchResult::Data(None);
    }
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => FetchResult::Data(Some(map)),
        Ok(_) => FetchResult::Fatal("the response is JSON but not an object".into()),
        Err(e) => FetchResult::Fatal(format!("the response is not JSON: {e}")),
    }
}

/// The body as text, and whether it exceeded the limit (then the rest is not read).
async fn read_limited(mut response: reqwest::Response) -> (String, bool) {
    let mut kept: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if kept.len() + chunk.len() > FETCH_BODY_LIMIT {
            return (String::from_utf8_lossy(&kept).into_owned(), true);
        }
        kept.extend_from_slice(&chunk);
    }
    (String::from_utf8_lossy(&kept).into_owned(), false)
}
