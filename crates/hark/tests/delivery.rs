//! Email over a real SMTP listener and webhooks to a real HTTP receiver, with retries in
//! virtual time, on SQLite and PostgreSQL.

mod support;

use std::time::Duration;

use hark_channels::testing::{HttpSink, SmtpSink};
use serde_json::{json, Value};
use support::{email_channel, webhook_channel, Backend, TestServer};

on_both_stores!(
    email_goes_to_recipients_with_an_address,
    webhook_is_rendered_and_delivered,
    webhook_retries_with_backoff_until_delivered,
    webhook_permanent_failure_is_final,
    webhook_gives_up_after_eight_attempts,
    ssrf_guard_refuses_private_targets,
);

async fn email_goes_to_recipients_with_an_address(backend: Backend) {
    let smtp = SmtpSink::start().await.expect("smtp sink");
    let s = TestServer::start(backend, vec![email_channel(smtp.port())]).await;
    s.put_workflow(
        "mail",
        json!([{"type": "channel", "ref": "email", "channel_key": "email",
                "template": {"subject": "Hi {{ recipient.name }}", "html_body": "<p>Order {{ data.order }}</p>", "settings": {}}}]),
    )
    .await;
    let (status, _) = s
        .trigger("mail", json!({"recipients": [{"id": "ada", "name": "Ada", "email": "ada@example.com"}, {"id": "nomail", "name": "N"}], "data": {"order": 7}}))
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;
    let received = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, vec!["ada@example.com".to_string()]);
    assert!(
        received[0].data.contains("Subject: Hi Ada"),
        "{}",
        received[0].data
    );
    assert!(received[0].data.contains("Order 7"));
    let messages = s.messages_of("ada").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["status"], "sent");
    let id = messages[0]["id"].as_str().expect("id");
    let (_, content) = s
        .call("GET", &format!("/v1/messages/{id}/content"), None)
        .await;
    assert_eq!(content["data"]["subject_line"], "Hi Ada");
    assert_eq!(content["data"]["text_body"], "Order 7");
    assert_eq!(content["data"]["from"], "hark@example.com");
    assert_eq!(s.delivery_logs(id).await.len(), 1);
    assert!(
        s.messages_of("nomail").await.is_empty(),
        "no email, no message"
    );
    let (_, runs) = s
        .call("GET", "/v1/workflow_recipient_runs?recipient=nomail", None)
        .await;
    let run_id = runs["items"][0]["id"].as_str().expect("run").to_string();
    let (_, run) = s
        .call(
            "GET",
            &format!("/v1/workflow_recipient_runs/{run_id}"),
            None,
        )
        .await;
    assert_eq!(run["events"][0]["event"], "step_skipped");
    assert_eq!(
        run["events"][0]["data"]["reason"],
        "recipient_missing_email"
    );
    // Nothing is sent twice.
    s.clock.advance(3_600_000);
    s.run_engine().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.messages().len(), 1);
}

fn webhook_step(url: &str) -> Value {
    json!([{"type": "channel", "ref": "hook", "channel_key": "webhook",
            "template": {"method": "post", "url": url,
                         "headers": [{"key": "X-Order", "value": "{{ data.order }}"}],
                         "query_params": [{"key": "user", "value": "{{ recipient.id }}"}],
                         "body": "{\"order\": {{ data.order }}, \"user\": \"{{ recipient.id }}\"}"}}])
}

async fn webhook_is_rendered_and_delivered(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![webhook_channel()]).await;
    s.put_workflow("hook", webhook_step(&sink.url("/in"))).await;
    s.trigger(
        "hook",
        json!({"recipients": ["ada"], "data": {"order": 42}}),
    )
    .await;
    s.run_engine().await;
    let requests = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/in");
    assert!(r.query.contains("user=ada"), "{}", r.query);
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-order").as_deref(), Some("42"));
    let body: Value = serde_json::from_str(&r.body).expect("json body");
    assert_eq!(body, json!({"order": 42, "user": "ada"}));
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "delivered");
    assert_eq!(header("idempotency-key").as_deref(), m["id"].as_str());
    let logs = s.delivery_logs(m["id"].as_str().expect("id")).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["response"]["status"], 200);
}

async fn webhook_retries_with_backoff_until_delivered(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(500, vec![], "down".into());
    sink.push_response(
        429,
        vec![("Retry-After".into(), "120".into())],
        "slow down".into(),
    );
    let s = TestServer::start(backend, vec![webhook_channel()]).await;
    s.put_workflow("hook", webhook_step(&sink.url("/in"))).await;
    s.trigger("hook", json!({"recipients": ["ada"], "data": {"order": 1}}))
        .await;
    s.run_engine().await;
    let m = &s.messages_of("ada").await[0];
    let id = m["id"].as_str().expect("id").to_string();
    assert_eq!(m["status"], "delivery_attempted");
    // Not before the first backoff (15 s ± 20 %).
    s.clock.advance(11_000);
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 1);
    s.clock.advance(8_000);
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 2, "second attempt after ~15 s");
    // The 429 asked for 120 s, longer than the 30 s backoff.
    s.clock.advance(100_000);
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 2, "Retry-After honoured");
    s.clock.advance(21_000);
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 3);
    let (_, m) = s.call("GET", &format!("/v1/messages/{id}"), None).await;
    assert_eq!(m["status"], "delivered");
    let logs = s.delivery_logs(&id).await;
    assert_eq!(logs.len(), 3, "every attempt is logged");
    let (_, events) = s
        .call("GET", &format!("/v1/messages/{id}/events"), None)
        .await;
    let types: Vec<&str> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            "message.delivered",
            "message.delivery_attempted",
            "message.delivery_attempted",
            "message.queued"
        ]
    );
}

async fn webhook_permanent_failure_is_final(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(404, vec![], "no".into());
    let s = TestServer::start(backend, vec![webhook_channel()]).await;
    s.put_workflow("hook", webhook_step(&sink.url("/in"))).await;
    s.trigger("hook", json!({"recipients": ["ada"], "data": {"order": 1}}))
        .await;
    s.run_engine().await;
    s.clock.advance(3_600_000);
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 1, "a 404 is not retried");
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "undelivered");
}

async fn webhook_gives_up_after_eight_attempts(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    for _ in 0..10 {
        sink.push_response(503, vec![], "unavailable".into());
    }
    let s = TestServer::start(backend, vec![webhook_channel()]).await;
    s.put_workflow("hook", webhook_step(&sink.url("/in"))).await;
    s.trigger("hook", json!({"recipients": ["ada"], "data": {"order": 1}}))
        .await;
    let mut elapsed = 0;
    for _ in 0..12 {
        s.run_engine().await;
        s.clock.advance(20 * 60_000);
        elapsed += 20;
    }
    assert!(elapsed >= 40);
    assert_eq!(sink.requests().len(), 8);
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "undelivered");
    assert_eq!(
        s.delivery_logs(m["id"].as_str().expect("id")).await.len(),
        8
    );
}

async fn ssrf_guard_refuses_private_targets(backend: Backend) {
    // This server is built without `allow_private_networks`.
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start_with_policy(backend, vec![webhook_channel()], false).await;
    for (i, url) in [
        sink.url("/in"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://[::ffff:127.0.0.1]/x".to_string(),
        "http://2130706433/x".to_string(),
        "http://0.0.0.0/x".to_string(),
        "http://localhost/x".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let key = format!("hook{i}");
        s.put_workflow(&key, webhook_step(url)).await;
        s.trigger(
            &key,
            json!({"recipients": [format!("u{i}")], "data": {"order": 1}}),
        )
        .await;
    }
    s.run_engine().await;
    s.clock.advance(3_600_000);
    s.run_engine().await;
    assert!(
        sink.requests().is_empty(),
        "nothing reached the loopback receiver"
    );
    for i in 0..6 {
        let m = &s.messages_of(&format!("u{i}")).await[0];
        assert_eq!(m["status"], "undelivered", "target {i}");
    }
}
