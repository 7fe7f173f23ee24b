//! Email layouts: Management API routes, and email steps wrapped in the layout their
//! template settings name, delivered to a real SMTP listener, on SQLite and PostgreSQL.

mod support;

use std::time::Duration;

use hark_channels::testing::SmtpSink;
use serde_json::{json, Value};
use support::{email_channel, Backend, TestServer};

on_both_stores!(
    layouts_are_created_read_and_listed,
    bad_layouts_are_refused,
    email_is_wrapped_in_its_layout,
    unknown_layout_fails_the_step,
    template_variables_reach_the_layout,
    missing_default_layout_sends_the_body_unwrapped,
);

fn layout(name: &str) -> Value {
    json!({"email_layout": {
        "name": name,
        "html_layout": "<html><body><main>{{ content }}</main><footer>{% for link in footer_links %}<a href='{{ link.url }}'>{{ link.text }}</a>{% endfor %} for {{ recipient.name }}</footer></body></html>",
        "text_layout": "{{ content }}\n--\nSent to {{ recipient.name }}",
        "footer_links": [{"text": "Unsubscribe", "url": "https://example.com/u"}],
    }})
}

async fn put_layout(s: &TestServer, key: &str, body: Value) -> (u16, Value) {
    s.mgmt(
        "PUT",
        &format!("/v1/email_layouts/{key}?environment=development&commit=true"),
        Some(body),
    )
    .await
}

async fn layouts_are_created_read_and_listed(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, body) = put_layout(&s, "transactional", layout("Transactional")).await;
    assert_eq!(status, 200, "{body}");
    let created = &body["email_layout"];
    assert_eq!(created["key"], "transactional");
    assert_eq!(created["name"], "Transactional");
    assert_eq!(created["environment"], "development");
    assert_eq!(created["footer_links"][0]["text"], "Unsubscribe");
    assert!(created["created_at"].is_string());
    // An update replaces the content and keeps the key.
    let (status, body) = put_layout(&s, "transactional", layout("Renamed")).await;
    assert_eq!(status, 200, "{body}");
    put_layout(&s, "alerts", layout("Alerts")).await;

    let (status, got) = s
        .mgmt(
            "GET",
            "/v1/email_layouts/transactional?environment=development",
            None,
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["name"], "Renamed");
    assert!(got["html_layout"]
        .as_str()
        .is_some_and(|h| h.contains("{{ content }}")));

    let (status, page) = s
        .mgmt(
            "GET",
            "/v1/email_layouts?environment=development&limit=1",
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["entries"][0]["key"], "alerts");
    let after = page["page_info"]["after"].as_str().expect("next page");
    let (_, next) = s
        .mgmt(
            "GET",
            &format!("/v1/email_layouts?environment=development&after={after}"),
            None,
        )
        .await;
    assert_eq!(next["entries"][0]["key"], "transactional");
    assert_eq!(next["page_info"]["after"], Value::Null);

    let (status, missing) = s
        .mgmt(
            "GET",
            "/v1/email_layouts/nope?environment=development",
            None,
        )
        .await;
    assert_eq!(status, 404, "{missing}");
}

async fn bad_layouts_are_refused(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, body) = put_layout(
        &s,
        "broken",
        json!({"email_layout": {"name": "Broken", "text_layout": "{{ content }}", "footer_links": [{"text": "x"}]}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "invalid_params");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert!(fields.contains(&"email_layout.html_layout"), "{body}");
    assert!(
        fields.contains(&"email_layout.footer_links[0].url"),
        "{body}"
    );
    let (status, body) = put_layout(
        &s,
        "broken",
        json!({"email_layout": {"name": "No content", "html_layout": "<html>{{ contents }}</html>", "text_layout": "plain"}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        vec!["email_layout.html_layout", "email_layout.text_layout"],
        "{body}"
    );
    // Validation answers like an upsert and stores nothing.
    let (status, body) = s
        .mgmt(
            "PUT",
            "/v1/email_layouts/checked/validate?environment=development",
            Some(layout("Checked")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email_layout"]["key"], "checked");
    let (status, body) = s
        .mgmt(
            "PUT",
            "/v1/email_layouts/checked/validate?environment=development",
            Some(json!({"email_layout": {"name": "x", "html_layout": "no content", "text_layout": ""}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = s
        .mgmt(
            "GET",
            "/v1/email_layouts/checked?environment=development",
            None,
        )
        .await;
    assert_eq!(status, 404, "validation stores nothing");
    let (status, _) = put_layout(&s, "broken", json!({"name": "no wrapper"})).await;
    assert_eq!(status, 422);
    let (status, _) = s
        .mgmt(
            "GET",
            "/v1/email_layouts/broken?environment=development",
            None,
        )
        .await;
    assert_eq!(status, 404, "nothing was stored");
}

fn email_step(layout_key: &str) -> Value {
    json!([{"type": "channel", "ref": "email", "channel_key": "email",
            "template": {"subject": "Order {{ data.order }}",
                         "html_body": "<p>Order {{ data.order }} shipped</p>",
                         "text_body": "Order {{ data.order }} shipped",
                         "settings": {"layout_key": layout_key}}}])
}

async fn email_is_wrapped_in_its_layout(backend: Backend) {
    let smtp = SmtpSink::start().await.expect("smtp sink");
    let s = TestServer::start(backend, vec![email_channel(smtp.port())]).await;
    let (status, body) = put_layout(&s, "default", layout("Default")).await;
    assert_eq!(status, 200, "{body}");
    s.put_workflow("mail", email_step("default")).await;
    let (status, _) = s
        .trigger(
            "mail",
            json!({"recipients": [{"id": "ada", "name": "Ada", "email": "ada@example.com"}], "data": {"order": 7}}),
        )
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;
    let received = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1);
    let data = &received[0].data;
    assert!(data.contains("Sent to Ada"), "{data}");
    assert!(
        data.contains("<main><p>Order 7 shipped</p></main>"),
        "{data}"
    );
    assert!(data.contains("Unsubscribe"), "{data}");

    let messages = s.messages_of("ada").await;
    assert_eq!(messages[0]["status"], "sent");
    let id = messages[0]["id"].as_str().expect("id");
    let (_, content) = s
        .call("GET", &format!("/v1/messages/{id}/content"), None)
        .await;
    assert_eq!(
        content["data"]["html_body"],
        "<html><body><main><p>Order 7 shipped</p></main><footer><a href='https://example.com/u'>Unsubscribe</a> for Ada</footer></body></html>"
    );
    assert_eq!(
        content["data"]["text_body"],
        "Order 7 shipped\n--\nSent to Ada"
    );
}

async fn unknown_layout_fails_the_step(backend: Backend) {
    let smtp = SmtpSink::start().await.expect("smtp sink");
    let s = TestServer::start(backend, vec![email_channel(smtp.port())]).await;
    s.put_workflow("mail", email_step("missing")).await;
    let (status, _) = s
        .trigger(
            "mail",
            json!({"recipients": [{"id": "ada", "name": "Ada", "email": "ada@example.com"}], "data": {"order": 7}}),
        )
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;
    let events = s.recipient_events("ada").await;
    let failed = events
        .iter()
        .find(|e| e["event"] == "message_render_failed")
        .unwrap_or_else(|| panic!("no render failure in {events:?}"));
    assert_eq!(
        failed["data"]["error"],
        "email layout `missing` does not exist"
    );
    assert!(s.messages_of("ada").await.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(smtp.messages().is_empty());
}

async fn trigger_order(s: &TestServer) {
    let (status, _) = s
        .trigger(
            "mail",
            json!({"recipients": [{"id": "ada", "name": "Ada", "email": "ada@example.com"}], "data": {"order": 7}}),
        )
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;
}

async fn email_content(s: &TestServer) -> Value {
    let messages = s.messages_of("ada").await;
    let id = messages[0]["id"].as_str().expect("message id");
    let (_, content) = s
        .call("GET", &format!("/v1/messages/{id}/content"), None)
        .await;
    content["data"].clone()
}

/// Knock compiles the template into the layout: what the template assigns is visible
/// after `{{ content }}`, and `pre_content` sets variables for the part above it.
async fn template_variables_reach_the_layout(backend: Backend) {
    let smtp = SmtpSink::start().await.expect("smtp sink");
    let s = TestServer::start(backend, vec![email_channel(smtp.port())]).await;
    let (status, body) = put_layout(
        &s,
        "branded",
        json!({"email_layout": {
            "name": "Branded",
            "html_layout": "<h1>{{ heading }}</h1>{{ content }}<i>{{ total }}</i>",
            "text_layout": "{{ heading }}: {{ content }} ({{ total }})",
        }}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    s.put_workflow(
        "mail",
        json!([{"type": "channel", "ref": "email", "channel_key": "email",
                "template": {"subject": "Order",
                             "html_body": "{% assign total = data.order | times: 2 %}<p>Order {{ data.order }}</p>",
                             "text_body": "{% assign total = data.order | times: 3 %}Order {{ data.order }}",
                             "settings": {"layout_key": "branded", "pre_content": "{% assign heading = 'Receipt' %}"}}}]),
    )
    .await;
    trigger_order(&s).await;
    let content = email_content(&s).await;
    assert_eq!(
        content["html_body"],
        "<h1>Receipt</h1><p>Order 7</p><i>14</i>"
    );
    assert_eq!(content["text_body"], "Receipt: Order 7 (21)");
}

async fn missing_default_layout_sends_the_body_unwrapped(backend: Backend) {
    let smtp = SmtpSink::start().await.expect("smtp sink");
    let s = TestServer::start(backend, vec![email_channel(smtp.port())]).await;
    s.put_workflow("mail", email_step("default")).await;
    trigger_order(&s).await;
    let received = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1);
    let content = email_content(&s).await;
    assert_eq!(content["html_body"], "<p>Order 7 shipped</p>");
    assert_eq!(content["text_body"], "Order 7 shipped");
}
