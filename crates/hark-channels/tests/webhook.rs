//! Webhook delivery against a real HTTP receiver on 127.0.0.1.

use std::time::Duration;

use hark_channels::outbound::OutboundPolicy;
use hark_channels::testing::HttpSink;
use hark_channels::webhook::{WebhookRequest, WebhookSender};
use hark_channels::{Outcome, REDACTED};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(5);

fn sender(allow_private_networks: bool, timeout: Duration) -> WebhookSender {
    WebhookSender::new(
        OutboundPolicy {
            allow_private_networks,
        },
        timeout,
    )
    .expect("client")
}

fn post(url: String) -> WebhookRequest {
    WebhookRequest {
        method: "post".into(),
        url,
        headers: vec![
            ("X-Order".into(), "42".into()),
            ("Authorization".into(), "Bearer s3cret".into()),
        ],
        query_params: vec![
            ("user".into(), "ada lovelace".into()),
            ("n".into(), "1".into()),
        ],
        body: Some(r#"{"order": 42, "user": "ada"}"#.into()),
    }
}

#[tokio::test]
async fn delivered_with_exact_request() {
    let sink = HttpSink::start().await.expect("sink");
    let attempt = sender(true, TIMEOUT)
        .send(&post(sink.url("/in?fixed=yes")), "msg_1")
        .await;
    assert_eq!(attempt.outcome, Outcome::Delivered);
    assert_eq!(attempt.service_name, "webhook");

    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/in");
    assert_eq!(r.query, "fixed=yes&user=ada+lovelace&n=1");
    assert_eq!(r.header("x-order"), Some("42"));
    assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(r.header("idempotency-key"), Some("msg_1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("user-agent"), Some("hark"));
    assert_eq!(r.body, r#"{"order": 42, "user": "ada"}"#);

    // The log: Knock's request/response shapes, with the credential redacted.
    let req = &attempt.request;
    assert_eq!(req["method"], "POST");
    assert_eq!(req["host"], format!("127.0.0.1:{}", sink.port()));
    assert_eq!(req["path"], "/in");
    assert_eq!(req["query"], "fixed=yes&user=ada+lovelace&n=1");
    assert_eq!(req["headers"]["authorization"], REDACTED);
    assert_eq!(req["headers"]["idempotency-key"], "msg_1");
    assert_eq!(req["body"], json!({"order": 42, "user": "ada"}));
    assert!(!attempt.request.to_string().contains("s3cret"));
    assert_eq!(attempt.response["status"], 200);
    assert_eq!(attempt.response["body"], json!({"ok": true}));
    assert_eq!(
        attempt.response["headers"]["content-type"],
        "application/json"
    );
}

#[tokio::test]
async fn template_headers_win_and_plain_bodies_get_no_json_type() {
    let sink = HttpSink::start().await.expect("sink");
    let req = WebhookRequest {
        method: "PuT".into(),
        url: sink.url("/t"),
        headers: vec![
            ("Content-Type".into(), "application/vnd.api+json".into()),
            ("Idempotency-Key".into(), "custom".into()),
        ],
        query_params: vec![],
        body: Some("{}".into()),
    };
    let attempt = sender(true, TIMEOUT).send(&req, "msg_2").await;
    assert_eq!(attempt.outcome, Outcome::Delivered);
    let plain = WebhookRequest {
        method: "delete".into(),
        url: sink.url("/p"),
        body: Some("not json".into()),
        ..WebhookRequest::default()
    };
    let attempt = sender(true, TIMEOUT).send(&plain, "msg_3").await;
    assert_eq!(attempt.outcome, Outcome::Delivered);
    assert_eq!(attempt.request["body"], "not json");

    let requests = sink.requests();
    assert_eq!(requests[0].method, "PUT");
    assert_eq!(
        requests[0].header("content-type"),
        Some("application/vnd.api+json")
    );
    assert_eq!(requests[0].header("idempotency-key"), Some("custom"));
    assert_eq!(requests[1].method, "DELETE");
    assert_eq!(requests[1].header("content-type"), None);
    assert_eq!(requests[1].header("idempotency-key"), Some("msg_3"));
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(500, vec![], "down".into());
    let attempt = sender(true, TIMEOUT)
        .send(&post(sink.url("/in")), "m")
        .await;
    assert!(
        matches!(
            attempt.outcome,
            Outcome::Retryable {
                retry_after_ms: None,
                ..
            }
        ),
        "{:?}",
        attempt.outcome
    );
    assert_eq!(attempt.response["status"], 500);
    assert_eq!(attempt.response["body"], "down");
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(429, vec![("Retry-After".into(), "7".into())], "slow".into());
    let attempt = sender(true, TIMEOUT)
        .send(&post(sink.url("/in")), "m")
        .await;
    match attempt.outcome {
        Outcome::Retryable { retry_after_ms, .. } => assert_eq!(retry_after_ms, Some(7000)),
        other => panic!("expected retryable, got {other:?}"),
    }
    assert_eq!(attempt.response["headers"]["retry-after"], "7");
}

#[tokio::test]
async fn client_errors_are_permanent() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(404, vec![], "no".into());
    let attempt = sender(true, TIMEOUT)
        .send(&post(sink.url("/in")), "m")
        .await;
    assert!(
        matches!(attempt.outcome, Outcome::Permanent { .. }),
        "{:?}",
        attempt.outcome
    );
    assert_eq!(attempt.response["status"], 404);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        302,
        vec![("Location".into(), sink.url("/elsewhere"))],
        String::new(),
    );
    let attempt = sender(true, TIMEOUT)
        .send(&post(sink.url("/in")), "m")
        .await;
    match &attempt.outcome {
        Outcome::Permanent { reason } => assert!(reason.contains("302"), "{reason}"),
        other => panic!("expected permanent, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/in");
}

#[tokio::test]
async fn loopback_refused_without_allow_private_networks() {
    let sink = HttpSink::start().await.expect("sink");
    let guarded = sender(false, TIMEOUT);
    let port = sink.port();
    for url in [
        sink.url("/in"),
        format!("http://[::ffff:127.0.0.1]:{port}/in"),
        format!("http://2130706433:{port}/in"),
    ] {
        let attempt = guarded.send(&post(url.clone()), "m").await;
        match &attempt.outcome {
            Outcome::Permanent { reason } => {
                assert!(reason.contains("refusing"), "{url}: {reason}")
            }
            other => panic!("{url}: expected permanent, got {other:?}"),
        }
        assert_eq!(attempt.request["headers"]["authorization"], REDACTED);
    }
    assert!(sink.requests().is_empty());
}

#[tokio::test]
async fn hostname_resolving_to_loopback_is_refused_by_the_resolver() {
    let sink = HttpSink::start().await.expect("sink");
    let url = format!("http://localhost:{}/in", sink.port());
    let attempt = sender(false, TIMEOUT).send(&post(url.clone()), "m").await;
    match &attempt.outcome {
        Outcome::Permanent { reason } => {
            assert!(
                reason.contains("refusing") && reason.contains("localhost"),
                "{reason}"
            )
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    assert!(attempt.response["error"].is_string());
    assert!(sink.requests().is_empty());
    // The same name is fine when private networks are allowed.
    let allowed = sender(true, TIMEOUT).send(&post(url), "m").await;
    assert_eq!(allowed.outcome, Outcome::Delivered);
    assert_eq!(sink.requests().len(), 1);
}

#[tokio::test]
async fn slow_receiver_times_out_as_retryable() {
    let sink = HttpSink::start().await.expect("sink");
    sink.set_delay(Duration::from_secs(3));
    let attempt = sender(true, Duration::from_millis(300))
        .send(&post(sink.url("/slow")), "m")
        .await;
    match &attempt.outcome {
        Outcome::Retryable { reason, .. } => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected retryable, got {other:?}"),
    }
    assert!(attempt.response["error"].is_string());
    assert_eq!(sink.requests().len(), 1);
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let sink = HttpSink::start().await.expect("sink");
    let url = sink.url("/gone");
    drop(sink);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let attempt = sender(true, TIMEOUT).send(&post(url), "m").await;
    assert!(
        matches!(attempt.outcome, Outcome::Retryable { .. }),
        "{:?}",
        attempt.outcome
    );
}

#[tokio::test]
async fn bad_requests_are_permanent_without_sending() {
    let sink = HttpSink::start().await.expect("sink");
    let s = sender(true, TIMEOUT);
    let cases = [
        WebhookRequest {
            method: "TRACE".into(),
            url: sink.url("/x"),
            ..Default::default()
        },
        WebhookRequest {
            method: "get".into(),
            url: "not a url".into(),
            ..Default::default()
        },
        WebhookRequest {
            method: "get".into(),
            url: "ftp://127.0.0.1/x".into(),
            ..Default::default()
        },
        WebhookRequest {
            method: "get".into(),
            url: sink.url("/x"),
            headers: vec![("Bad Header".into(), "v".into())],
            ..Default::default()
        },
    ];
    for req in &cases {
        let attempt = s.send(req, "m").await;
        assert!(
            matches!(attempt.outcome, Outcome::Permanent { .. }),
            "{req:?}: {:?}",
            attempt.outcome
        );
    }
    assert!(sink.requests().is_empty());
}

#[tokio::test]
async fn large_response_bodies_are_bounded_in_the_log() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(200, vec![], "x".repeat(300 * 1024));
    let attempt = sender(true, TIMEOUT)
        .send(&post(sink.url("/big")), "m")
        .await;
    assert_eq!(attempt.outcome, Outcome::Delivered);
    let logged = attempt.response["body"].as_str().expect("string body");
    assert_eq!(logged.len(), 64 * 1024);
}
