//! Per-environment channel settings (`[channels.environments.<slug>]`): a run uses its
//! environment's settings merged over the channel's, on SQLite and PostgreSQL.

mod support;

use hark_channels::testing::HttpSink;
use hark_engine::ChannelConfig;
use hark_store::{hash_secret, KeyKind};
use serde_json::{json, Value};
use support::{Backend, TestServer, START_MS};

on_both_stores!(runs_use_their_environments_settings);

const TWILIO_PATH: &str = "/2010-04-01/Accounts/AC1/Messages.json";

fn channel(
    key: &str,
    channel_type: &str,
    provider: &str,
    settings: Value,
    environments: Value,
) -> ChannelConfig {
    serde_json::from_value(json!({
        "key": key, "type": channel_type, "provider": provider, "settings": settings,
        "environments": environments,
    }))
    .expect("channel config")
}

fn steps() -> Value {
    json!([
        {"type": "channel", "ref": "sms", "channel_key": "sms",
         "template": {"text_body": "Hello {{ recipient.id }}"}},
        {"type": "channel", "ref": "email", "channel_key": "email",
         "template": {"subject": "Hi", "html_body": "<p><a href=\"https://shop.example/\">Shop</a></p>"}}
    ])
}

/// The `From` of each SMS the sink received, in order.
fn sms_senders(sink: &HttpSink) -> Vec<String> {
    sink.requests()
        .iter()
        .filter(|r| r.path == TWILIO_PATH)
        .filter_map(|r| {
            url::form_urlencoded::parse(r.body.as_bytes())
                .into_owned()
                .find(|(k, _)| k == "From")
                .map(|(_, v)| v)
        })
        .collect()
}

async fn runs_use_their_environments_settings(backend: Backend) {
    let production_sink = HttpSink::start().await.expect("sink");
    let development_sink = HttpSink::start().await.expect("sink");
    let sms = channel(
        "sms",
        "sms",
        "twilio",
        json!({"account_sid": "AC1", "auth_token": "tw", "from_number": "+15555550100",
               "base_url": production_sink.url("")}),
        json!({"development": {"base_url": development_sink.url(""), "from_number": "+15555550111"}}),
    );
    let email = channel(
        "email",
        "email",
        "postmark",
        json!({"server_token": "pm", "base_url": production_sink.url(""), "from_address": "shop@example.com"}),
        json!({"development": {"sandbox": true}, "production": {"link_tracking": true}}),
    );
    let s = TestServer::start(backend, vec![sms, email]).await;
    let production = s.env_id("production").await;
    let production_key = "sk_test_production_environment";
    s.store
        .create_api_key(
            &production,
            KeyKind::Secret,
            &hash_secret(production_key),
            START_MS,
        )
        .await
        .expect("key");
    for environment in ["development", "production"] {
        let (status, body) = s
            .mgmt(
                "PUT",
                &format!("/v1/workflows/hello?environment={environment}&commit=true"),
                Some(json!({"workflow": {"name": "hello", "steps": steps()}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let recipient = |id: &str| json!({"recipients": [{"id": id, "email": format!("{id}@example.com"), "phone_number": "+15555550123"}]});
    let (status, _) = s.trigger("hello", recipient("dev")).await;
    assert_eq!(status, 200);
    let (status, body) = s
        .call_with(
            "POST",
            "/v1/workflows/hello/trigger",
            Some(recipient("prod")),
            production_key,
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.run_engine().await;

    // SMS: development goes to its own base URL with its own sender.
    assert_eq!(sms_senders(&development_sink), vec!["+15555550111"]);
    assert_eq!(sms_senders(&production_sink), vec!["+15555550100"]);
    // Email: development is sandboxed, production is sent with link tracking.
    let emails: Vec<Value> = production_sink
        .requests()
        .iter()
        .filter(|r| r.path == "/email")
        .map(|r| serde_json::from_str(&r.body).expect("json"))
        .collect();
    assert_eq!(
        emails.len(),
        1,
        "only production's email reaches the provider"
    );
    assert_eq!(emails[0]["To"], "prod@example.com");
    let html = emails[0]["HtmlBody"].as_str().unwrap_or_default();
    assert!(html.contains(&format!("{}/v1/t/c/", s.base)), "{html}");
    assert!(development_sink
        .requests()
        .iter()
        .all(|r| r.path != "/email"));

    let dev_email = s
        .messages_of("dev")
        .await
        .into_iter()
        .find(|m| m["channel"]["key"] == "email")
        .expect("development email message");
    assert_eq!(dev_email["status"], "not_sent");
    let (status, prod_messages) = s
        .call_with("GET", "/v1/users/prod/messages", None, production_key, &[])
        .await;
    assert_eq!(status, 200, "{prod_messages}");
    let prod_email = prod_messages["items"]
        .as_array()
        .and_then(|items| items.iter().find(|m| m["channel"]["key"] == "email"))
        .expect("production email message");
    assert_eq!(prod_email["status"], "sent");

    // The Management API shows each environment's sandbox and tracking switches.
    let (status, channel) = s.mgmt("GET", "/v1/channels/email", None).await;
    assert_eq!(status, 200, "{channel}");
    let settings = &channel["environment_settings"];
    assert_eq!(settings["development"]["is_sandbox"], true);
    assert_eq!(
        settings["development"]["provider_settings"]["link_tracking"],
        false
    );
    assert_eq!(settings["production"]["is_sandbox"], false);
    assert_eq!(
        settings["production"]["provider_settings"],
        json!({"link_tracking": true, "open_tracking": false})
    );
    assert!(!channel.to_string().contains("\"pm\""), "no credentials");
    let (status, sms) = s.mgmt("GET", "/v1/channels/sms", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        sms["environment_settings"]["development"]["is_sandbox"],
        false
    );
}
