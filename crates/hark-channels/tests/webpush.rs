//! Web Push against a loopback push service: the receiver decrypts what arrived with the
//! subscription's private key, the VAPID token verifies, dead subscriptions are reported.

mod provider_support;

use std::collections::HashSet;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hark_channels::push::webpush::{
    Subscription, SubscriptionKeys, WebPushClient, WebPushSettings,
};
use hark_channels::push::{invalid_tokens, DeliveryType, PushMessage};
use hark_channels::testing::HttpSink;
use hark_channels::Outcome;
use hkdf::Hkdf;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use provider_support::{assert_redacted, failure_cases, header, http};
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// The browser's keys from RFC 8291's example.
const UA_PUBLIC: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
/// A VAPID key made for this test only.
const VAPID_PRIVATE: &str = "qbWaY9JDbHmsXiF_cz7i-mHc2Oyzg4pn02P0q67i0PY";

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

fn client() -> WebPushClient {
    WebPushClient::new(
        WebPushSettings {
            vapid_private_key: VAPID_PRIVATE.into(),
            vapid_subject: "mailto:ops@example.com".into(),
            ttl_seconds: Some(3600),
            sandbox: false,
        },
        http(true),
    )
    .expect("client")
}

fn subscription(endpoint: String) -> Subscription {
    Subscription {
        endpoint,
        keys: SubscriptionKeys {
            p256dh: UA_PUBLIC.into(),
            auth: AUTH.into(),
        },
    }
}

fn message() -> PushMessage {
    let mut data = Map::new();
    data.insert("order".into(), json!(7));
    PushMessage {
        title: Some("Shipped".into()),
        body: "Order 7 shipped".into(),
        data,
        delivery_type: DeliveryType::Content,
        payload_overrides: Some(json!({"icon": "/icon.png"})),
        message_id: "msg_1".into(),
    }
}

/// What the browser does: RFC 8291 decryption with its private key.
fn decrypt(body: &[u8]) -> Vec<u8> {
    let salt = &body[..16];
    let record_size = u32::from_be_bytes(body[16..20].try_into().expect("rs"));
    assert_eq!(record_size, 4096);
    let id_len = body[20] as usize;
    let as_public = &body[21..21 + id_len];
    let ciphertext = &body[21 + id_len..];
    let ua_secret = SecretKey::from_slice(&b64(UA_PRIVATE)).expect("ua key");
    let as_key = PublicKey::from_sec1_bytes(as_public).expect("sender key");
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_key.as_affine());
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(ua_secret.public_key().to_encoded_point(false).as_bytes());
    info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&b64(AUTH)), shared.raw_secret_bytes())
        .expand(&info, &mut ikm)
        .expect("ikm");
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .expect("cek");
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .expect("nonce");
    let mut plain = Aes128Gcm::new_from_slice(&cek)
        .expect("cipher")
        .decrypt(Nonce::from_slice(&nonce), ciphertext)
        .expect("decrypts");
    assert_eq!(plain.pop(), Some(2), "last-record delimiter");
    plain
}

#[tokio::test]
async fn encrypted_payload_and_vapid() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(201, vec![], String::new());
    sink.push_response(
        410,
        vec![],
        "push subscription has unsubscribed or expired".into(),
    );
    let push = client();
    let live = subscription(sink.url("/wpush/v2/live-secret"));
    let gone = subscription(sink.url("/wpush/v2/gone-secret"));
    let results = push.send(&[live.clone(), gone.clone()], &message()).await;
    assert_eq!(results[0].attempt.outcome, Outcome::Sent);
    assert_eq!(results[0].attempt.service_name, "web_push");
    assert!(matches!(
        results[1].attempt.outcome,
        Outcome::Permanent { .. }
    ));
    assert_eq!(invalid_tokens(&results), vec![gone.endpoint.clone()]);

    let requests = sink.requests();
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/wpush/v2/live-secret")
    );
    assert_eq!(header(r, "content-encoding"), "aes128gcm");
    assert_eq!(header(r, "content-type"), "application/octet-stream");
    assert_eq!(header(r, "ttl"), "3600");
    assert_eq!(header(r, "urgency"), "normal");

    // The sink keeps bodies as lossy UTF-8, so read the bytes back from the raw request.
    let raw = r.body_bytes.clone();
    let plaintext: Value = serde_json::from_slice(&decrypt(&raw)).expect("json payload");
    assert_eq!(
        plaintext,
        json!({"title": "Shipped", "body": "Order 7 shipped", "data": {"order": 7}, "icon": "/icon.png"})
    );

    let authorization = header(r, "authorization");
    let (token, key) = authorization
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .expect("vapid t=…, k=…");
    assert_eq!(key, push.public_key());
    let point = b64(key);
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims = HashSet::from(["exp".to_string()]);
    let origin = sink.url("");
    validation.set_audience(&[origin.as_str()]);
    let decoded = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_ec_components(
            &URL_SAFE_NO_PAD.encode(&point[1..33]),
            &URL_SAFE_NO_PAD.encode(&point[33..65]),
        )
        .expect("public key"),
        &validation,
    )
    .expect("the VAPID token verifies against the application server key");
    assert_eq!(decoded.claims["sub"], "mailto:ops@example.com");

    for result in &results {
        assert_redacted(&result.attempt, &["live-secret", "gone-secret", token]);
    }
    assert_eq!(results[0].attempt.request["path"], "/[REDACTED]");
}

#[tokio::test]
async fn bad_subscriptions_and_failures() {
    let sink = HttpSink::start().await.expect("sink");
    let push = client();
    let mut bad = subscription(sink.url("/x"));
    bad.keys.auth = "AAAA".into();
    let results = push.send(&[bad], &message()).await;
    assert!(
        matches!(&results[0].attempt.outcome, Outcome::Permanent { reason } if reason.contains("auth"))
    );
    let mut silent = message();
    silent.delivery_type = DeliveryType::Silent;
    silent.payload_overrides = None;
    push.send(&[subscription(sink.url("/s"))], &silent).await;
    let requests = sink.requests();
    assert_eq!(requests.len(), 1, "a bad subscription is never sent");
    let plaintext: Value = serde_json::from_slice(&decrypt(&requests[0].body_bytes)).expect("json");
    assert_eq!(plaintext, json!({"data": {"order": 7}}));

    failure_cases((400, "UnauthorizedRegistration"), &["sub-secret"], |base| {
        let push = client();
        let target = subscription(format!("{base}/wpush/sub-secret"));
        async move {
            let mut results = push.send(&[target], &message()).await;
            results.remove(0).attempt
        }
    })
    .await;
}
