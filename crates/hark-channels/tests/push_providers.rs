//! Expo, OneSignal and FCM against a loopback server answering like each: one request
//! per token, the exact payload, dead tokens reported, and FCM's OAuth exchange with a
//! verified RS256 assertion and a cached access token.

mod provider_support;

use hark_channels::push::expo::{self, ExpoSettings};
use hark_channels::push::fcm::{FcmClient, FcmSettings};
use hark_channels::push::onesignal::{self, OneSignalSettings};
use hark_channels::push::{invalid_tokens, DeliveryType, PushMessage};
use hark_channels::testing::HttpSink;
use hark_channels::Outcome;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use provider_support::{assert_redacted, failure_cases, form, header, http, json_header};
use serde_json::{json, Map, Value};

fn message() -> PushMessage {
    let mut data = Map::new();
    data.insert("order".into(), json!(7));
    PushMessage {
        title: Some("Shipped".into()),
        body: "Order 7 shipped".into(),
        data,
        delivery_type: DeliveryType::Content,
        payload_overrides: None,
        message_id: "msg_1".into(),
    }
}

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).expect("json body")
}

fn tokens(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

#[tokio::test]
async fn expo_one_request_per_token_and_dead_tokens() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        json_header(),
        r#"{"data":[{"status":"ok","id":"XXXX-1"}]}"#.into(),
    );
    sink.push_response(
        200,
        json_header(),
        r#"{"data":[{"status":"error","message":"\"ExponentPushToken[b]\" is not a registered push notification recipient","details":{"error":"DeviceNotRegistered"}}]}"#.into(),
    );
    let settings = ExpoSettings {
        access_token: Some("expo-secret".into()),
        base_url: Some(sink.url("")),
        sandbox: false,
    };
    let client = http(true);
    let mut msg = message();
    msg.payload_overrides = Some(json!({"sound": "default", "data": {"extra": true}}));
    let results = expo::send(
        &client,
        &settings,
        &tokens(&["ExponentPushToken[a]", "ExponentPushToken[b]"]),
        &msg,
    )
    .await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].attempt.outcome, Outcome::Sent);
    assert!(
        matches!(&results[1].attempt.outcome, Outcome::Permanent { reason } if reason.contains("DeviceNotRegistered"))
    );
    assert_eq!(invalid_tokens(&results), tokens(&["ExponentPushToken[b]"]));
    let r = &sink.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/--/api/v2/push/send")
    );
    assert_eq!(header(r, "authorization"), "Bearer expo-secret");
    assert_eq!(
        body_json(&r.body),
        json!([{"to": "ExponentPushToken[a]", "title": "Shipped", "body": "Order 7 shipped",
                "data": {"order": 7, "extra": true}, "sound": "default"}])
    );
    assert_redacted(&results[0].attempt, &["expo-secret"]);

    // Silent: no visible fields.
    let mut silent = message();
    silent.delivery_type = DeliveryType::Silent;
    expo::send(
        &client,
        &settings,
        &tokens(&["ExponentPushToken[a]"]),
        &silent,
    )
    .await;
    assert_eq!(
        body_json(&sink.requests()[2].body),
        json!([{"to": "ExponentPushToken[a]", "data": {"order": 7}, "_contentAvailable": true}])
    );

    failure_cases(
        (
            400,
            r#"{"errors":[{"code":"VALIDATION_ERROR","message":"\"to\" is required"}]}"#,
        ),
        &["expo-secret"],
        |base| {
            let client = client.clone();
            let settings = ExpoSettings {
                base_url: Some(base),
                ..settings.clone()
            };
            async move {
                let mut results = expo::send(
                    &client,
                    &settings,
                    &tokens(&["ExponentPushToken[a]"]),
                    &message(),
                )
                .await;
                results.remove(0).attempt
            }
        },
    )
    .await;
}

#[tokio::test]
async fn onesignal_targets_subscriptions() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        json_header(),
        r#"{"id":"b98881cc-1e94-4366-bbd9-db8f3429292b","external_id":"msg_1"}"#.into(),
    );
    sink.push_response(
        200,
        json_header(),
        r#"{"id":"","errors":{"invalid_player_ids":["sub-2"]}}"#.into(),
    );
    let settings = OneSignalSettings {
        app_id: "app-1".into(),
        api_key: "os-secret".into(),
        base_url: Some(sink.url("")),
        sandbox: false,
    };
    let client = http(true);
    let results =
        onesignal::send(&client, &settings, &tokens(&["sub-1", "sub-2"]), &message()).await;
    assert_eq!(results[0].attempt.outcome, Outcome::Sent);
    assert!(matches!(
        results[1].attempt.outcome,
        Outcome::Permanent { .. }
    ));
    assert_eq!(invalid_tokens(&results), tokens(&["sub-2"]));
    let r = &sink.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/notifications")
    );
    assert_eq!(header(r, "authorization"), "Key os-secret");
    assert_eq!(
        body_json(&r.body),
        json!({"app_id": "app-1", "target_channel": "push", "include_subscription_ids": ["sub-1"],
               "data": {"order": 7}, "external_id": "msg_1",
               "contents": {"en": "Order 7 shipped"}, "headings": {"en": "Shipped"}})
    );
    assert_redacted(&results[0].attempt, &["os-secret"]);

    failure_cases(
        (
            400,
            r#"{"errors":["Message Notifications must have English language content"]}"#,
        ),
        &["os-secret"],
        |base| {
            let client = client.clone();
            let settings = OneSignalSettings {
                base_url: Some(base),
                ..settings.clone()
            };
            async move {
                let mut results =
                    onesignal::send(&client, &settings, &tokens(&["sub-1"]), &message()).await;
                results.remove(0).attempt
            }
        },
    )
    .await;
}

struct ServiceAccountKey {
    private_pem: String,
    public_pem: String,
}

fn service_account_key() -> ServiceAccountKey {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa key");
    ServiceAccountKey {
        private_pem: key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
        public_pem: key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("public pem"),
    }
}

fn fcm_settings(key: &ServiceAccountKey, token_uri: &str, base_url: &str) -> FcmSettings {
    FcmSettings {
        service_account: json!({
            "type": "service_account", "project_id": "hark-test", "private_key_id": "kid-1",
            "private_key": key.private_pem, "client_email": "hark@hark-test.iam.gserviceaccount.com",
            "token_uri": token_uri,
        }),
        base_url: Some(base_url.to_string()),
        sandbox: false,
    }
}

fn token_answer(sink: &HttpSink, token: &str) {
    sink.push_response(
        200,
        json_header(),
        json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).to_string(),
    );
}

#[tokio::test]
async fn fcm_exchanges_a_signed_assertion_and_caches_the_token() {
    let key = service_account_key();
    let oauth = HttpSink::start().await.expect("oauth sink");
    let fcm = HttpSink::start().await.expect("fcm sink");
    token_answer(&oauth, "ya29.access-secret");
    fcm.push_response(
        200,
        json_header(),
        r#"{"name":"projects/hark-test/messages/0:1"}"#.into(),
    );
    fcm.push_response(
        404,
        json_header(),
        r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#.into(),
    );
    let token_uri = oauth.url("/token");
    let client =
        FcmClient::new(&fcm_settings(&key, &token_uri, &fcm.url("")), http(true)).expect("client");
    let results = client.send(&tokens(&["tok-a", "tok-b"]), &message()).await;
    assert_eq!(results[0].attempt.outcome, Outcome::Sent);
    assert!(
        matches!(&results[1].attempt.outcome, Outcome::Permanent { reason } if reason.contains("404"))
    );
    assert_eq!(invalid_tokens(&results), tokens(&["tok-b"]));

    // One token exchange for both sends, with an assertion signed by the account's key.
    let token_requests = oauth.requests();
    assert_eq!(token_requests.len(), 1);
    let t = &token_requests[0];
    assert_eq!((t.method.as_str(), t.path.as_str()), ("POST", "/token"));
    let fields = form(&t.body);
    assert_eq!(
        fields[0],
        (
            "grant_type".into(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into()
        )
    );
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[token_uri.as_str()]);
    validation.set_issuer(&["hark@hark-test.iam.gserviceaccount.com"]);
    let decoded = jsonwebtoken::decode::<Value>(
        &fields[1].1,
        &DecodingKey::from_rsa_pem(key.public_pem.as_bytes()).expect("public key"),
        &validation,
    )
    .expect("assertion verifies against the service account's public key");
    assert_eq!(decoded.header.kid.as_deref(), Some("kid-1"));
    assert_eq!(
        decoded.claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    let lifetime =
        decoded.claims["exp"].as_u64().expect("exp") - decoded.claims["iat"].as_u64().expect("iat");
    assert_eq!(lifetime, 3600);

    let r = &fcm.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/projects/hark-test/messages:send")
    );
    assert_eq!(header(r, "authorization"), "Bearer ya29.access-secret");
    assert_eq!(
        body_json(&r.body),
        json!({"message": {"token": "tok-a", "data": {"order": "7"},
                           "notification": {"title": "Shipped", "body": "Order 7 shipped"}}})
    );
    assert_eq!(
        header(&fcm.requests()[1], "authorization"),
        "Bearer ya29.access-secret"
    );
    for result in &results {
        assert_redacted(&result.attempt, &["ya29.access-secret", "PRIVATE KEY"]);
    }

    // Silent messages carry no notification; overrides are merged into the message.
    let mut silent = message();
    silent.delivery_type = DeliveryType::Silent;
    silent.payload_overrides = Some(json!({"android": {"priority": "high"}}));
    client.send(&tokens(&["tok-a"]), &silent).await;
    assert_eq!(
        body_json(&fcm.requests()[2].body),
        json!({"message": {"token": "tok-a", "data": {"order": "7"},
                           "apns": {"headers": {"apns-push-type": "background", "apns-priority": "5"},
                                    "payload": {"aps": {"content-available": 1}}},
                           "android": {"priority": "high"}}})
    );
    assert_eq!(oauth.requests().len(), 1, "the token is still cached");
}

#[tokio::test]
async fn fcm_token_failures_and_provider_failures() {
    let key = service_account_key();
    let oauth = HttpSink::start().await.expect("oauth sink");
    oauth.push_response(
        400,
        json_header(),
        r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#.into(),
    );
    let fcm = HttpSink::start().await.expect("fcm sink");
    let client = FcmClient::new(
        &fcm_settings(&key, &oauth.url("/token"), &fcm.url("")),
        http(true),
    )
    .expect("client");
    let results = client.send(&tokens(&["tok-a"]), &message()).await;
    let attempt = &results[0].attempt;
    assert!(
        matches!(&attempt.outcome, Outcome::Permanent { reason } if reason.contains("invalid_grant"))
    );
    assert_eq!(attempt.request["path"], "/token");
    assert_eq!(attempt.request["body"]["assertion"], "[REDACTED]");
    assert!(fcm.requests().is_empty());

    for _ in 0..5 {
        token_answer(&oauth, "ya29.access-secret");
    }
    failure_cases(
        (
            400,
            r#"{"error":{"code":400,"message":"Invalid value at 'message.data[0].value'","status":"INVALID_ARGUMENT"}}"#,
        ),
        &["ya29.access-secret"],
        |base| {
            let client = FcmClient::new(&fcm_settings(&key, &oauth.url("/token"), &base), http(true))
                .expect("client");
            async move {
                let mut results = client.send(&tokens(&["tok-a"]), &message()).await;
                results.remove(0).attempt
            }
        },
    )
    .await;

    assert!(FcmClient::new(
        &FcmSettings {
            service_account: json!({"project_id": "p", "client_email": "e", "private_key": "not a key"}),
            base_url: None,
            sandbox: false,
        },
        http(true)
    )
    .is_err());
}
