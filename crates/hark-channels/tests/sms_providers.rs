//! SMS provider APIs against a loopback server answering like each provider: the exact
//! request Hark sends, how each answer is classified, and what the log keeps.

mod provider_support;

use std::time::{Duration, SystemTime};

use hark_channels::provider::sigv4::{authorization, AwsCredentials};
use hark_channels::sms::{OutboundSms, SmsSender};
use hark_channels::testing::HttpSink;
use hark_channels::Outcome;
use provider_support::{
    assert_redacted, basic, failure_cases, form, header, http, json_header, REDACTED_VALUE,
};
use serde_json::{json, Value};

fn sender(provider: &str, mut settings: Value, base_url: &str) -> SmsSender {
    settings["base_url"] = json!(base_url);
    SmsSender::new(provider, &settings, http(true)).expect("sender")
}

fn sms() -> OutboundSms {
    OutboundSms {
        to: "+15555550123".into(),
        body: "Your code is 123456".into(),
        message_id: "msg_1".into(),
        json_overrides: None,
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).expect("json body")
}

#[tokio::test]
async fn twilio_request_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        201,
        json_header(),
        r#"{"sid":"SM1","status":"queued","to":"+15555550123"}"#.into(),
    );
    let settings =
        json!({"account_sid": "AC123", "auth_token": "tw-secret", "from_number": "+15555550100"});
    let s = sender("twilio", settings.clone(), &sink.url(""));
    let attempt = s.send(&sms()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "twilio");
    let r = &sink.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/2010-04-01/Accounts/AC123/Messages.json")
    );
    assert_eq!(header(r, "authorization"), basic("AC123", "tw-secret"));
    assert_eq!(
        form(&r.body),
        pairs(&[
            ("To", "+15555550123"),
            ("From", "+15555550100"),
            ("Body", "Your code is 123456")
        ])
    );
    assert_eq!(attempt.request["headers"]["Authorization"], REDACTED_VALUE);
    assert_eq!(attempt.response["body"]["sid"], "SM1");
    assert_redacted(&attempt, &["tw-secret", &basic("AC123", "tw-secret")[6..]]);

    failure_cases(
        (
            400,
            r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}"#,
        ),
        &["tw-secret"],
        |base| {
            let s = sender("twilio", settings.clone(), &base);
            async move { s.send(&sms()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn twilio_messaging_service_replaces_the_sender() {
    let sink = HttpSink::start().await.expect("sink");
    let s = sender(
        "twilio",
        json!({"account_sid": "AC123", "auth_token": "t", "messaging_service_sid": "MG9"}),
        &sink.url(""),
    );
    s.send(&sms()).await;
    let body = form(&sink.requests()[0].body);
    assert!(body.contains(&("MessagingServiceSid".into(), "MG9".into())));
    assert!(!body.iter().any(|(k, _)| k == "From"));
}

#[tokio::test]
async fn vonage_request_and_body_statuses() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        json_header(),
        r#"{"message-count":"1","messages":[{"to":"15555550123","message-id":"0A1","status":"0"}]}"#.into(),
    );
    let settings = json!({"api_key": "vkey", "api_secret": "vonage-secret", "from_number": "Hark"});
    let s = sender("vonage", settings.clone(), &sink.url(""));
    let attempt = s.send(&sms()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    let r = &sink.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/sms/json"));
    assert_eq!(
        form(&r.body),
        pairs(&[
            ("api_key", "vkey"),
            ("api_secret", "vonage-secret"),
            ("from", "Hark"),
            ("to", "15555550123"),
            ("text", "Your code is 123456"),
            ("client-ref", "msg_1"),
        ])
    );
    assert_eq!(attempt.request["body"]["api_secret"], REDACTED_VALUE);
    assert_eq!(attempt.request["body"]["api_key"], "vkey");
    assert_redacted(&attempt, &["vonage-secret"]);

    // Vonage answers 200 for failures too; the message status decides.
    sink.push_response(
        200,
        json_header(),
        r#"{"message-count":"1","messages":[{"status":"1","error-text":"Throughput Rate Exceeded - please wait [ 10 ] and retry"}]}"#.into(),
    );
    assert!(matches!(
        s.send(&sms()).await.outcome,
        Outcome::Retryable { reason, .. } if reason.contains("status 1")
    ));
    sink.push_response(
        200,
        json_header(),
        r#"{"message-count":"1","messages":[{"status":"4","error-text":"Bad Credentials"}]}"#
            .into(),
    );
    assert_eq!(
        s.send(&sms()).await.outcome,
        Outcome::Permanent {
            reason: "Vonage status 4: Bad Credentials".into()
        }
    );

    failure_cases(
        (400, r#"{"type":"https://developer.nexmo.com/api-errors#bad-request","title":"Bad Request"}"#),
        &["vonage-secret"],
        |base| {
            let s = sender("vonage", settings.clone(), &base);
            async move { s.send(&sms()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn messagebird_request_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        201,
        json_header(),
        r#"{"id":"mb1","recipients":{"totalCount":1}}"#.into(),
    );
    let settings = json!({"access_key": "mb-secret", "from_number": "Hark"});
    let s = sender("messagebird", settings.clone(), &sink.url(""));
    let attempt = s.send(&sms()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    let r = &sink.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/messages"));
    assert_eq!(header(r, "authorization"), "AccessKey mb-secret");
    assert_eq!(
        body_json(&r.body),
        json!({"originator": "Hark", "recipients": ["+15555550123"], "body": "Your code is 123456", "reference": "msg_1"})
    );
    assert_redacted(&attempt, &["mb-secret"]);

    failure_cases(
        (
            422,
            r#"{"errors":[{"code":9,"description":"no (correct) recipients found","parameter":"recipients"}]}"#,
        ),
        &["mb-secret"],
        |base| {
            let s = sender("messagebird", settings.clone(), &base);
            async move { s.send(&sms()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn plivo_request_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        202,
        json_header(),
        r#"{"api_id":"a1","message":"message(s) queued","message_uuid":["u1"]}"#.into(),
    );
    let settings =
        json!({"auth_id": "MAXXX", "auth_token": "plivo-secret", "from_number": "+15555550100"});
    let s = sender("plivo", settings.clone(), &sink.url(""));
    let attempt = s.send(&sms()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    let r = &sink.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/Account/MAXXX/Message/")
    );
    assert_eq!(header(r, "authorization"), basic("MAXXX", "plivo-secret"));
    assert_eq!(
        body_json(&r.body),
        json!({"src": "+15555550100", "dst": "+15555550123", "text": "Your code is 123456"})
    );
    assert_redacted(&attempt, &["plivo-secret"]);

    failure_cases(
        (400, r#"{"api_id":"a2","error":"dst parameter is invalid"}"#),
        &["plivo-secret"],
        |base| {
            let s = sender("plivo", settings.clone(), &base);
            async move { s.send(&sms()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn telnyx_request_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        json_header(),
        r#"{"data":{"id":"tx1","record_type":"message"}}"#.into(),
    );
    let settings = json!({"api_key": "KEYtelnyx", "from_number": "+15555550100", "messaging_profile_id": "prof1"});
    let s = sender("telnyx", settings.clone(), &sink.url(""));
    let attempt = s.send(&sms()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    let r = &sink.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v2/messages")
    );
    assert_eq!(header(r, "authorization"), "Bearer KEYtelnyx");
    assert_eq!(
        body_json(&r.body),
        json!({"from": "+15555550100", "to": "+15555550123", "text": "Your code is 123456", "messaging_profile_id": "prof1"})
    );
    assert_redacted(&attempt, &["KEYtelnyx"]);

    failure_cases(
        (
            422,
            r#"{"errors":[{"code":"40310","title":"Invalid 'to' address"}]}"#,
        ),
        &["KEYtelnyx"],
        |base| {
            let s = sender("telnyx", settings.clone(), &base);
            async move { s.send(&sms()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn sns_request_is_signed_and_outcomes() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        vec![("content-type".into(), "text/xml".into())],
        "<PublishResponse><PublishResult><MessageId>m1</MessageId></PublishResult></PublishResponse>".into(),
    );
    let settings = json!({"region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "sns-secret-key", "from_number": "HARK",
                          "json_overrides": {"MessageAttributes.entry.1.Value.StringValue": "Promotional"}});
    let s = sender("sns", settings.clone(), &sink.url(""));
    let before = SystemTime::now();
    let attempt = s.send(&sms()).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "aws_sns");
    let r = &sink.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"));
    assert_eq!(
        form(&r.body),
        pairs(&[
            ("Action", "Publish"),
            ("Version", "2010-03-31"),
            ("PhoneNumber", "+15555550123"),
            ("Message", "Your code is 123456"),
            ("MessageAttributes.entry.1.Name", "AWS.SNS.SMS.SMSType"),
            ("MessageAttributes.entry.1.Value.DataType", "String"),
            ("MessageAttributes.entry.2.Name", "AWS.SNS.SMS.SenderID"),
            ("MessageAttributes.entry.2.Value.DataType", "String"),
            ("MessageAttributes.entry.2.Value.StringValue", "HARK"),
            // The override replaces the field and comes last; the signature covers it.
            ("MessageAttributes.entry.1.Value.StringValue", "Promotional"),
        ])
    );
    let date = header(r, "x-amz-date").to_string();
    assert_eq!(
        date[..8],
        hark_channels::provider::sigv4::amz_date(before)[..8]
    );
    let credentials = AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "sns-secret-key".into(),
        session_token: None,
    };
    let url = url::Url::parse(&sink.url("/")).expect("url");
    let expected = authorization(
        "POST",
        &url,
        &[
            ("host".into(), header(r, "host").into()),
            ("x-amz-date".into(), date.clone()),
        ],
        r.body.as_bytes(),
        &credentials,
        "us-east-1",
        "sns",
        &date,
    );
    assert_eq!(header(r, "authorization"), expected);
    assert_redacted(&attempt, &["sns-secret-key"]);

    // SNS throttles with a 400 and an error code, which is worth retrying.
    sink.push_response(
        400,
        vec![("content-type".into(), "text/xml".into())],
        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".into(),
    );
    assert!(matches!(
        s.send(&sms()).await.outcome,
        Outcome::Retryable { .. }
    ));

    failure_cases(
        (400, "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>Invalid parameter: PhoneNumber</Message></Error></ErrorResponse>"),
        &["sns-secret-key"],
        |base| {
            let s = sender("sns", settings.clone(), &base);
            async move { s.send(&sms()).await }
        },
    )
    .await;
}

#[tokio::test]
async fn to_number_override_sandbox_and_missing_numbers() {
    let sink = HttpSink::start().await.expect("sink");
    let s = sender(
        "telnyx",
        json!({"api_key": "k", "from_number": "+1", "to_number": "+15555550999"}),
        &sink.url(""),
    );
    s.send(&sms()).await;
    assert_eq!(body_json(&sink.requests()[0].body)["to"], "+15555550999");

    let s = sender(
        "telnyx",
        json!({"api_key": "k", "from_number": "+1", "sandbox": true}),
        &sink.url(""),
    );
    let attempt = s.send(&sms()).await;
    assert!(matches!(attempt.outcome, Outcome::NotSent { .. }));
    assert_eq!(attempt.request["body"]["to"], "+15555550123");

    let mut no_number = sms();
    no_number.to.clear();
    let attempt = s.send(&no_number).await;
    assert!(matches!(attempt.outcome, Outcome::Permanent { .. }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink.requests().len(), 1);
}

#[tokio::test]
async fn bad_settings_are_refused() {
    let bad = [
        ("twilio", json!({"account_sid": "AC1", "auth_token": "t"})),
        ("vonage", json!({"api_key": "k", "from_number": "+1"})),
        ("plivo", json!({"auth_id": "a", "auth_token": "t"})),
        ("sns", json!({"region": "us-east-1"})),
        ("sinch", json!({"api_key": "k"})),
    ];
    for (provider, settings) in bad {
        assert!(
            SmsSender::new(provider, &settings, http(true)).is_err(),
            "{provider} {settings}"
        );
    }
    // A settings value that would change the URL's path is refused before any request.
    let sink = HttpSink::start().await.expect("sink");
    let s = sender(
        "twilio",
        json!({"account_sid": "AC1/../x", "auth_token": "t", "from_number": "+1"}),
        &sink.url(""),
    );
    let attempt = s.send(&sms()).await;
    assert!(matches!(attempt.outcome, Outcome::Permanent { .. }));
    assert!(sink.requests().is_empty());
}
