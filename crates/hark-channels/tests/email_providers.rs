//! Email provider APIs against a loopback server answering like each provider: the exact
//! request Hark sends, how each answer is classified, and what the log keeps.

mod provider_support;

use std::time::{Duration, SystemTime};

use hark_channels::email::api::{EmailApiSender, OutboundEmail};
use hark_channels::provider::sigv4::{authorization, AwsCredentials};
use hark_channels::testing::HttpSink;
use hark_channels::Outcome;
use provider_support::{
    assert_redacted, basic, failure_cases, form, header, http, json_header, REDACTED_VALUE,
};
use serde_json::{json, Value};

fn sender(provider: &str, mut settings: Value, base_url: &str) -> EmailApiSender {
    settings["base_url"] = json!(base_url);
    settings["from_address"] = json!("hello@example.com");
    EmailApiSender::new(provider, &settings, http(true)).expect("sender")
}

fn email() -> OutboundEmail {
    OutboundEmail {
        from: String::new(),
        to: vec!["ada@example.com".into()],
        cc: vec!["cc@example.com".into()],
        bcc: vec![],
        reply_to: vec!["support@example.com".into()],
        subject: "Order 7".into(),
        html_body: Some("<p>Order 7</p>".into()),
        text_body: Some("Order 7".into()),
        message_id: "msg_1".into(),
        json_overrides: None,
    }
}

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).expect("json body")
}

#[tokio::test]
async fn sendgrid_request_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        202,
        vec![("X-Message-Id".into(), "sg_1".into())],
        String::new(),
    );
    let settings = json!({"api_key": "SG.secret", "from_name": "Hark"});
    let s = sender("sendgrid", settings.clone(), &sink.url(""));
    let attempt = s.send(&email()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "sendgrid");
    let r = &sink.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v3/mail/send")
    );
    assert_eq!(header(r, "authorization"), "Bearer SG.secret");
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(
        body_json(&r.body),
        json!({
            "personalizations": [{"to": [{"email": "ada@example.com"}], "cc": [{"email": "cc@example.com"}]}],
            "from": {"email": "hello@example.com", "name": "Hark"},
            "reply_to": {"email": "support@example.com"},
            "subject": "Order 7",
            "content": [{"type": "text/plain", "value": "Order 7"}, {"type": "text/html", "value": "<p>Order 7</p>"}],
            "custom_args": {"hark_message_id": "msg_1"},
        })
    );
    assert_eq!(attempt.request["headers"]["Authorization"], REDACTED_VALUE);
    assert_eq!(attempt.request["path"], "/v3/mail/send");
    assert_eq!(attempt.request["body"]["subject"], "Order 7");
    assert_eq!(attempt.response["status"], 202);
    assert_eq!(attempt.response["headers"]["x-message-id"], "sg_1");
    assert_redacted(&attempt, &["SG.secret"]);

    failure_cases(
        (400, r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#),
        &["SG.secret"],
        |base| {
            let s = sender("sendgrid", settings.clone(), &base);
            async move { s.send(&email()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn postmark_request_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        json_header(),
        r#"{"To":"ada@example.com","SubmittedAt":"2026-11-23T12:00:00Z","MessageID":"pm-1","ErrorCode":0,"Message":"OK"}"#.into(),
    );
    let settings = json!({"server_token": "pm-secret", "message_stream": "outbound"});
    let s = sender("postmark", settings.clone(), &sink.url(""));
    let attempt = s.send(&email()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "postmark");
    let r = &sink.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/email"));
    assert_eq!(header(r, "x-postmark-server-token"), "pm-secret");
    assert_eq!(header(r, "accept"), "application/json");
    assert_eq!(
        body_json(&r.body),
        json!({
            "From": "hello@example.com", "To": "ada@example.com", "Cc": "cc@example.com",
            "ReplyTo": "support@example.com", "Subject": "Order 7",
            "HtmlBody": "<p>Order 7</p>", "TextBody": "Order 7", "MessageStream": "outbound",
            "Metadata": {"hark_message_id": "msg_1"},
        })
    );
    assert_eq!(
        attempt.request["headers"]["X-Postmark-Server-Token"],
        REDACTED_VALUE
    );
    assert_eq!(attempt.response["body"]["MessageID"], "pm-1");
    assert_redacted(&attempt, &["pm-secret"]);

    failure_cases(
        (
            422,
            r#"{"ErrorCode":300,"Message":"Invalid 'To' address: 'ada'."}"#,
        ),
        &["pm-secret"],
        |base| {
            let s = sender("postmark", settings.clone(), &base);
            async move { s.send(&email()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn mailgun_request_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        json_header(),
        r#"{"id":"<20261123.1@mg.example.com>","message":"Queued. Thank you."}"#.into(),
    );
    let settings = json!({"api_key": "key-secret", "domain": "mg.example.com"});
    let s = sender("mailgun", settings.clone(), &sink.url(""));
    let mut mail = email();
    mail.bcc = vec!["audit@example.com".into(), "b@example.com".into()];
    let attempt = s.send(&mail).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "mailgun");
    let r = &sink.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v3/mg.example.com/messages")
    );
    assert_eq!(header(r, "authorization"), basic("api", "key-secret"));
    assert_eq!(
        header(r, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let pairs = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        form(&r.body),
        pairs(&[
            ("from", "hello@example.com"),
            ("to", "ada@example.com"),
            ("cc", "cc@example.com"),
            ("bcc", "audit@example.com, b@example.com"),
            ("subject", "Order 7"),
            ("text", "Order 7"),
            ("html", "<p>Order 7</p>"),
            ("h:Reply-To", "support@example.com"),
            ("v:hark_message_id", "msg_1"),
        ])
    );
    assert_eq!(attempt.request["body"]["subject"], "Order 7");
    assert_redacted(&attempt, &["key-secret", &basic("api", "key-secret")[6..]]);

    failure_cases(
        (
            400,
            r#"{"message":"to parameter is not a valid address. please check documentation"}"#,
        ),
        &["key-secret"],
        |base| {
            let s = sender("mailgun", settings.clone(), &base);
            async move { s.send(&email()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn resend_request_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        json_header(),
        r#"{"id":"49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}"#.into(),
    );
    let settings = json!({"api_key": "re_secret"});
    let s = sender("resend", settings.clone(), &sink.url(""));
    let attempt = s.send(&email()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "resend");
    let r = &sink.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/emails"));
    assert_eq!(header(r, "authorization"), "Bearer re_secret");
    assert_eq!(header(r, "idempotency-key"), "msg_1");
    assert_eq!(
        body_json(&r.body),
        json!({
            "from": "hello@example.com", "to": ["ada@example.com"], "cc": ["cc@example.com"],
            "reply_to": ["support@example.com"], "subject": "Order 7",
            "html": "<p>Order 7</p>", "text": "Order 7",
        })
    );
    assert_redacted(&attempt, &["re_secret"]);

    failure_cases(
        (
            422,
            r#"{"statusCode":422,"message":"Invalid `to` field.","name":"validation_error"}"#,
        ),
        &["re_secret"],
        |base| {
            let s = sender("resend", settings.clone(), &base);
            async move { s.send(&email()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn ses_request_is_signed_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(200, json_header(), r#"{"MessageId":"0100018c-ses"}"#.into());
    let settings = json!({
        "region": "eu-west-1", "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "ses-secret-key", "session_token": "ses-session-token",
        "configuration_set_name": "tracking",
        "json_overrides": {"EmailTags": [{"Name": "kind", "Value": "order"}]},
    });
    let s = sender("ses", settings.clone(), &sink.url(""));
    let before = SystemTime::now();
    let attempt = s.send(&email()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "aws_ses");
    let r = &sink.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v2/email/outbound-emails")
    );
    assert_eq!(
        body_json(&r.body),
        json!({
            "FromEmailAddress": "hello@example.com",
            "Destination": {"ToAddresses": ["ada@example.com"], "CcAddresses": ["cc@example.com"]},
            "ReplyToAddresses": ["support@example.com"],
            "ConfigurationSetName": "tracking",
            "EmailTags": [{"Name": "kind", "Value": "order"}],
            "Content": {"Simple": {
                "Subject": {"Data": "Order 7", "Charset": "UTF-8"},
                "Body": {"Text": {"Data": "Order 7", "Charset": "UTF-8"},
                         "Html": {"Data": "<p>Order 7</p>", "Charset": "UTF-8"}}}},
        })
    );
    // The signature covers exactly what arrived, overrides included: recompute it from
    // the received request.
    let date = header(r, "x-amz-date").to_string();
    assert_eq!(
        date[..8],
        hark_channels::provider::sigv4::amz_date(before)[..8]
    );
    assert_eq!(header(r, "x-amz-security-token"), "ses-session-token");
    let credentials = AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "ses-secret-key".into(),
        session_token: Some("ses-session-token".into()),
    };
    let url = url::Url::parse(&sink.url(&r.path)).expect("url");
    let expected = authorization(
        "POST",
        &url,
        &[
            ("host".into(), header(r, "host").into()),
            ("x-amz-date".into(), date.clone()),
            ("x-amz-security-token".into(), "ses-session-token".into()),
        ],
        r.body.as_bytes(),
        &credentials,
        "eu-west-1",
        "ses",
        &date,
    );
    assert_eq!(header(r, "authorization"), expected);
    assert!(expected.starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/eu-west-1/ses/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=",
        &date[..8]
    )));
    assert_eq!(attempt.request["headers"]["Authorization"], REDACTED_VALUE);
    assert_eq!(
        attempt.request["headers"]["x-amz-security-token"],
        REDACTED_VALUE
    );
    let signature = expected.rsplit('=').next().expect("signature").to_string();
    assert_redacted(
        &attempt,
        &["ses-secret-key", "ses-session-token", &signature],
    );

    failure_cases(
        (
            400,
            r#"{"__type":"BadRequestException","message":"Missing final '@domain'"}"#,
        ),
        &["ses-secret-key", "ses-session-token"],
        |base| {
            let s = sender("ses", settings.clone(), &base);
            async move { s.send(&email()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn channel_overrides_apply_when_the_step_sets_none() {
    let sink = HttpSink::start().await.expect("sink");
    let settings = json!({
        "api_key": "re_secret", "to_address": "catch-all@example.com",
        "cc_address": "a@example.com, b@example.com", "bcc_address": "audit@example.com",
        "reply_to_address": "channel-reply@example.com", "from_name": "Hark",
    });
    let s = sender("resend", settings, &sink.url(""));
    let mut mail = email();
    mail.cc.clear();
    mail.from = "Ops <ops@example.com>".into();
    s.send(&mail).await;
    let body = body_json(&sink.requests()[0].body);
    assert_eq!(
        body["from"], "Ops <ops@example.com>",
        "the step's sender wins"
    );
    assert_eq!(body["to"], json!(["catch-all@example.com"]));
    assert_eq!(body["cc"], json!(["a@example.com", "b@example.com"]));
    assert_eq!(body["bcc"], json!(["audit@example.com"]));
    assert_eq!(
        body["reply_to"],
        json!(["support@example.com"]),
        "the step's reply-to wins"
    );
}

#[tokio::test]
async fn sandbox_mode_records_without_calling() {
    let sink = HttpSink::start().await.expect("sink");
    let s = sender(
        "sendgrid",
        json!({"api_key": "SG.secret", "sandbox": true}),
        &sink.url(""),
    );
    let attempt = s.send(&email()).await;
    assert!(matches!(attempt.outcome, Outcome::NotSent { .. }));
    assert_eq!(attempt.request["path"], "/v3/mail/send");
    assert_redacted(&attempt, &["SG.secret"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(sink.requests().is_empty());
}

#[tokio::test]
async fn loopback_base_url_is_refused_without_allow_private_networks() {
    let sink = HttpSink::start().await.expect("sink");
    let settings = json!({"api_key": "re_secret", "from_address": "hello@example.com", "base_url": sink.url("")});
    let s = EmailApiSender::new("resend", &settings, http(false)).expect("sender");
    let attempt = s.send(&email()).await;
    assert!(
        matches!(&attempt.outcome, Outcome::Permanent { reason } if reason.contains("127.0.0.1")),
        "{:?}",
        attempt.outcome
    );
    assert!(sink.requests().is_empty());
}

#[tokio::test]
async fn bad_settings_are_refused_at_configuration() {
    let bad = [
        ("sendgrid", json!({"from_address": "a@example.com"})),
        (
            "sendgrid",
            json!({"api_key": "", "from_address": "a@example.com"}),
        ),
        (
            "mailgun",
            json!({"api_key": "k", "from_address": "a@example.com"}),
        ),
        (
            "ses",
            json!({"region": "us-east-1", "from_address": "a@example.com"}),
        ),
        ("postmark", json!({"server_token": "t"})),
        (
            "sparkpost",
            json!({"api_key": "k", "from_address": "a@example.com"}),
        ),
    ];
    for (provider, settings) in bad {
        assert!(
            EmailApiSender::new(provider, &settings, http(true)).is_err(),
            "{provider} {settings}"
        );
    }
}

#[tokio::test]
async fn json_overrides_from_the_step_replace_the_channels() {
    let sink = HttpSink::start().await.expect("sink");
    let settings = json!({"api_key": "SG.secret", "json_overrides": {"categories": ["channel"]}});
    let s = sender("sendgrid", settings, &sink.url(""));
    s.send(&email()).await;
    let mut step = email();
    step.json_overrides =
        Some(json!({"custom_args": {"campaign": "fall"}, "categories": ["step"]}));
    s.send(&step).await;
    let requests = sink.requests();
    let channel_level = body_json(&requests[0].body);
    assert_eq!(channel_level["categories"], json!(["channel"]));
    let step_level = body_json(&requests[1].body);
    assert_eq!(step_level["categories"], json!(["step"]));
    assert_eq!(
        step_level["custom_args"],
        json!({"hark_message_id": "msg_1", "campaign": "fall"}),
        "objects merge key by key"
    );

    let mailgun = sender(
        "mailgun",
        json!({"api_key": "k", "domain": "mg.example.com", "json_overrides": {"o:tag": "orders", "subject": "Replaced"}}),
        &sink.url(""),
    );
    mailgun.send(&email()).await;
    let fields = form(&sink.requests()[2].body);
    assert!(fields.contains(&("o:tag".into(), "orders".into())));
    assert!(fields.contains(&("subject".into(), "Replaced".into())));
    assert!(!fields.contains(&("subject".into(), "Order 7".into())));
}
