//! What the provider tests share: a loopback sink per provider and the failure cases
//! every provider must classify the same way.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use hark_channels::outbound::OutboundPolicy;
use hark_channels::provider::ProviderHttp;
use hark_channels::testing::HttpSink;
use hark_channels::{DeliveryAttempt, Outcome, REDACTED};

pub const TIMEOUT: Duration = Duration::from_secs(2);

pub fn http(allow_private_networks: bool) -> ProviderHttp {
    ProviderHttp::new(
        OutboundPolicy {
            allow_private_networks,
        },
        TIMEOUT,
    )
    .expect("client")
}

pub fn json_header() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

/// Asserts that no secret appears anywhere in the attempt's log.
pub fn assert_redacted(attempt: &DeliveryAttempt, secrets: &[&str]) {
    let logged = format!("{} {}", attempt.request, attempt.response);
    for secret in secrets {
        assert!(!logged.contains(secret), "`{secret}` leaked into {logged}");
    }
}

/// Runs the failure cases against a fresh sink each: the provider's documented validation
/// error (`validation`: status and body), 401, 429 with Retry-After, 503 and a receiver
/// that never answers in time. `send` makes one attempt against the sink's base URL.
pub async fn failure_cases<F, Fut>(validation: (u16, &str), secrets: &[&str], send: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = DeliveryAttempt>,
{
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(validation.0, json_header(), validation.1.to_string());
    let attempt = send(sink.url("")).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Permanent { reason } if reason.contains(&validation.0.to_string())),
        "validation error: {:?}",
        attempt.outcome
    );
    assert_eq!(attempt.response["status"], validation.0);
    assert_redacted(&attempt, secrets);

    sink.push_response(401, json_header(), r#"{"error":"unauthorized"}"#.into());
    let attempt = send(sink.url("")).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Permanent { reason } if reason.contains("401")),
        "401: {:?}",
        attempt.outcome
    );
    assert_redacted(&attempt, secrets);

    sink.push_response(
        429,
        vec![("Retry-After".into(), "30".into())],
        "slow down".into(),
    );
    let attempt = send(sink.url("")).await;
    assert_eq!(
        attempt.outcome,
        Outcome::Retryable {
            reason: "HTTP 429 Too Many Requests: slow down".into(),
            retry_after_ms: Some(30_000)
        }
    );

    sink.push_response(503, vec![], "".into());
    let attempt = send(sink.url("")).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Retryable { reason, retry_after_ms: None } if reason.contains("503")),
        "503: {:?}",
        attempt.outcome
    );
    assert_redacted(&attempt, secrets);
    assert_eq!(sink.requests().len(), 4);

    sink.set_delay(Duration::from_secs(4));
    let attempt = send(sink.url("")).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Retryable { reason, .. } if reason.contains("timed out")),
        "timeout: {:?}",
        attempt.outcome
    );
    assert!(attempt.response["error"].is_string());
    assert_redacted(&attempt, secrets);
}

/// The request header `name`, which must be present.
pub fn header<'a>(request: &'a hark_channels::testing::ReceivedRequest, name: &str) -> &'a str {
    request
        .header(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", request.headers))
}

pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub fn form(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

pub const REDACTED_VALUE: &str = REDACTED;
