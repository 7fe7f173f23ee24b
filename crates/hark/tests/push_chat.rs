//! Push and chat channels end to end: channel data through the API, a trigger, the
//! engine in virtual time, loopback servers answering like Expo and Slack, and the
//! messages, their content and delivery logs read back, on SQLite and PostgreSQL.

mod support;

use hark_channels::testing::HttpSink;
use hark_engine::registry::channel_id_for_key;
use hark_engine::ChannelConfig;
use serde_json::{json, Value};
use support::{Backend, TestServer};

on_both_stores!(
    channel_data_round_trip_and_validation,
    push_goes_to_every_token_and_drops_dead_ones,
    every_push_request_has_its_own_delivery_log,
    token_deregistration_can_be_turned_off,
    slack_step_posts_to_the_connection,
    sandbox_push_is_not_sent,
    missing_channel_data_skips_the_step,
    push_outage_is_retried,
    silent_push_with_overrides,
    teams_and_discord_are_wired,
);

fn channel(key: &str, channel_type: &str, provider: &str, settings: Value) -> ChannelConfig {
    serde_json::from_value(json!({
        "key": key, "type": channel_type, "provider": provider, "settings": settings,
    }))
    .expect("channel config")
}

fn expo(sink: &HttpSink, extra: Value) -> ChannelConfig {
    let mut settings = json!({"base_url": sink.url(""), "access_token": "expo-secret"});
    support_merge(&mut settings, extra);
    channel("expo", "push", "expo", settings)
}

fn support_merge(target: &mut Value, extra: Value) {
    if let (Value::Object(t), Value::Object(e)) = (target, extra) {
        t.extend(e);
    }
}

fn push_step() -> Value {
    json!([{"type": "channel", "ref": "push", "channel_key": "expo",
    "template": {
        "title": "Order {{ data.order }}",
        "text_body": "Hi {{ recipient.name }}, it shipped.",
    }}])
}

async fn put_data(s: &TestServer, user: &str, channel: &str, data: Value) -> (u16, Value) {
    s.call(
        "PUT",
        &format!("/v1/users/{user}/channel_data/{channel}"),
        Some(json!({ "data": data })),
    )
    .await
}

async fn get_data(s: &TestServer, user: &str, channel: &str) -> (u16, Value) {
    s.call(
        "GET",
        &format!("/v1/users/{user}/channel_data/{channel}"),
        None,
    )
    .await
}

async fn channel_data_round_trip_and_validation(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let slack = channel("slack", "chat", "slack", json!({"base_url": sink.url("")}));
    let onesignal = channel(
        "onesignal",
        "push",
        "onesignal",
        json!({"app_id": "app", "api_key": "k"}),
    );
    let s = TestServer::start(backend, vec![expo(&sink, json!({})), slack, onesignal]).await;
    let expo_id = channel_id_for_key("expo");

    // By key, answered with the channel's id.
    let (status, body) = put_data(&s, "ada", "expo", json!({"tokens": ["t1", "t2"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"__typename": "ChannelData", "channel_id": expo_id, "provider": "push_expo",
               "data": {"tokens": ["t1", "t2"]}})
    );
    // By id.
    let (status, body) = get_data(&s, "ada", &expo_id).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["tokens"], json!(["t1", "t2"]));

    let (status, body) = put_data(
        &s,
        "ada",
        "expo",
        json!({"devices": [{"token": "d1", "locale": "en-US"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"tokens": [], "devices": [{"token": "d1", "locale": "en-US", "timezone": null}]})
    );

    // Bad input names the field and changes nothing.
    for (channel, data, field) in [
        ("expo", json!({"tokens": ["ok", 5]}), "data.tokens[1]"),
        ("expo", json!({}), "data.tokens"),
        (
            "expo",
            json!({"devices": [{"locale": "en"}]}),
            "data.devices[0].token",
        ),
        ("onesignal", json!({"tokens": ["x"]}), "data.player_ids"),
        ("slack", json!({"tokens": ["x"]}), "data.connections"),
        (
            "slack",
            json!({"connections": [{"user_id": ""}]}),
            "data.connections[0]",
        ),
    ] {
        let (status, body) = put_data(&s, "ada", channel, data).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], "invalid_params", "{body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    let (status, body) = s
        .call(
            "PUT",
            "/v1/users/ada/channel_data/expo",
            Some(json!({"tokens": ["t"]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "data");
    assert_eq!(
        get_data(&s, "ada", "expo").await.1["data"]["devices"][0]["token"],
        "d1"
    );

    let (status, body) = put_data(
        &s,
        "ada",
        "slack",
        json!({"connections": [{"incoming_webhook": {"url": "https://hooks.slack.com/x"}}, {"access_token": "xoxb-1", "channel_id": "C1"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put_data(&s, "ada", "onesignal", json!({"player_ids": ["p1"]})).await;
    assert_eq!(status, 200, "{body}");

    // Unknown channel and absent data.
    let (status, body) = put_data(&s, "ada", "nope", json!({"tokens": []})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "resource_missing");
    assert_eq!(get_data(&s, "bob", "expo").await.0, 404);
    assert_eq!(get_data(&s, "ada", "nope").await.0, 404);

    let (status, _) = s
        .call("DELETE", "/v1/users/ada/channel_data/expo", None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(get_data(&s, "ada", "expo").await.0, 404);
    assert_eq!(get_data(&s, "ada", "slack").await.0, 200);
}

fn expo_tickets(tickets: Value) -> (u16, Vec<(String, String)>, String) {
    (200, vec![], json!({"data": [tickets]}).to_string())
}

async fn push_goes_to_every_token_and_drops_dead_ones(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![expo(&sink, json!({}))]).await;
    s.put_workflow("ship", push_step()).await;
    put_data(
        &s,
        "ada",
        "expo",
        json!({"tokens": ["ExponentPushToken[a]", "ExponentPushToken[b]"]}),
    )
    .await;
    let (status, body, text) = expo_tickets(json!({"status": "ok", "id": "tk1"}));
    sink.push_response(status, body, text);
    let (status, body, text) = expo_tickets(json!({
        "status": "error", "message": "not registered",
        "details": {"error": "DeviceNotRegistered"},
    }));
    sink.push_response(status, body, text);

    let (status, _) = s
        .trigger(
            "ship",
            json!({"recipients": [{"id": "ada", "name": "Ada"}], "data": {"order": 7}}),
        )
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;

    let requests = sink.requests();
    assert_eq!(requests.len(), 2, "one request per token");
    let m = &s.messages_of("ada").await[0];
    let id = m["id"].as_str().expect("id");
    for (r, token) in requests
        .iter()
        .zip(["ExponentPushToken[a]", "ExponentPushToken[b]"])
    {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/--/api/v2/push/send");
        assert_eq!(r.header("authorization"), Some("Bearer expo-secret"));
        let body: Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(
            body,
            json!([{"to": token, "title": "Order 7", "body": "Hi Ada, it shipped.",
                    "data": {"order": 7, "knock_message_id": id}}])
        );
    }
    // One token was accepted: the message is sent, and the dead one is gone.
    assert_eq!(m["status"], "sent");
    assert_eq!(
        get_data(&s, "ada", "expo").await.1["data"]["tokens"],
        json!(["ExponentPushToken[a]"])
    );

    let (_, content) = s
        .call("GET", &format!("/v1/messages/{id}/content"), None)
        .await;
    let data = &content["data"];
    assert_eq!(data["__typename"], "MessagePushContent");
    assert_eq!(data["title"], "Order 7");
    assert_eq!(data["body"], "Hi Ada, it shipped.");
    assert_eq!(data["token"], "ExponentPushToken[a]");
    assert_eq!(data["data"], json!({"order": 7}));

    let logs = s.delivery_logs(id).await;
    assert_eq!(logs.len(), 2, "one delivery log per token");
    for log in &logs {
        assert_eq!(log["service_name"], "expo");
        assert_eq!(log["request"]["headers"]["Authorization"], "[REDACTED]");
        assert!(!log.to_string().contains("expo-secret"));
    }
}

/// Three tokens, three provider requests, three delivery logs: each with its own request
/// (the token it went to) and its own response, secrets redacted.
async fn every_push_request_has_its_own_delivery_log(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![expo(&sink, json!({}))]).await;
    s.put_workflow("ship", push_step()).await;
    let tokens = [
        "ExponentPushToken[a]",
        "ExponentPushToken[b]",
        "ExponentPushToken[c]",
    ];
    put_data(&s, "ada", "expo", json!({ "tokens": tokens })).await;
    let (status, body, text) = expo_tickets(json!({"status": "ok", "id": "ticket-a"}));
    sink.push_response(status, body, text);
    sink.push_response(503, vec![], "upstream unavailable".into());
    let (status, body, text) = expo_tickets(json!({"status": "ok", "id": "ticket-c"}));
    sink.push_response(status, body, text);
    s.trigger(
        "ship",
        json!({"recipients": [{"id": "ada", "name": "Ada"}], "data": {"order": 3}}),
    )
    .await;
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 3);
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "sent", "two of three tokens took it");
    let logs = s.delivery_logs(m["id"].as_str().expect("id")).await;
    assert_eq!(logs.len(), 3, "{logs:#?}");
    let mut by_token: Vec<(String, Value)> = logs
        .iter()
        .map(|log| {
            let token = log["request"]["body"][0]["to"]
                .as_str()
                .expect("the token of this request")
                .to_string();
            (token, log["response"]["status"].clone())
        })
        .collect();
    by_token.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_token,
        vec![
            (tokens[0].to_string(), json!(200)),
            (tokens[1].to_string(), json!(503)),
            (tokens[2].to_string(), json!(200)),
        ]
    );
    for log in &logs {
        assert_eq!(log["service_name"], "expo");
        assert_eq!(log["request"]["headers"]["Authorization"], "[REDACTED]");
        assert!(!log.to_string().contains("expo-secret"));
    }
}

async fn token_deregistration_can_be_turned_off(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let config = expo(&sink, json!({"token_deregistration": false}));
    let s = TestServer::start(backend, vec![config]).await;
    s.put_workflow("ship", push_step()).await;
    put_data(&s, "ada", "expo", json!({"tokens": ["dead"]})).await;
    let (status, body, text) = expo_tickets(json!({
        "status": "error", "message": "gone", "details": {"error": "DeviceNotRegistered"},
    }));
    sink.push_response(status, body, text);
    s.trigger(
        "ship",
        json!({"recipients": [{"id": "ada"}], "data": {"order": 1}}),
    )
    .await;
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 1);
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "undelivered", "a final provider error");
    assert_eq!(
        get_data(&s, "ada", "expo").await.1["data"]["tokens"],
        json!(["dead"])
    );
}

async fn slack_step_posts_to_the_connection(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let slack = channel("slack", "chat", "slack", json!({"base_url": sink.url("")}));
    let s = TestServer::start(backend, vec![slack]).await;
    s.put_workflow(
        "alert",
        json!([{"type": "channel", "ref": "chat", "channel_key": "slack",
            "template": {
                "markdown_body": "*{{ data.what }}* is down",
                "json_body": "{\"blocks\": [{\"type\": \"section\", \"text\": {\"type\": \"mrkdwn\", \"text\": \"{{ data.what }}\"}}]}",
            }}]),
    )
    .await;
    put_data(
        &s,
        "ada",
        "slack",
        json!({"connections": [{"access_token": "xoxb-secret", "channel_id": "C42"}]}),
    )
    .await;
    sink.push_response(200, vec![], json!({"ok": true, "ts": "1.2"}).to_string());
    s.trigger(
        "alert",
        json!({"recipients": [{"id": "ada"}], "data": {"what": "API"}}),
    )
    .await;
    s.run_engine().await;

    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/api/chat.postMessage");
    assert_eq!(r.header("authorization"), Some("Bearer xoxb-secret"));
    let body: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(
        body,
        json!({"channel": "C42", "text": "*API* is down",
               "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "API"}}]})
    );
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "sent");
    let id = m["id"].as_str().expect("id");
    let (_, content) = s
        .call("GET", &format!("/v1/messages/{id}/content"), None)
        .await;
    let data = &content["data"];
    assert_eq!(data["__typename"], "MessageChatContent");
    assert_eq!(data["connection"]["channel_id"], "C42");
    assert_eq!(data["connection"]["access_token"], "[REDACTED]");
    assert_eq!(data["template"]["summary"], "*API* is down");
    assert_eq!(data["template"]["blocks"][0]["content"], "*API* is down");
    assert_eq!(
        data["template"]["json_content"]["blocks"][0]["text"]["text"],
        "API"
    );
    let logs = s.delivery_logs(id).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["service_name"], "slack");
    assert_eq!(logs[0]["request"]["path"], "/api/chat.postMessage");
    assert!(!logs[0].to_string().contains("xoxb-secret"));
}

async fn sandbox_push_is_not_sent(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![expo(&sink, json!({"sandbox": true}))]).await;
    s.put_workflow("ship", push_step()).await;
    put_data(&s, "ada", "expo", json!({"tokens": ["a"]})).await;
    s.trigger(
        "ship",
        json!({"recipients": [{"id": "ada"}], "data": {"order": 1}}),
    )
    .await;
    s.run_engine().await;
    assert!(sink.requests().is_empty());
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "not_sent");
    let logs = s.delivery_logs(m["id"].as_str().expect("id")).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["request"]["path"], "/--/api/v2/push/send");
    assert_eq!(logs[0]["response"]["sandbox"], true);
}

async fn missing_channel_data_skips_the_step(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![expo(&sink, json!({}))]).await;
    s.put_workflow("ship", push_step()).await;
    s.trigger(
        "ship",
        json!({"recipients": [{"id": "ada"}], "data": {"order": 1}}),
    )
    .await;
    s.run_engine().await;
    assert!(sink.requests().is_empty());
    assert!(s.messages_of("ada").await.is_empty());
    let events = s.recipient_events("ada").await;
    assert!(
        events.iter().any(|e| e["event"] == "step_skipped"
            && e["data"]["reason"] == "recipient_missing_channel_data"),
        "{events:?}"
    );
}

async fn push_outage_is_retried(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let s = TestServer::start(backend, vec![expo(&sink, json!({}))]).await;
    s.put_workflow("ship", push_step()).await;
    put_data(&s, "ada", "expo", json!({"tokens": ["a"]})).await;
    sink.push_response(503, vec![], "busy".into());
    let (status, body, text) = expo_tickets(json!({"status": "ok", "id": "tk1"}));
    sink.push_response(status, body, text);
    s.trigger(
        "ship",
        json!({"recipients": [{"id": "ada"}], "data": {"order": 1}}),
    )
    .await;
    s.run_engine().await;
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "delivery_attempted");
    s.clock.advance(3_600_000);
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 2);
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "sent");
    assert_eq!(
        s.delivery_logs(m["id"].as_str().expect("id")).await.len(),
        2
    );
    assert_eq!(
        get_data(&s, "ada", "expo").await.1["data"]["tokens"],
        json!(["a"]),
        "an outage is not a dead token"
    );
}

async fn silent_push_with_overrides(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let config = expo(&sink, json!({"payload_overrides": {"priority": "normal"}}));
    let s = TestServer::start(backend, vec![config]).await;
    s.put_workflow(
        "sync",
        json!([{"type": "channel", "ref": "push", "channel_key": "expo",
            "template": {
                "text_body": "unused",
                "data": "{\"kind\": \"{{ data.kind }}\"}",
                "settings": {"delivery_type": "silent", "payload_overrides": "{\"priority\": \"high\"}"},
            }}]),
    )
    .await;
    put_data(&s, "ada", "expo", json!({"devices": [{"token": "d1"}]})).await;
    let (status, body, text) = expo_tickets(json!({"status": "ok"}));
    sink.push_response(status, body, text);
    s.trigger(
        "sync",
        json!({"recipients": [{"id": "ada"}], "data": {"kind": "inbox"}}),
    )
    .await;
    s.run_engine().await;
    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "sent");
    let body: Value = serde_json::from_str(&requests[0].body).expect("json");
    assert_eq!(
        body,
        json!([{"to": "d1", "_contentAvailable": true, "priority": "high",
                "data": {"kind": "inbox", "knock_message_id": m["id"]}}]),
        "no visible content; the step's overrides replace the channel's"
    );
}

async fn teams_and_discord_are_wired(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let teams = channel("teams", "chat", "ms_teams", json!({}));
    let discord = channel(
        "discord",
        "chat",
        "discord",
        json!({"base_url": sink.url(""), "bot_token": "bot-secret"}),
    );
    let quiet = channel("quiet", "chat", "slack", json!({"sandbox": true}));
    let s = TestServer::start(backend, vec![teams, discord, quiet]).await;
    let step = |r: &str, key: &str| {
        json!({"type": "channel", "ref": r, "channel_key": key,
               "template": {"markdown_body": "Hello **{{ data.name }}**"}})
    };
    s.put_workflow(
        "hello",
        json!([step("t", "teams"), step("d", "discord"), step("q", "quiet")]),
    )
    .await;
    let hook = sink.url("/webhookb2/hook-secret");
    put_data(
        &s,
        "ada",
        "teams",
        json!({"connections": [{"incoming_webhook": {"url": hook}}]}),
    )
    .await;
    put_data(
        &s,
        "ada",
        "discord",
        json!({"connections": [{"channel_id": "123456"}]}),
    )
    .await;
    put_data(
        &s,
        "ada",
        "quiet",
        json!({"connections": [{"incoming_webhook": {"url": "https://hooks.slack.com/x"}}]}),
    )
    .await;
    s.trigger(
        "hello",
        json!({"recipients": [{"id": "ada"}], "data": {"name": "Ada"}}),
    )
    .await;
    s.run_engine().await;

    let requests = sink.requests();
    assert_eq!(requests.len(), 2, "the sandboxed channel calls nobody");
    let teams = requests
        .iter()
        .find(|r| r.path == "/webhookb2/hook-secret")
        .expect("teams request");
    let card: Value = serde_json::from_str(&teams.body).expect("json");
    assert_eq!(
        card["attachments"][0]["content"]["body"][0]["text"],
        "Hello **Ada**"
    );
    let discord = requests
        .iter()
        .find(|r| r.path == "/api/v10/channels/123456/messages")
        .expect("discord request");
    assert_eq!(discord.header("authorization"), Some("Bot bot-secret"));
    let body: Value = serde_json::from_str(&discord.body).expect("json");
    assert_eq!(body, json!({"content": "Hello **Ada**"}));

    let messages = s.messages_of("ada").await;
    assert_eq!(messages.len(), 3);
    for m in &messages {
        let expected = if m["channel_id"] == channel_id_for_key("quiet") {
            "not_sent"
        } else {
            "sent"
        };
        assert_eq!(m["status"], expected, "{m}");
        let logs = s.delivery_logs(m["id"].as_str().expect("id")).await;
        assert!(!logs[0].to_string().contains("secret"), "{logs:?}");
    }
}
