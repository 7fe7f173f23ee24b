//! Provider status callbacks end to end: a message sent through a loopback provider, then
//! the provider's callback, signed the way that provider signs it (keys and signatures
//! made here), moves it to `delivered`, `bounced` or `undelivered`; unsigned or badly
//! signed callbacks get 401 and change nothing. On SQLite and PostgreSQL.

mod support;

use base64::Engine as _;
use hark_channels::testing::HttpSink;
use hark_engine::ChannelConfig;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{json, Value};
use support::{Backend, TestServer};

on_both_stores!(
    sendgrid_events_are_verified_and_applied,
    postmark_callbacks_need_the_webhook_credentials,
    mailgun_signature_is_checked,
    twilio_status_callback_is_signed_over_url_and_params,
    callbacks_need_a_configured_channel_and_secret,
);

const TWILIO_CALLBACK_URL: &str = "https://hark.example.com/v1/providers/sms/callbacks";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn channel(key: &str, channel_type: &str, provider: &str, settings: Value) -> ChannelConfig {
    serde_json::from_value(json!({
        "key": key, "type": channel_type, "provider": provider, "settings": settings,
    }))
    .expect("channel config")
}

fn email_step() -> Value {
    json!([{"type": "channel", "ref": "email", "channel_key": "email",
            "template": {"subject": "Hi", "html_body": "<p>Hello {{ recipient.name }}</p>"}}])
}

/// Sends one email to each of `users` and returns their message ids, in order.
async fn send_emails(s: &TestServer, users: &[&str]) -> Vec<String> {
    s.put_workflow("mail", email_step()).await;
    let recipients: Vec<Value> = users
        .iter()
        .map(|u| json!({"id": u, "name": u, "email": format!("{u}@example.com")}))
        .collect();
    let (status, _) = s.trigger("mail", json!({"recipients": recipients})).await;
    assert_eq!(status, 200);
    s.run_engine().await;
    let mut ids = Vec::new();
    for user in users {
        let message = &s.messages_of(user).await[0];
        assert_eq!(message["status"], "sent");
        ids.push(message["id"].as_str().expect("id").to_string());
    }
    ids
}

/// The Hark message id carried by the sink's `index`-th request: deliveries run in any
/// order, and the `index`-th scripted answer (with its provider id) went to that one.
fn message_of_request(sink: &HttpSink, index: usize, ids: &[String]) -> String {
    let body = &sink.requests()[index].body;
    ids.iter()
        .find(|id| body.contains(id.as_str()))
        .expect("the request names its message")
        .clone()
}

async fn post_callback(
    s: &TestServer,
    channel: &str,
    headers: &[(&str, String)],
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let mut request = s
        .http
        .post(format!("{}/v1/providers/{channel}/callbacks", s.base))
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("callback");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn status_of(s: &TestServer, id: &str) -> String {
    let (_, message) = s.call("GET", &format!("/v1/messages/{id}"), None).await;
    message["status"].as_str().unwrap_or_default().to_string()
}

async fn event_types(s: &TestServer, id: &str) -> Vec<String> {
    let (_, events) = s
        .call("GET", &format!("/v1/messages/{id}/events"), None)
        .await;
    events["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn assert_refused(status: u16, body: &Value) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "invalid_signature");
    assert_eq!(body["type"], "authentication_error");
    assert_eq!(body["status"], 401);
}

async fn sendgrid_events_are_verified_and_applied(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    // The second send gets a provider id that its callback will name instead of Hark's.
    sink.push_response(
        202,
        vec![("X-Message-Id".into(), "sg-1".into())],
        String::new(),
    );
    sink.push_response(
        202,
        vec![("X-Message-Id".into(), "sg-2".into())],
        String::new(),
    );
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let public_der = p256::PublicKey::from(key.verifying_key())
        .to_public_key_der()
        .expect("public key der");
    let settings = json!({"api_key": "SG.secret", "base_url": sink.url(""),
                          "from_address": "shop@example.com",
                          "webhook_verification_key": b64(public_der.as_bytes())});
    let s = TestServer::start(
        backend,
        vec![channel("email", "email", "sendgrid", settings)],
    )
    .await;
    let ids = send_emails(&s, &["ada", "bob"]).await;
    // `bob` is found by the provider id its send was answered with, `ada` by Hark's id.
    let bob = &message_of_request(&sink, 0, &ids);
    let ada = ids.iter().find(|id| *id != bob).expect("other message");

    let body = json!([
        {"event": "processed", "hark_message_id": ada, "sg_message_id": "sg-2.filter1"},
        {"event": "delivered", "hark_message_id": ada, "sg_message_id": "sg-2.filter1"},
        {"event": "bounce", "type": "bounce", "reason": "550 no such user",
         "sg_message_id": "sg-1.filter1"},
    ])
    .to_string();
    let timestamp = "1700000000".to_string();
    let sign = |key: &SigningKey, body: &str| {
        let signature: Signature = key.sign(format!("{timestamp}{body}").as_bytes());
        b64(signature.to_der().as_bytes())
    };
    let headers = |signature: String| {
        vec![
            ("X-Twilio-Email-Event-Webhook-Signature", signature),
            ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp.clone()),
        ]
    };

    let (status, refused) = post_callback(&s, "email", &[], "application/json", body.clone()).await;
    assert_refused(status, &refused);
    let stranger = SigningKey::random(&mut rand::rngs::OsRng);
    let (status, refused) = post_callback(
        &s,
        "email",
        &headers(sign(&stranger, &body)),
        "application/json",
        body.clone(),
    )
    .await;
    assert_refused(status, &refused);
    // A signature over another body does not cover this one.
    let (status, refused) = post_callback(
        &s,
        "email",
        &headers(sign(&key, "[]")),
        "application/json",
        body.clone(),
    )
    .await;
    assert_refused(status, &refused);
    assert_eq!(
        status_of(&s, ada).await,
        "sent",
        "refused callbacks change nothing"
    );
    assert_eq!(status_of(&s, bob).await, "sent");

    let (status, answer) = post_callback(
        &s,
        "email",
        &headers(sign(&key, &body)),
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"received": 2, "applied": 2}));
    assert_eq!(status_of(&s, ada).await, "delivered");
    assert_eq!(status_of(&s, bob).await, "bounced");
    let bob_events = event_types(&s, bob).await;
    assert_eq!(bob_events[0], "message.bounced", "{bob_events:?}");
    let (_, events) = s
        .call("GET", &format!("/v1/messages/{bob}/events"), None)
        .await;
    assert_eq!(
        events["items"][0]["data"],
        json!({"provider": "sendgrid", "provider_event": "bounce", "reason": "550 no such user"})
    );
    assert_eq!(event_types(&s, ada).await[0], "message.delivered");

    // The same callback again, or a late `delivered` after the bounce, changes nothing.
    let (status, answer) = post_callback(
        &s,
        "email",
        &headers(sign(&key, &body)),
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["applied"], 0);
    let late = json!([{"event": "delivered", "hark_message_id": bob}]).to_string();
    post_callback(
        &s,
        "email",
        &headers(sign(&key, &late)),
        "application/json",
        late,
    )
    .await;
    assert_eq!(status_of(&s, bob).await, "bounced");
    assert_eq!(event_types(&s, bob).await.len(), bob_events.len());
}

async fn postmark_callbacks_need_the_webhook_credentials(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    let settings = json!({"server_token": "pm-token", "base_url": sink.url(""),
                          "from_address": "shop@example.com",
                          "webhook_username": "hark", "webhook_password": "s3cret"});
    let s = TestServer::start(
        backend,
        vec![channel("email", "email", "postmark", settings)],
    )
    .await;
    let ids = send_emails(&s, &["ada"]).await;
    let ada = &ids[0];
    let body = json!({"RecordType": "Bounce", "Type": "HardBounce", "MessageID": "pm-1",
                      "Description": "The server was unable to deliver your message",
                      "Metadata": {"hark_message_id": ada}})
    .to_string();
    let basic = |user: &str, password: &str| {
        vec![(
            "Authorization",
            format!("Basic {}", b64(format!("{user}:{password}").as_bytes())),
        )]
    };
    let (status, refused) = post_callback(&s, "email", &[], "application/json", body.clone()).await;
    assert_refused(status, &refused);
    let (status, refused) = post_callback(
        &s,
        "email",
        &basic("hark", "guess"),
        "application/json",
        body.clone(),
    )
    .await;
    assert_refused(status, &refused);
    assert_eq!(status_of(&s, ada).await, "sent");

    // By channel id as well as by key.
    let channel_id = s
        .engine
        .channels()
        .by_key("email")
        .expect("channel")
        .id
        .clone();
    let (status, answer) = post_callback(
        &s,
        &channel_id,
        &basic("hark", "s3cret"),
        "application/json",
        body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"], 1);
    assert_eq!(status_of(&s, ada).await, "bounced");
    assert_eq!(event_types(&s, ada).await[0], "message.bounced");
}

fn mailgun_body(signing_key: &str, token: &str, event: Value) -> String {
    let timestamp = "1700000000";
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(signing_key.as_bytes()).expect("key");
    mac.update(format!("{timestamp}{token}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    json!({"signature": {"timestamp": timestamp, "token": token, "signature": signature},
           "event-data": event})
    .to_string()
}

async fn mailgun_signature_is_checked(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        vec![],
        json!({"id": "<20240101.1@mg.example.com>", "message": "Queued. Thank you."}).to_string(),
    );
    let settings = json!({"api_key": "key-api", "domain": "mg.example.com",
                          "base_url": sink.url(""), "from_address": "shop@example.com",
                          "webhook_signing_key": "whsec-mailgun"});
    let s = TestServer::start(
        backend,
        vec![channel("email", "email", "mailgun", settings)],
    )
    .await;
    let ids = send_emails(&s, &["ada", "bob"]).await;
    let ada = &message_of_request(&sink, 0, &ids);
    let bob = ids.iter().find(|id| *id != ada).expect("other message");

    // Found by the Message-ID Mailgun gave the first send.
    let delivered = json!({"event": "delivered",
                           "message": {"headers": {"message-id": "20240101.1@mg.example.com"}}});
    let forged = mailgun_body("not-the-key", "tok1", delivered.clone());
    let (status, refused) = post_callback(&s, "email", &[], "application/json", forged).await;
    assert_refused(status, &refused);
    let (status, refused) =
        post_callback(&s, "email", &[], "application/json", delivered.to_string()).await;
    assert_refused(status, &refused);
    assert_eq!(status_of(&s, ada).await, "sent");

    let (status, answer) = post_callback(
        &s,
        "email",
        &[],
        "application/json",
        mailgun_body("whsec-mailgun", "tok1", delivered),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(status_of(&s, ada).await, "delivered");

    let failed = json!({"event": "failed", "severity": "permanent",
                        "user-variables": {"hark_message_id": bob},
                        "delivery-status": {"message": "mailbox does not exist"}});
    let (status, _) = post_callback(
        &s,
        "email",
        &[],
        "application/json",
        mailgun_body("whsec-mailgun", "tok2", failed),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(status_of(&s, bob).await, "bounced");
    // A delivered message may still bounce later; that is recorded too.
    let late_bounce = json!({"event": "failed", "severity": "permanent",
                             "user-variables": {"hark_message_id": ada}});
    post_callback(
        &s,
        "email",
        &[],
        "application/json",
        mailgun_body("whsec-mailgun", "tok3", late_bounce),
    )
    .await;
    assert_eq!(status_of(&s, ada).await, "bounced");
}

fn twilio_signature(auth_token: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut signed = TWILIO_CALLBACK_URL.to_string();
    for (name, value) in sorted {
        signed.push_str(name);
        signed.push_str(value);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("key");
    mac.update(signed.as_bytes());
    b64(&mac.finalize().into_bytes())
}

async fn twilio_status_callback_is_signed_over_url_and_params(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        201,
        vec![],
        json!({"sid": "SM0001", "status": "queued"}).to_string(),
    );
    let settings = json!({"account_sid": "AC1", "auth_token": "twilio-token",
                          "from_number": "+15550000000", "base_url": sink.url(""),
                          "status_callback_url": TWILIO_CALLBACK_URL});
    let s = TestServer::start(backend, vec![channel("sms", "sms", "twilio", settings)]).await;
    s.put_workflow(
        "text",
        json!([{"type": "channel", "ref": "sms", "channel_key": "sms",
                "template": {"text_body": "Your code is 1234"}}]),
    )
    .await;
    let (status, _) = s
        .trigger(
            "text",
            json!({"recipients": [{"id": "ada", "phone_number": "+15551234567"}]}),
        )
        .await;
    assert_eq!(status, 200);
    s.run_engine().await;
    let sent = &sink.requests()[0];
    let form: Vec<(String, String)> = url_form(&sent.body);
    assert!(
        form.contains(&("StatusCallback".into(), TWILIO_CALLBACK_URL.into())),
        "{form:?}"
    );
    let message = &s.messages_of("ada").await[0];
    let id = message["id"].as_str().expect("id").to_string();
    assert_eq!(message["status"], "sent");

    let params = [
        ("MessageSid", "SM0001"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("AccountSid", "AC1"),
    ];
    let body: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&");
    let form_type = "application/x-www-form-urlencoded";
    let (status, refused) = post_callback(
        &s,
        "sms",
        &[(
            "X-Twilio-Signature",
            twilio_signature("wrong-token", &params),
        )],
        form_type,
        body.clone(),
    )
    .await;
    assert_refused(status, &refused);
    // Signed for `delivered`, sent as `undelivered`.
    let mut tampered = params;
    tampered[1] = ("MessageStatus", "delivered");
    let (status, refused) = post_callback(
        &s,
        "sms",
        &[(
            "X-Twilio-Signature",
            twilio_signature("twilio-token", &tampered),
        )],
        form_type,
        body.clone(),
    )
    .await;
    assert_refused(status, &refused);
    assert_eq!(status_of(&s, &id).await, "sent");

    let (status, answer) = post_callback(
        &s,
        "sms",
        &[(
            "X-Twilio-Signature",
            twilio_signature("twilio-token", &params),
        )],
        form_type,
        body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"], 1);
    assert_eq!(status_of(&s, &id).await, "undelivered");
    let (_, events) = s
        .call("GET", &format!("/v1/messages/{id}/events"), None)
        .await;
    assert_eq!(events["items"][0]["type"], "message.undelivered");
    assert_eq!(events["items"][0]["data"]["reason"], "Twilio error 30003");
}

fn url_form(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn callbacks_need_a_configured_channel_and_secret(backend: Backend) {
    let sink = HttpSink::start().await.expect("sink");
    // Twilio without `status_callback_url`: nothing to check a signature against.
    let settings = json!({"account_sid": "AC1", "auth_token": "twilio-token",
                          "from_number": "+15550000000", "base_url": sink.url("")});
    let s = TestServer::start(backend, vec![channel("sms", "sms", "twilio", settings)]).await;
    let params = [("MessageSid", "SM0001"), ("MessageStatus", "delivered")];
    let signature = twilio_signature("twilio-token", &params);
    let form_type = "application/x-www-form-urlencoded";
    let body = "MessageSid=SM0001&MessageStatus=delivered".to_string();
    let (status, refused) = post_callback(
        &s,
        "sms",
        &[("X-Twilio-Signature", signature.clone())],
        form_type,
        body.clone(),
    )
    .await;
    assert_refused(status, &refused);
    let (status, missing) = post_callback(
        &s,
        "no-such-channel",
        &[("X-Twilio-Signature", signature)],
        form_type,
        body,
    )
    .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["code"], "resource_missing");
}
