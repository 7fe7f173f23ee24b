//! APNs over HTTP/2 (h2c against a loopback server): the provider JWT (ES256, verified
//! with the key's public half), the exact request, and dead tokens.

mod provider_support;

use std::collections::HashSet;
use std::time::Duration;

use hark_channels::outbound::OutboundPolicy;
use hark_channels::provider::ProviderHttp;
use hark_channels::push::apns::{ApnsClient, ApnsSettings};
use hark_channels::push::{invalid_tokens, DeliveryType, PushMessage};
use hark_channels::testing::HttpSink;
use hark_channels::{DeliveryAttempt, Outcome};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use provider_support::{assert_redacted, failure_cases, header, json_header};
use serde_json::{json, Map, Value};

/// A P-256 key made for this test only.
const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgqbWaY9JDbHmsXiF/
cz7i+mHc2Oyzg4pn02P0q67i0PahRANCAATOVLuaEQ30SCg/t34Q4b9ioyL87bm/
7HqRiPLZw4/hBO32IkKwxlT+AhyL4PkwTVypLk6KY5ry8shWtA0jYS0t
-----END PRIVATE KEY-----
";
const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzlS7mhEN9EgoP7d+EOG/YqMi/O25
v+x6kYjy2cOP4QTt9iJCsMZU/gIci+D5ME1cqS5OimOa8vLIVrQNI2EtLQ==
-----END PUBLIC KEY-----
";
const TOKEN_A: &str = "a1b2c3d4";
const TOKEN_B: &str = "ffee0011";
const MESSAGE_ID: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

fn client(base_url: &str) -> ApnsClient {
    let http = ProviderHttp::new_http2(
        OutboundPolicy {
            allow_private_networks: true,
        },
        Duration::from_secs(2),
    )
    .expect("client");
    ApnsClient::new(
        ApnsSettings {
            key_id: "KEY123".into(),
            team_id: "TEAM456".into(),
            bundle_id: "com.example.app".into(),
            private_key: PRIVATE_KEY.into(),
            environment: None,
            base_url: Some(base_url.into()),
            sandbox: false,
        },
        http,
    )
    .expect("apns client")
}

fn message() -> PushMessage {
    let mut data = Map::new();
    data.insert("order".into(), json!(7));
    PushMessage {
        title: Some("Shipped".into()),
        body: "Order 7 shipped".into(),
        data,
        delivery_type: DeliveryType::Content,
        payload_overrides: Some(json!({"aps": {"badge": 1}})),
        message_id: MESSAGE_ID.into(),
    }
}

fn tokens(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

async fn first_attempt(client: &ApnsClient) -> DeliveryAttempt {
    let mut results = client.send(&tokens(&[TOKEN_A]), &message()).await;
    results.remove(0).attempt
}

#[tokio::test]
async fn sends_over_http2_with_a_signed_provider_token() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        vec![("apns-id".into(), MESSAGE_ID.into())],
        String::new(),
    );
    sink.push_response(
        410,
        json_header(),
        r#"{"reason":"Unregistered","timestamp":1700000000000}"#.into(),
    );
    let apns = client(&sink.url(""));
    let results = apns.send(&tokens(&[TOKEN_A, TOKEN_B]), &message()).await;
    assert_eq!(results[0].attempt.outcome, Outcome::Sent);
    assert_eq!(results[0].attempt.service_name, "apns");
    assert!(matches!(
        results[1].attempt.outcome,
        Outcome::Permanent { .. }
    ));
    assert_eq!(invalid_tokens(&results), tokens(&[TOKEN_B]));

    let requests = sink.requests();
    let r = &requests[0];
    assert_eq!(r.http_version, "HTTP/2.0");
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/3/device/a1b2c3d4")
    );
    assert_eq!(header(r, "apns-topic"), "com.example.app");
    assert_eq!(header(r, "apns-push-type"), "alert");
    assert_eq!(header(r, "apns-priority"), "10");
    assert_eq!(header(r, "apns-id"), MESSAGE_ID);
    let body: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(
        body,
        json!({"aps": {"alert": {"title": "Shipped", "body": "Order 7 shipped"}, "sound": "default", "badge": 1}, "order": 7})
    );

    // The provider token: ES256 by the team's key, reused for the second device.
    let jwt = header(r, "authorization")
        .strip_prefix("bearer ")
        .expect("bearer token")
        .to_string();
    assert_eq!(
        header(&requests[1], "authorization"),
        format!("bearer {jwt}")
    );
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    let decoded = jsonwebtoken::decode::<Value>(
        &jwt,
        &DecodingKey::from_ec_pem(PUBLIC_KEY.as_bytes()).expect("public key"),
        &validation,
    )
    .expect("the provider token verifies against the key");
    assert_eq!(decoded.header.kid.as_deref(), Some("KEY123"));
    assert_eq!(decoded.claims["iss"], "TEAM456");
    assert!(decoded.claims["iat"].as_u64().is_some());
    for result in &results {
        assert_redacted(&result.attempt, &[&jwt]);
    }
}

#[tokio::test]
async fn silent_pushes_and_bad_tokens() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(400, json_header(), r#"{"reason":"BadDeviceToken"}"#.into());
    let apns = client(&sink.url(""));
    let mut silent = message();
    silent.delivery_type = DeliveryType::Silent;
    silent.payload_overrides = None;
    let results = apns.send(&tokens(&[TOKEN_A, "../../x"]), &silent).await;
    assert_eq!(invalid_tokens(&results), tokens(&[TOKEN_A]));
    assert!(matches!(
        results[1].attempt.outcome,
        Outcome::Permanent { .. }
    ));
    let requests = sink.requests();
    assert_eq!(requests.len(), 1, "a malformed token is never sent");
    assert_eq!(header(&requests[0], "apns-push-type"), "background");
    assert_eq!(header(&requests[0], "apns-priority"), "5");
    assert_eq!(
        serde_json::from_str::<Value>(&requests[0].body).expect("json"),
        json!({"aps": {"content-available": 1}, "order": 7})
    );
}

#[tokio::test]
async fn failures_are_classified() {
    failure_cases(
        (400, r#"{"reason":"PayloadEmpty"}"#),
        &["bearer ey"],
        |base| {
            let apns = client(&base);
            async move { first_attempt(&apns).await }
        },
    )
    .await;
}
