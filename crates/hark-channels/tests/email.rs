//! Email delivery against a real SMTP listener on 127.0.0.1.

use std::time::Duration;

use hark_channels::email::{EmailMessage, SmtpSender, SmtpSettings, SmtpTls};
use hark_channels::testing::SmtpSink;
use hark_channels::{Outcome, REDACTED};

const TIMEOUT: Duration = Duration::from_secs(5);

fn settings(port: u16) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        username: None,
        password: None,
        tls: SmtpTls::None,
        from_address: "Hark <hark@example.com>".into(),
    }
}

fn message(id: &str) -> EmailMessage {
    EmailMessage {
        from: "alerts@example.com".into(),
        to: "ada@example.com".into(),
        subject: "Hi Ada".into(),
        html_body: Some("<p>Order 7</p>".into()),
        text_body: Some("Order 7".into()),
        message_id: id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn delivers_multipart_message() {
    let sink = SmtpSink::start().await.expect("sink");
    let sender = SmtpSender::new(settings(sink.port()), TIMEOUT).expect("sender");
    let attempt = sender.send(&message("msg_1")).await;
    assert_eq!(attempt.outcome, Outcome::Sent, "{:?}", attempt.response);
    assert_eq!(attempt.service_name, "smtp");
    assert_eq!(attempt.response["status"], 250);
    assert_eq!(attempt.request["headers"]["To"], "ada@example.com");
    assert_eq!(attempt.request["headers"]["Message-ID"], "<msg_1@hark>");

    let received = sink.wait_for(1, TIMEOUT).await;
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.from, "alerts@example.com");
    assert_eq!(mail.to, vec!["ada@example.com".to_string()]);
    assert!(
        mail.data.contains("From: alerts@example.com"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("To: ada@example.com"));
    assert!(mail.data.contains("Subject: Hi Ada"));
    assert!(mail.data.contains("Message-ID: <msg_1@hark>"));
    assert!(mail.data.contains("multipart/alternative"));
    assert!(mail.data.contains("text/plain"));
    assert!(mail.data.contains("text/html"));
    assert!(mail.data.contains("<p>Order 7</p>"));

    // The pooled connection is reused for the next message.
    let again = sender.send(&message("msg_2")).await;
    assert_eq!(again.outcome, Outcome::Sent);
    assert_eq!(sink.wait_for(2, TIMEOUT).await.len(), 2);
}

#[tokio::test]
async fn empty_from_uses_channel_address_and_html_only_is_single_part() {
    let sink = SmtpSink::start().await.expect("sink");
    let sender = SmtpSender::new(settings(sink.port()), TIMEOUT).expect("sender");
    let msg = EmailMessage {
        from: String::new(),
        text_body: None,
        ..message("msg_3")
    };
    assert_eq!(sender.send(&msg).await.outcome, Outcome::Sent);
    let mail = &sink.wait_for(1, TIMEOUT).await[0];
    assert_eq!(mail.from, "hark@example.com");
    assert!(mail.data.contains("text/html"));
    assert!(!mail.data.contains("multipart"));
}

#[tokio::test]
async fn cc_bcc_and_reply_to() {
    let sink = SmtpSink::start().await.expect("sink");
    let sender = SmtpSender::new(settings(sink.port()), TIMEOUT).expect("sender");
    let msg = EmailMessage {
        to: "ada@example.com, bob@example.com".into(),
        cc: vec!["cc@example.com".into()],
        bcc: vec!["audit@example.com".into()],
        reply_to: vec!["support@example.com".into()],
        ..message("msg_4")
    };
    let attempt = sender.send(&msg).await;
    assert_eq!(attempt.outcome, Outcome::Sent, "{:?}", attempt.response);
    assert_eq!(attempt.request["headers"]["Bcc"], "audit@example.com");
    let mail = &sink.wait_for(1, TIMEOUT).await[0];
    let mut to = mail.to.clone();
    to.sort();
    assert_eq!(
        to,
        vec![
            "ada@example.com".to_string(),
            "audit@example.com".to_string(),
            "bob@example.com".to_string(),
            "cc@example.com".to_string()
        ]
    );
    assert!(mail.data.contains("Cc: cc@example.com"), "{}", mail.data);
    assert!(mail.data.contains("Reply-To: support@example.com"));
    assert!(
        !mail.data.contains("audit@example.com"),
        "Bcc stays out of the headers"
    );
}

#[tokio::test]
async fn transient_rejection_is_retryable() {
    let sink = SmtpSink::start().await.expect("sink");
    sink.set_reply_to_data(Some((451, "4.3.0 try again later".into())));
    let sender = SmtpSender::new(settings(sink.port()), TIMEOUT).expect("sender");
    let attempt = sender.send(&message("m")).await;
    assert!(
        matches!(attempt.outcome, Outcome::Retryable { .. }),
        "{:?}",
        attempt.outcome
    );
    assert_eq!(attempt.response["status"], 451);
    assert!(sink.messages().is_empty());

    // Once the server recovers, the same sender gets through.
    sink.set_reply_to_data(None);
    assert_eq!(sender.send(&message("m")).await.outcome, Outcome::Sent);
}

#[tokio::test]
async fn permanent_rejection_is_permanent() {
    let sink = SmtpSink::start().await.expect("sink");
    sink.set_reply_to_data(Some((550, "5.7.1 rejected".into())));
    let sender = SmtpSender::new(settings(sink.port()), TIMEOUT).expect("sender");
    let attempt = sender.send(&message("m")).await;
    match &attempt.outcome {
        Outcome::Permanent { reason } => assert!(reason.contains("rejected"), "{reason}"),
        other => panic!("expected permanent, got {other:?}"),
    }
    assert_eq!(attempt.response["status"], 550);
}

#[tokio::test]
async fn invalid_recipient_is_permanent() {
    let sink = SmtpSink::start().await.expect("sink");
    let sender = SmtpSender::new(settings(sink.port()), TIMEOUT).expect("sender");
    let msg = EmailMessage {
        to: "not an address".into(),
        ..message("m")
    };
    let attempt = sender.send(&msg).await;
    assert!(
        matches!(attempt.outcome, Outcome::Permanent { .. }),
        "{:?}",
        attempt.outcome
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn unreachable_server_is_retryable() {
    let sink = SmtpSink::start().await.expect("sink");
    let port = sink.port();
    drop(sink);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sender = SmtpSender::new(settings(port), TIMEOUT).expect("sender");
    let attempt = sender.send(&message("m")).await;
    assert!(
        matches!(attempt.outcome, Outcome::Retryable { .. }),
        "{:?}",
        attempt.outcome
    );
    assert!(attempt.response["error"].is_string());
}

#[tokio::test]
async fn authenticates_and_redacts_the_password() {
    let sink = SmtpSink::start().await.expect("sink");
    let sender = SmtpSender::new(
        SmtpSettings {
            username: Some("mailer".into()),
            password: Some("hunter2".into()),
            ..settings(sink.port())
        },
        TIMEOUT,
    )
    .expect("sender");
    let attempt = sender.send(&message("m")).await;
    assert_eq!(attempt.outcome, Outcome::Sent, "{:?}", attempt.response);
    assert_eq!(
        sink.auths(),
        vec![("mailer".to_string(), "hunter2".to_string())]
    );
    assert_eq!(attempt.request["auth"]["username"], "mailer");
    assert_eq!(attempt.request["auth"]["password"], REDACTED);
    assert!(!attempt.request.to_string().contains("hunter2"));
    assert!(!attempt.response.to_string().contains("hunter2"));
}

#[test]
fn settings_from_toml() {
    let parsed: SmtpSettings = toml::from_str(
        r#"
        host = "smtp.example.com"
        from_address = "hark@example.com"
        "#,
    )
    .expect("minimal settings");
    assert_eq!(parsed.port, 587);
    assert_eq!(parsed.tls, SmtpTls::Starttls);
    assert!(parsed.username.is_none());

    let parsed: SmtpSettings = toml::from_str(
        r#"
        host = "127.0.0.1"
        port = 2525
        tls = "none"
        username = "u"
        password = "p"
        from_address = "hark@example.com"
        "#,
    )
    .expect("full settings");
    assert_eq!(parsed.port, 2525);
    assert_eq!(parsed.tls, SmtpTls::None);
    let tls: SmtpSettings = serde_json::from_value(serde_json::json!({
        "host": "h", "tls": "tls", "port": 465, "from_address": "a@b.c"
    }))
    .expect("json settings");
    assert_eq!(tls.tls, SmtpTls::Tls);
}

#[test]
fn bad_settings_are_rejected_outside_a_runtime() {
    let ok = SmtpSender::new(settings(25), TIMEOUT);
    assert!(ok.is_ok(), "building must not need a tokio runtime");
    let starttls = SmtpSender::new(
        SmtpSettings {
            tls: SmtpTls::Starttls,
            ..settings(587)
        },
        TIMEOUT,
    );
    assert!(starttls.is_ok());
    assert!(SmtpSender::new(
        SmtpSettings {
            host: " ".into(),
            ..settings(25)
        },
        TIMEOUT
    )
    .is_err());
    assert!(SmtpSender::new(
        SmtpSettings {
            from_address: "nope".into(),
            ..settings(25)
        },
        TIMEOUT
    )
    .is_err());
    assert!(SmtpSender::new(
        SmtpSettings {
            username: Some("u".into()),
            ..settings(25)
        },
        TIMEOUT
    )
    .is_err());
}

#[test]
fn sender_used_in_a_runtime_can_be_dropped_after_it() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sender = runtime.block_on(async {
        let sink = SmtpSink::start().await.expect("sink");
        let sender = SmtpSender::new(settings(sink.port()), TIMEOUT).expect("sender");
        assert_eq!(sender.send(&message("m")).await.outcome, Outcome::Sent);
        sender
    });
    drop(runtime);
    drop(sender);
}
