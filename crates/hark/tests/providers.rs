//! Email and SMS provider channels end to end: a trigger, the engine in virtual time, a
//! loopback server answering like the provider, and the message, its status and its
//! redacted delivery log read back through the API, on SQLite and PostgreSQL.

mod support;

use std::time::Duration;

use hark_channels::testing::{HttpSink, SmtpSink};
use hark_engine::ChannelConfig;
use serde_json::{json, Value};
use support::{email_channel, Backend, TestServer};

on_both_stores!(
    email_provider_delivers_with_step_overrides,
    smtp_applies_step_overrides,
    every_email_provider_is_wired,
    provider_rate_limit_is_retried_after_the_asked_delay,
    sandbox_channel_records_not_sent,
    channel_timeout_is_its_own,
    sms_goes_to_the_recipient_phone_number,
    every_sms_provider_is_wired,
);

fn channel(key: &str, channel_type: &str, provider: &str, settings: Value) -> ChannelConfig {
    serde_json::from_value(json!({
        "key": key, "type": channel_type, "provider": provider, "settings": settings,
    }))
    .expect("channel config")
}

fn email_step() -> Value {
    json!([{"type": "channel", "ref": "email", "channel_key": "email",
    "template": {
        "subject": "Order {{ data.order }}",
        "html_body": "<p>Hi {{ recipient.name }}, order <b>{{ data.order }}</b> shipped.</p>",
        "settings": {
            "from_name": "{{ data.shop }}",
            "cc_address": "{{ data.cc }}",
            "reply_to_address": "support@example.com",
            "json_overrides": "{\"categories\": [\"{{ data.shop }}\"]}",
        }}}])
}

async fn email_provider_delivers_with_step_overrides(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let sendgrid = channel(
        "email",
        "email",
        "sendgrid",
        json!({"api_key": "SG.secret", "base_url": sink.url(""), "from_address": "shop@example.com"}),
    );
    let s = TestServer::start(backend, vec![sendgrid]).await;
    s.put_workflow("mail", email_step()).await;
    let (status, _) = s
        .trigger(
            "mail",
            json!({"recipients": [{"id": "ada", "name": "Ada", "email": "ada@example.com"}, {"id": "nomail"}],
                   "data": {"order": 7, "shop": "Shop", "cc": "ops@example.com, audit@example.com"}}),
        )
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;
    let requests = sink.requests();
    assert_eq!(requests.len(), 1, "one email: the other recipient has none");
    let r = &requests[0];
    assert_eq!(r.path, "/v3/mail/send");
    assert_eq!(r.header("authorization"), Some("Bearer SG.secret"));
    let body: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(
        body["from"],
        json!({"email": "shop@example.com", "name": "Shop"})
    );
    assert_eq!(
        body["personalizations"],
        json!([{"to": [{"email": "ada@example.com"}],
                "cc": [{"email": "ops@example.com"}, {"email": "audit@example.com"}]}])
    );
    assert_eq!(body["reply_to"], json!({"email": "support@example.com"}));
    assert_eq!(body["subject"], "Order 7");
    assert_eq!(
        body["categories"],
        json!(["Shop"]),
        "the step's JSON overrides"
    );
    // No text_body in the template: it is generated from the HTML.
    assert_eq!(
        body["content"][0],
        json!({"type": "text/plain", "value": "Hi Ada, order 7 shipped."})
    );

    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "sent");
    let id = m["id"].as_str().expect("id");
    assert_eq!(body["custom_args"]["hark_message_id"], id);
    let (_, content) = s
        .call("GET", &format!("/v1/messages/{id}/content"), None)
        .await;
    assert_eq!(content["data"]["cc"], "ops@example.com, audit@example.com");
    assert_eq!(content["data"]["reply_to"], "support@example.com");
    let logs = s.delivery_logs(id).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["service_name"], "sendgrid");
    assert_eq!(logs[0]["request"]["path"], "/v3/mail/send");
    assert_eq!(logs[0]["request"]["headers"]["Authorization"], "[REDACTED]");
    assert_eq!(logs[0]["response"]["status"], 200);
    assert!(!logs[0].to_string().contains("SG.secret"));

    assert!(s.messages_of("nomail").await.is_empty());
    assert_eq!(
        s.recipient_events("nomail").await[0]["data"]["reason"],
        "recipient_missing_email"
    );
}

async fn smtp_applies_step_overrides(backend: Backend) {
    let smtp = SmtpSink::start().await.expect("smtp sink");
    let s = TestServer::start(backend, vec![email_channel(smtp.port())]).await;
    s.put_workflow("mail", email_step()).await;
    s.trigger(
        "mail",
        json!({"recipients": [{"id": "ada", "name": "Ada", "email": "ada@example.com"}],
               "data": {"order": 7, "shop": "Shop", "cc": "ops@example.com"}}),
    )
    .await;
    s.run_engine().await;
    let mail = &smtp.wait_for(1, Duration::from_secs(10)).await[0];
    let mut to = mail.to.clone();
    to.sort();
    assert_eq!(
        to,
        vec!["ada@example.com".to_string(), "ops@example.com".to_string()]
    );
    assert!(
        mail.data.contains("From: Shop <hark@example.com>"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("Cc: ops@example.com"));
    assert!(mail.data.contains("Reply-To: support@example.com"));
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "sent");
    let id = m["id"].as_str().expect("id");
    let (_, content) = s
        .call("GET", &format!("/v1/messages/{id}/content"), None)
        .await;
    assert_eq!(content["data"]["from"], "Shop <hark@example.com>");
}

async fn every_email_provider_is_wired(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let base = sink.url("");
    let from = "shop@example.com";
    let providers = [
        ("sendgrid", json!({"api_key": "k1"}), "/v3/mail/send"),
        ("postmark", json!({"server_token": "k2"}), "/email"),
        (
            "mailgun",
            json!({"api_key": "k3", "domain": "mg.example.com"}),
            "/v3/mg.example.com/messages",
        ),
        ("resend", json!({"api_key": "k4"}), "/emails"),
        (
            "ses",
            json!({"region": "us-east-1", "access_key_id": "AKID", "secret_access_key": "k5"}),
            "/v2/email/outbound-emails",
        ),
    ];
    let channels = providers
        .iter()
        .map(|(provider, settings, _)| {
            let mut settings = settings.clone();
            settings["base_url"] = json!(base);
            settings["from_address"] = json!(from);
            channel(provider, "email", provider, settings)
        })
        .collect();
    let s = TestServer::start(backend, channels).await;
    for (provider, _, _) in &providers {
        s.put_workflow(
            provider,
            json!([{"type": "channel", "ref": "email", "channel_key": provider,
                    "template": {"subject": "Hi", "text_body": "Hello"}}]),
        )
        .await;
        s.trigger(
            provider,
            json!({"recipients": [{"id": format!("u-{provider}"), "email": "ada@example.com"}]}),
        )
        .await;
    }
    s.run_engine().await;
    let mut paths: Vec<String> = sink.requests().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    let mut expected: Vec<String> = providers.iter().map(|p| p.2.to_string()).collect();
    expected.sort();
    assert_eq!(paths, expected);
    for (provider, _, _) in &providers {
        let m = &s.messages_of(&format!("u-{provider}")).await[0];
        assert_eq!(m["status"], "sent", "{provider}");
        let logs = s.delivery_logs(m["id"].as_str().expect("id")).await;
        let service = if *provider == "ses" {
            "aws_ses"
        } else {
            provider
        };
        assert_eq!(logs[0]["service_name"], service);
        for secret in ["k1", "k2", "k3", "k4", "k5"] {
            assert!(
                !logs[0]["request"]
                    .to_string()
                    .contains(&format!("\"{secret}\"")),
                "{provider}: {}",
                logs[0]["request"]
            );
        }
    }
}

async fn provider_rate_limit_is_retried_after_the_asked_delay(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        429,
        vec![
            ("Retry-After".into(), "120".into()),
            ("content-type".into(), "application/json".into()),
        ],
        r#"{"ErrorCode":429,"Message":"Rate limit exceeded"}"#.into(),
    );
    let postmark = channel(
        "email",
        "email",
        "postmark",
        json!({"server_token": "pm-secret", "base_url": sink.url(""), "from_address": "shop@example.com"}),
    );
    let s = TestServer::start(backend, vec![postmark]).await;
    s.put_workflow("mail", email_step()).await;
    s.trigger(
        "mail",
        json!({"recipients": [{"id": "ada", "email": "ada@example.com"}], "data": {"order": 1}}),
    )
    .await;
    s.run_engine().await;
    let m = &s.messages_of("ada").await[0];
    let id = m["id"].as_str().expect("id").to_string();
    assert_eq!(m["status"], "delivery_attempted");
    s.clock.advance(100_000);
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 1, "Retry-After: 120 is honoured");
    s.clock.advance(21_000);
    s.run_engine().await;
    assert_eq!(sink.requests().len(), 2);
    let (_, m) = s.call("GET", &format!("/v1/messages/{id}"), None).await;
    assert_eq!(m["status"], "sent");
    let logs = s.delivery_logs(&id).await;
    assert_eq!(logs.len(), 2);
    let statuses: Vec<&Value> = logs.iter().map(|l| &l["response"]["status"]).collect();
    assert!(statuses.contains(&&json!(429)) && statuses.contains(&&json!(200)));
    assert!(!format!("{logs:?}").contains("pm-secret"));
}

async fn sandbox_channel_records_not_sent(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let resend = channel(
        "email",
        "email",
        "resend",
        json!({"api_key": "re_secret", "base_url": sink.url(""), "from_address": "shop@example.com", "sandbox": true}),
    );
    let s = TestServer::start(backend, vec![resend]).await;
    s.put_workflow("mail", email_step()).await;
    s.trigger(
        "mail",
        json!({"recipients": [{"id": "ada", "email": "ada@example.com"}], "data": {"order": 1}}),
    )
    .await;
    s.run_engine().await;
    s.clock.advance(3_600_000);
    s.run_engine().await;
    assert!(sink.requests().is_empty());
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "not_sent");
    let logs = s.delivery_logs(m["id"].as_str().expect("id")).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["request"]["path"], "/emails");
    assert_eq!(logs[0]["response"]["sandbox"], true);
}

async fn channel_timeout_is_its_own(backend: Backend) {
    // The server's timeout is 2 s; this channel gives up after 1 s.
    let sink = HttpSink::start().await.expect("sink");
    sink.set_delay(std::time::Duration::from_millis(1500));
    let telnyx = channel(
        "sms",
        "sms",
        "telnyx",
        json!({"api_key": "k", "from_number": "+15555550100", "base_url": sink.url(""), "timeout_seconds": 1}),
    );
    let s = TestServer::start(backend, vec![telnyx]).await;
    s.put_workflow("otp", sms_step(json!({}))).await;
    s.trigger(
        "otp",
        json!({"recipients": [{"id": "ada", "phone_number": "+15555550123"}], "data": {"code": "1"}}),
    )
    .await;
    s.run_engine().await;
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "delivery_attempted");
    let logs = s.delivery_logs(m["id"].as_str().expect("id")).await;
    assert!(
        logs[0]["response"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out") || e.contains("timeout")),
        "{}",
        logs[0]["response"]
    );
}

fn sms_step(settings: Value) -> Value {
    json!([{"type": "channel", "ref": "sms", "channel_key": "sms",
            "template": {"text_body": "Code {{ data.code }} for {{ recipient.name }}", "settings": settings}}])
}

async fn sms_goes_to_the_recipient_phone_number(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let twilio = channel(
        "sms",
        "sms",
        "twilio",
        json!({"account_sid": "AC1", "auth_token": "tw-secret", "from_number": "+15555550100", "base_url": sink.url("")}),
    );
    let s = TestServer::start(backend, vec![twilio]).await;
    s.put_workflow("otp", sms_step(json!({}))).await;
    s.put_workflow(
        "otp-override",
        sms_step(json!({"to_number": "{{ data.phone }}",
                        "json_overrides": "{\"StatusCallback\": \"https://example.com/cb/{{ recipient.id }}\"}"})),
    )
    .await;
    s.trigger(
        "otp",
        json!({"recipients": [{"id": "ada", "name": "Ada", "phone_number": "+15555550123"}, {"id": "nophone", "name": "N"}],
               "data": {"code": "123"}}),
    )
    .await;
    s.trigger(
        "otp-override",
        json!({"recipients": [{"id": "bob", "name": "Bob"}], "data": {"code": "456", "phone": "+15555550999"}}),
    )
    .await;
    s.run_engine().await;
    let requests = sink.requests();
    assert_eq!(requests.len(), 2);
    let mut sent: Vec<Vec<(String, String)>> = requests
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/2010-04-01/Accounts/AC1/Messages.json");
            url::form_urlencoded::parse(r.body.as_bytes())
                .into_owned()
                .collect()
        })
        .collect();
    sent.sort();
    let pairs = |to: &str, body: &str| {
        vec![
            ("To".to_string(), to.to_string()),
            ("From".to_string(), "+15555550100".to_string()),
            ("Body".to_string(), body.to_string()),
        ]
    };
    assert_eq!(
        sent,
        vec![
            pairs("+15555550123", "Code 123 for Ada"),
            [
                pairs("+15555550999", "Code 456 for Bob"),
                vec![(
                    "StatusCallback".to_string(),
                    "https://example.com/cb/bob".to_string()
                )]
            ]
            .concat(),
        ]
    );
    let m = &s.messages_of("ada").await[0];
    assert_eq!(m["status"], "sent");
    let id = m["id"].as_str().expect("id");
    let (_, content) = s
        .call("GET", &format!("/v1/messages/{id}/content"), None)
        .await;
    assert_eq!(content["data"]["to"], "+15555550123");
    assert_eq!(content["data"]["body"], "Code 123 for Ada");
    let logs = s.delivery_logs(id).await;
    assert_eq!(logs[0]["service_name"], "twilio");
    assert_eq!(logs[0]["request"]["body"]["To"], "+15555550123");
    assert!(!logs[0].to_string().contains("tw-secret"));

    assert!(s.messages_of("nophone").await.is_empty());
    let events = s.recipient_events("nophone").await;
    assert!(
        events.iter().any(|e| e["event"] == "step_skipped"
            && e["data"]["reason"] == "recipient_missing_phone_number"),
        "{events:?}"
    );
}

async fn every_sms_provider_is_wired(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let base = sink.url("");
    let providers = [
        (
            "twilio",
            json!({"account_sid": "AC1", "auth_token": "k1"}),
            "/2010-04-01/Accounts/AC1/Messages.json",
        ),
        (
            "vonage",
            json!({"api_key": "vk", "api_secret": "k2"}),
            "/sms/json",
        ),
        ("messagebird", json!({"access_key": "k3"}), "/messages"),
        (
            "plivo",
            json!({"auth_id": "MA1", "auth_token": "k4"}),
            "/v1/Account/MA1/Message/",
        ),
        ("telnyx", json!({"api_key": "k5"}), "/v2/messages"),
        (
            "sns",
            json!({"region": "us-east-1", "access_key_id": "AKID", "secret_access_key": "k6"}),
            "/",
        ),
    ];
    let channels = providers
        .iter()
        .map(|(provider, settings, _)| {
            let mut settings = settings.clone();
            settings["base_url"] = json!(base);
            settings["from_number"] = json!("+15555550100");
            channel(provider, "sms", provider, settings)
        })
        .collect();
    let s = TestServer::start(backend, channels).await;
    for (provider, _, _) in &providers {
        s.put_workflow(
            provider,
            json!([{"type": "channel", "ref": "sms", "channel_key": provider,
                    "template": {"text_body": "Hello"}}]),
        )
        .await;
        s.trigger(
            provider,
            json!({"recipients": [{"id": format!("u-{provider}"), "phone_number": "+15555550123"}]}),
        )
        .await;
    }
    // Vonage reports success in the body; this answer reads as success to all of them.
    for _ in &providers {
        sink.push_response(
            200,
            vec![("content-type".into(), "application/json".into())],
            r#"{"messages":[{"status":"0"}]}"#.into(),
        );
    }
    s.run_engine().await;
    let mut paths: Vec<String> = sink.requests().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    let mut expected: Vec<String> = providers.iter().map(|p| p.2.to_string()).collect();
    expected.sort();
    assert_eq!(paths, expected);
    for (provider, _, _) in &providers {
        let m = &s.messages_of(&format!("u-{provider}")).await[0];
        assert_eq!(m["status"], "sent", "{provider}");
        let logs = s.delivery_logs(m["id"].as_str().expect("id")).await;
        for secret in ["k1", "k2", "k3", "k4", "k5", "k6"] {
            assert!(
                !logs[0]["request"]
                    .to_string()
                    .contains(&format!("\"{secret}\"")),
                "{provider}: {}",
                logs[0]["request"]
            );
        }
    }
}
