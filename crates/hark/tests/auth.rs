//! Public keys and user tokens (enhanced security), on SQLite and PostgreSQL.

mod support;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;
use support::{feed_step, Backend, TestServer, START_MS};

on_both_stores!(
    public_key_reaches_only_user_routes,
    user_tokens_scope_a_public_key
);

struct Signer {
    private_pem: String,
    public_pem: String,
}

fn signer() -> Signer {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa key");
    Signer {
        private_pem: key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
        public_pem: key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem"),
    }
}

fn token(s: &Signer, claims: serde_json::Value, alg: Algorithm) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(s.private_pem.as_bytes()).expect("key"),
        // The classic confusion attack: HMAC keyed with the public key.
        _ => EncodingKey::from_secret(s.public_pem.as_bytes()),
    };
    encode(&Header::new(alg), &claims, &key).expect("token")
}

async fn public_key_reaches_only_user_routes(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("w", json!([feed_step("f", "x")])).await;
    s.trigger("w", json!({"recipients": ["a", "b"]})).await;
    s.run_engine().await;
    let pk = s.public_key.clone();
    // Development has enhanced security off: the public key names any user.
    let (status, feed) = s
        .call_with("GET", "/v1/users/a/feeds/in-app-feed", None, &pk, &[])
        .await;
    assert_eq!(status, 200, "{feed}");
    assert_eq!(feed["entries"].as_array().map(Vec::len), Some(1));
    for (method, path) in [
        ("GET", "/v1/users"),
        ("GET", "/v1/messages"),
        ("GET", "/v1/workflow_recipient_runs"),
        ("DELETE", "/v1/users/a"),
    ] {
        let (status, body) = s.call_with(method, path, None, &pk, &[]).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(body["code"], "secret_key_required");
    }
}

async fn user_tokens_scope_a_public_key(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let dev = s.env_id("development").await;
    let keys = signer();
    s.store
        .add_signing_key(&dev, &keys.public_pem, START_MS)
        .await
        .expect("signing key");
    s.store
        .set_enhanced_security(&dev, true)
        .await
        .expect("enhance");
    s.put_workflow("w", json!([feed_step("f", "x")])).await;
    s.trigger("w", json!({"recipients": ["a", "b"]})).await;
    s.run_engine().await;
    let b_message = s.messages_of("b").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let pk = s.public_key.clone();
    let exp = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        + 3600) as i64;

    let (status, body) = s
        .call_with("GET", "/v1/users/a/feeds/in-app-feed", None, &pk, &[])
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("missing_user_token"))
    );

    let good = token(&keys, json!({"sub": "a", "exp": exp}), Algorithm::RS256);
    let (status, feed) = s
        .call_with(
            "GET",
            "/v1/users/a/feeds/in-app-feed",
            None,
            &pk,
            &[("X-Knock-User-Token", &good)],
        )
        .await;
    assert_eq!(status, 200, "{feed}");
    let a_message = feed["entries"][0]["id"].as_str().expect("id").to_string();
    let (status, _) = s
        .call_with(
            "PUT",
            &format!("/v1/messages/{a_message}/read"),
            None,
            &pk,
            &[("X-Knock-User-Token", &good)],
        )
        .await;
    assert_eq!(status, 200);

    // A's token never reads B's feed nor marks B's messages.
    let (status, _) = s
        .call_with(
            "GET",
            "/v1/users/b/feeds/in-app-feed",
            None,
            &pk,
            &[("X-Knock-User-Token", &good)],
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call_with(
            "PUT",
            &format!("/v1/messages/{b_message}/read"),
            None,
            &pk,
            &[("X-Knock-User-Token", &good)],
        )
        .await;
    assert_eq!(status, 404);
    let (status, updated) = s
        .call_with(
            "POST",
            "/v1/messages/batch/read",
            Some(json!({"message_ids": [b_message]})),
            &pk,
            &[("X-Knock-User-Token", &good)],
        )
        .await;
    assert_eq!((status, updated.as_array().map(Vec::len)), (200, Some(0)));
    let (_, b_msg) = s
        .call("GET", &format!("/v1/messages/{b_message}"), None)
        .await;
    assert!(b_msg["read_at"].is_null(), "B's message is untouched");

    let expired = token(&keys, json!({"sub": "a", "exp": 1_000}), Algorithm::RS256);
    let no_sub = token(&keys, json!({"exp": exp}), Algorithm::RS256);
    let hs256 = token(&keys, json!({"sub": "a", "exp": exp}), Algorithm::HS256);
    let other_key = token(&signer(), json!({"sub": "a", "exp": exp}), Algorithm::RS256);
    let none_alg = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            e.encode(br#"{"alg":"none","typ":"JWT"}"#),
            e.encode(format!(r#"{{"sub":"a","exp":{exp}}}"#))
        )
    };
    for (name, bad) in [
        ("expired", expired),
        ("no sub", no_sub),
        ("hs256", hs256),
        ("other key", other_key),
        ("alg none", none_alg),
    ] {
        let (status, body) = s
            .call_with(
                "GET",
                "/v1/users/a/feeds/in-app-feed",
                None,
                &pk,
                &[("X-Knock-User-Token", &bad)],
            )
            .await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["code"], "invalid_user_token", "{name}");
    }
}
