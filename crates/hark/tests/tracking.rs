//! Link and open tracking end to end, on SQLite and PostgreSQL: messages delivered to a
//! loopback provider carry tracking URLs, and following them over HTTP records the click
//! or open on the message.

mod support;

use hark_channels::testing::HttpSink;
use hark_engine::tracking::{TokenKind, TrackedLink, TRACKING_SECRET_NAME};
use hark_engine::ChannelConfig;
use serde_json::{json, Value};
use support::{Backend, TestServer, START_MS};

on_both_stores!(
    email_links_and_opens_are_tracked,
    tracking_is_off_by_default_and_steps_override_it,
    sms_links_are_tracked,
    link_clicks_satisfy_step_conditions,
    valid_tokens_for_unknown_messages_still_work,
    in_app_feed_links_are_tracked,
    chat_links_are_tracked,
);

const HOUR: i64 = 3_600_000;

fn channel(key: &str, channel_type: &str, provider: &str, settings: Value) -> ChannelConfig {
    serde_json::from_value(json!({
        "key": key, "type": channel_type, "provider": provider, "settings": settings,
    }))
    .expect("channel config")
}

/// A Postmark channel sending to `sink`, with extra settings merged in.
fn postmark(key: &str, sink: &HttpSink, extra: Value) -> ChannelConfig {
    let mut settings =
        json!({"server_token": "pm", "base_url": sink.url(""), "from_address": "shop@example.com"});
    if let (Some(map), Value::Object(extra)) = (settings.as_object_mut(), extra) {
        map.extend(extra);
    }
    channel(key, "email", "postmark", settings)
}

const HTML: &str =
    "<html><body><p><a href=\"https://shop.example/orders/7?ref=mail&amp;x=1\">Order</a> \
     <a href='https://shop.example/privacy' data-knock-no-track>Privacy</a> \
     <a href=\"http://plain.example/\">Plain</a></p></body></html>";

fn email_step(reference: &str, channel_key: &str, settings: Value) -> Value {
    json!({"type": "channel", "ref": reference, "channel_key": channel_key,
           "template": {"subject": "Your order", "html_body": HTML,
                        "text_body": "Order: https://shop.example/orders/7 Privacy: https://shop.example/privacy",
                        "settings": settings}})
}

/// Every tracking URL of `kind` (`c` or `o`) on this server found in `text`.
fn tracking_urls(s: &TestServer, text: &str, kind: &str) -> Vec<String> {
    let prefix = format!("{}/v1/t/{kind}/", s.base);
    text.match_indices(&prefix)
        .map(|(at, _)| {
            let token: String = text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            // A sentence's full stop after the URL is not part of the token.
            format!("{prefix}{}", token.trim_end_matches('.'))
        })
        .collect()
}

/// The JSON body of the last request the sink received.
fn last_body(sink: &HttpSink) -> Value {
    let requests = sink.requests();
    let last = requests.last().expect("a provider request");
    serde_json::from_str(&last.body).expect("json body")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn event_types(s: &TestServer, id: &str) -> Vec<String> {
    let (status, events) = s
        .call("GET", &format!("/v1/messages/{id}/events"), None)
        .await;
    assert_eq!(status, 200, "{events}");
    events["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|e| e["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn email_links_and_opens_are_tracked(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let tracked = postmark(
        "email",
        &sink,
        json!({"link_tracking": true, "open_tracking": true}),
    );
    let s = TestServer::start(backend, vec![tracked]).await;
    s.put_workflow("mail", json!([email_step("mail", "email", json!({}))]))
        .await;
    let (status, _) = s
        .trigger(
            "mail",
            json!({"recipients": [{"id": "ada", "email": "ada@example.com"}]}),
        )
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;
    let body = last_body(&sink);
    let html = body["HtmlBody"].as_str().expect("html");
    let text = body["TextBody"].as_str().expect("text");

    let clicks = tracking_urls(&s, html, "c");
    assert_eq!(clicks.len(), 1, "only the https link is wrapped: {html}");
    assert!(html.contains(&format!("<a href=\"{}\">Order</a>", clicks[0])));
    assert!(
        html.contains("<a href='https://shop.example/privacy'>Privacy</a>"),
        "{html}"
    );
    assert!(!html.contains("data-knock-no-track"));
    assert!(html.contains("<a href=\"http://plain.example/\">Plain</a>"));
    let opens = tracking_urls(&s, html, "o");
    assert_eq!(opens.len(), 1, "{html}");
    assert!(html.ends_with(&format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:none\"></body></html>",
        opens[0]
    )));
    let text_clicks = tracking_urls(&s, text, "c");
    assert_eq!(text_clicks.len(), 1, "{text}");
    assert!(
        text.ends_with("Privacy: https://shop.example/privacy"),
        "{text}"
    );

    let m = &s.messages_of("ada").await[0];
    let id = m["id"].as_str().expect("id").to_string();
    assert_eq!(m["link_clicked_at"], Value::Null);

    // A tampered token changes nothing, and neither does a click token used as a pixel.
    let http = no_redirects();
    let mut tampered = clicks[0].clone();
    let at = tampered.rfind('/').expect("slash") + 3;
    let flipped = if &tampered[at..=at] == "A" { "B" } else { "A" };
    tampered.replace_range(at..=at, flipped);
    let events_before = event_types(&s, &id).await;
    for url in [
        tampered,
        clicks[0].replace("/v1/t/c/", "/v1/t/o/"),
        format!("{}/v1/t/c/garbage", s.base),
    ] {
        let resp = http.get(&url).send().await.expect("request");
        assert_eq!(resp.status(), 404, "{url}");
        let error: Value = resp.json().await.expect("json");
        assert_eq!(error["code"], "resource_missing");
        assert_eq!(error["status"], 404);
    }
    assert_eq!(event_types(&s, &id).await, events_before);

    // The click redirects to the original target and is recorded, every time.
    for _ in 0..2 {
        let resp = http.get(&clicks[0]).send().await.expect("click");
        assert_eq!(resp.status(), 302);
        assert_eq!(
            resp.headers().get("location").and_then(|v| v.to_str().ok()),
            Some("https://shop.example/orders/7?ref=mail&x=1")
        );
    }
    let resp = http.get(&text_clicks[0]).send().await.expect("text click");
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("https://shop.example/orders/7")
    );
    let (_, m) = s.call("GET", &format!("/v1/messages/{id}"), None).await;
    assert!(m["link_clicked_at"].is_string(), "{m}");
    assert!(m["engagement_statuses"]
        .as_array()
        .is_some_and(|e| e.contains(&json!("link_clicked"))));
    assert_eq!(m["read_at"], Value::Null);
    let clicked = event_types(&s, &id).await;
    assert_eq!(
        clicked
            .iter()
            .filter(|t| *t == "message.link_clicked")
            .count(),
        3,
        "{clicked:?}"
    );

    // Loading the pixel marks the message read and answers with a PNG nobody caches.
    let resp = http.get(&opens[0]).send().await.expect("pixel");
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(header("content-type").as_deref(), Some("image/png"));
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    let png = resp.bytes().await.expect("bytes");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(&png[16..24], &[0, 0, 0, 1, 0, 0, 0, 1], "1x1");
    let (_, m) = s.call("GET", &format!("/v1/messages/{id}"), None).await;
    assert!(m["read_at"].is_string(), "{m}");
    assert!(event_types(&s, &id)
        .await
        .contains(&"message.read".to_string()));
}

async fn tracking_is_off_by_default_and_steps_override_it(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let plain = postmark("email", &sink, json!({}));
    let tracked = postmark(
        "tracked",
        &sink,
        json!({"link_tracking": true, "open_tracking": true}),
    );
    let s = TestServer::start(backend, vec![plain, tracked]).await;
    s.put_workflow("plain", json!([email_step("mail", "email", json!({}))]))
        .await;
    s.put_workflow(
        "opt-in",
        json!([email_step("mail", "email", json!({"link_tracking": true}))]),
    )
    .await;
    s.put_workflow(
        "opt-out",
        json!([email_step(
            "mail",
            "tracked",
            json!({"link_tracking": false, "open_tracking": false})
        )]),
    )
    .await;
    let recipient = json!({"recipients": [{"id": "ada", "email": "ada@example.com"}]});

    for workflow in ["plain", "opt-out"] {
        s.trigger(workflow, recipient.clone()).await;
        s.run_engine().await;
        let body = last_body(&sink);
        assert_eq!(body["HtmlBody"], HTML, "{workflow}: sent as written");
        assert_eq!(
            body["TextBody"],
            "Order: https://shop.example/orders/7 Privacy: https://shop.example/privacy"
        );
    }

    s.trigger("opt-in", recipient).await;
    s.run_engine().await;
    let body = last_body(&sink);
    let html = body["HtmlBody"].as_str().expect("html");
    assert_eq!(tracking_urls(&s, html, "c").len(), 1, "{html}");
    assert!(
        tracking_urls(&s, html, "o").is_empty(),
        "open tracking stays off: {html}"
    );
    assert_eq!(sink.requests().len(), 3);
}

async fn sms_links_are_tracked(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let twilio = channel(
        "sms",
        "sms",
        "twilio",
        json!({"account_sid": "AC1", "auth_token": "tw", "from_number": "+15555550100",
               "base_url": sink.url(""), "link_tracking": true}),
    );
    let s = TestServer::start(backend, vec![twilio]).await;
    s.put_workflow(
        "ship",
        json!([{"type": "channel", "ref": "sms", "channel_key": "sms",
                "template": {"text_body": "Track it at https://ship.example/t/{{ data.n }}. Or http://old.example"}}]),
    )
    .await;
    s.trigger(
        "ship",
        json!({"recipients": [{"id": "ada", "phone_number": "+15555550123"}], "data": {"n": 9}}),
    )
    .await;
    s.run_engine().await;
    let requests = sink.requests();
    assert_eq!(requests.len(), 1);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(requests[0].body.as_bytes())
        .into_owned()
        .collect();
    let body = form
        .iter()
        .find(|(k, _)| k == "Body")
        .map(|(_, v)| v.clone())
        .expect("Body");
    let clicks = tracking_urls(&s, &body, "c");
    assert_eq!(clicks.len(), 1, "{body}");
    assert_eq!(
        body,
        format!("Track it at {}. Or http://old.example", clicks[0])
    );
    let resp = no_redirects().get(&clicks[0]).send().await.expect("click");
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("https://ship.example/t/9")
    );
    let m = &s.messages_of("ada").await[0];
    assert!(m["link_clicked_at"].is_string(), "{m}");
}

async fn link_clicks_satisfy_step_conditions(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let tracked = postmark("email", &sink, json!({"link_tracking": true}));
    let s = TestServer::start(backend, vec![tracked]).await;
    s.put_workflow(
        "follow-up",
        json!([
            email_step("mail", "email", json!({})),
            {"type": "delay", "ref": "wait", "settings": {"delay_for": {"unit": "hours", "value": 1}}},
            {"type": "channel", "ref": "thanks", "channel_key": "in-app-feed",
             "conditions": {"all": [{"variable": "refs.mail.engagement_status", "operator": "contains",
                                     "argument": "$message.link_clicked"}]},
             "template": {"markdown_body": "Thanks for looking"}}
        ]),
    )
    .await;
    s.trigger(
        "follow-up",
        json!({"recipients": [{"id": "clicker", "email": "c@example.com"},
                              {"id": "ignorer", "email": "i@example.com"}]}),
    )
    .await;
    s.run_engine().await;
    let to_clicker = sink
        .requests()
        .into_iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).expect("json"))
        .find(|b| b["To"] == "c@example.com")
        .expect("clicker's email");
    let clicks = tracking_urls(&s, to_clicker["HtmlBody"].as_str().unwrap_or_default(), "c");
    let resp = no_redirects().get(&clicks[0]).send().await.expect("click");
    assert_eq!(resp.status(), 302);
    s.advance(HOUR).await;
    assert_eq!(s.feed_texts("clicker").await, vec!["Thanks for looking"]);
    assert!(s.feed_texts("ignorer").await.is_empty());
}

async fn valid_tokens_for_unknown_messages_still_work(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    // The key is created once: a second start (another node) reads the same one.
    let secret = s
        .store
        .server_secret(TRACKING_SECRET_NAME, "another candidate", START_MS)
        .await
        .expect("secret");
    assert_ne!(secret, "another candidate");
    let tracking = s.engine.tracking().expect("tracking").clone();
    let link = |target: Option<&str>| TrackedLink {
        message_id: hark_core::new_id(),
        environment_id: "nowhere".into(),
        target: target.map(str::to_string),
    };
    let http = no_redirects();
    let click = tracking.url(TokenKind::Click, &link(Some("https://example.com/x")));
    let resp = http.get(&click).send().await.expect("click");
    assert_eq!(resp.status(), 302, "the recipient's link keeps working");
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("https://example.com/x")
    );
    let open = tracking.url(TokenKind::Open, &link(None));
    let resp = http.get(&open).send().await.expect("open");
    assert_eq!(resp.status(), 200);
    // A key of another server's database is refused.
    let foreign = hark_engine::tracking::Tracking::new(
        &s.base,
        hark_engine::tracking::TrackingKey::new(b"someone else's key"),
    );
    let forged = foreign.url(TokenKind::Click, &link(Some("https://evil.example")));
    let resp = http.get(&forged).send().await.expect("forged");
    assert_eq!(resp.status(), 404);
}

async fn in_app_feed_links_are_tracked(backend: Backend) {
    // The built-in feed channel has tracking off; the step turns link tracking on.
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "feed",
        json!([{"type": "channel", "ref": "feed", "channel_key": "in-app-feed",
                "template": {"markdown_body": "See [your order](https://app.example/o/1) or http://plain.example",
                             "action_url": "https://app.example/o/1",
                             "settings": {"link_tracking": true}}}]),
    )
    .await;
    s.trigger("feed", json!({"recipients": ["ada"]})).await;
    s.run_engine().await;
    let feed = s.feed("ada", "").await;
    let item = &feed["entries"][0];
    let markdown = item["blocks"][0]["content"].as_str().unwrap_or_default();
    let clicks = tracking_urls(&s, markdown, "c");
    assert_eq!(clicks.len(), 1, "{markdown}");
    assert_eq!(
        markdown,
        format!("See [your order]({}) or http://plain.example", clicks[0])
    );
    let html = item["blocks"][0]["rendered"].as_str().unwrap_or_default();
    assert!(html.contains(&format!("href=\"{}\"", clicks[0])), "{html}");
    let resp = no_redirects().get(&clicks[0]).send().await.expect("click");
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("https://app.example/o/1")
    );
    let m = &s.messages_of("ada").await[0];
    assert!(m["link_clicked_at"].is_string(), "{m}");
}

async fn chat_links_are_tracked(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let slack = channel(
        "slack",
        "chat",
        "slack",
        json!({"base_url": sink.url(""), "link_tracking": true}),
    );
    let s = TestServer::start(backend, vec![slack]).await;
    let blocks = json!({"blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "See <https://status.example/1|details>"},
         "accessory": {"type": "image", "image_url": "https://status.example/logo.png", "alt_text": "logo"}},
        {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"},
                                          "url": "https://status.example/1"}]}
    ]});
    s.put_workflow(
        "alert",
        json!([{"type": "channel", "ref": "chat", "channel_key": "slack",
                "template": {"markdown_body": "Open [the alert](https://status.example/1)",
                             "json_body": blocks.to_string()}}]),
    )
    .await;
    let (status, _) = s
        .call(
            "PUT",
            "/v1/users/ada/channel_data/slack",
            Some(json!({"data": {"connections": [{"access_token": "xoxb", "channel_id": "C1"}]}})),
        )
        .await;
    assert_eq!(status, 200);
    sink.push_response(200, vec![], json!({"ok": true, "ts": "1.2"}).to_string());
    s.trigger("alert", json!({"recipients": ["ada"]})).await;
    s.run_engine().await;
    let body = last_body(&sink);
    let text = body["text"].as_str().unwrap_or_default();
    let clicks = tracking_urls(&s, text, "c");
    assert_eq!(text, format!("Open [the alert]({})", clicks[0]));
    let mrkdwn = body["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(mrkdwn, format!("See <{}|details>", clicks[0]));
    assert_eq!(body["blocks"][1]["elements"][0]["url"], clicks[0].as_str());
    assert_eq!(
        body["blocks"][0]["accessory"]["image_url"], "https://status.example/logo.png",
        "images are loaded, not clicked"
    );
    let resp = no_redirects().get(&clicks[0]).send().await.expect("click");
    assert_eq!(resp.status(), 302);
    let m = &s.messages_of("ada").await[0];
    assert!(m["link_clicked_at"].is_string(), "{m}");
}
