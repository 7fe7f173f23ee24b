//! The realtime feed socket (`/ws/v1/websocket`, Phoenix Channels v2): joins, heartbeats,
//! per-reference filtering and counts, authentication, on SQLite and PostgreSQL; and a
//! message reaching a socket on another node sharing one PostgreSQL.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use support::process::*;
use support::{feed_step, Backend, TestServer, START_MS};
use tokio_tungstenite::tungstenite::Message;

on_both_stores!(
    pushes_new_messages_to_matching_references,
    refuses_bad_credentials_and_foreign_topics
);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Guards against a hang only; nothing here measures time.
const FRAME_WAIT: Duration = Duration::from_secs(30);

fn socket_url(base: &str, query: &str) -> String {
    format!("{}/ws/v1/websocket?{query}", base.replacen("http", "ws", 1))
}

async fn connect(base: &str, query: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(socket_url(base, query))
        .await
        .expect("websocket connect");
    socket
}

async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .expect("send frame");
}

async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(FRAME_WAIT, socket.next())
            .await
            .expect("a frame before the hang guard")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON frame");
        }
    }
}

/// Sends `frame` and returns the reply to it.
async fn request(socket: &mut Socket, frame: Value) -> Value {
    send(socket, frame).await;
    let reply = next_frame(socket).await;
    assert_eq!(reply[3], "phx_reply", "{reply}");
    reply
}

fn attn(frame: &Value) -> Vec<String> {
    let mut refs: Vec<String> = frame[4]["attn"]
        .as_array()
        .expect("attn")
        .iter()
        .map(|r| r.as_str().expect("ref").to_string())
        .collect();
    refs.sort();
    refs
}

async fn pushes_new_messages_to_matching_references(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow("w", json!([feed_step("f", "hello {{ recipient.id }}")]))
        .await;
    s.put_workflow("other", json!([feed_step("f", "other")]))
        .await;
    // Null client parameters arrive as empty query segments.
    let mut socket = connect(&s.base, &format!("&api_key={}&&vsn=2.0.0", s.public_key)).await;

    let reply = request(&mut socket, json!([null, "1", "phoenix", "heartbeat", {}])).await;
    assert_eq!(
        reply,
        json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}])
    );

    let topic = "feeds:in-app-feed:a";
    let refs = json!({
        "all": {"archived": "exclude", "page_size": 50, "mode": "compact"},
        "acme": {"tenant": "acme"},
        "globex": {"tenant": "globex"},
        "from_other": {"source": "other"},
        "untenanted": {"has_tenant": false},
        "read_only": {"status": "read"},
    });
    let reply = request(&mut socket, json!(["2", "2", topic, "phx_join", refs])).await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");

    // A message for tenant acme reaches the unfiltered and the acme references only.
    s.trigger("w", json!({"recipients": ["a"], "tenant": "acme"}))
        .await;
    s.run_engine().await;
    let push = next_frame(&mut socket).await;
    assert_eq!(push[0], "2", "tagged with its join: {push}");
    assert_eq!(push[1], Value::Null);
    assert_eq!(push[2], topic);
    assert_eq!(push[3], "new-message");
    assert_eq!(push[4]["event"], "new-message");
    assert_eq!(attn(&push), vec!["acme", "all"]);
    let all = &push[4]["data"]["all"]["metadata"];
    assert_eq!(
        (
            &all["total_count"],
            &all["unread_count"],
            &all["unseen_count"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    assert!(push[4]["data"].get("globex").is_none(), "{push}");

    // Another user's message is not pushed here: the next push on this socket is the
    // one for `a` that follows it (pushes keep commit order).
    s.trigger("w", json!({"recipients": ["b"]})).await;
    s.run_engine().await;
    s.trigger("other", json!({"recipients": ["a"]})).await;
    s.run_engine().await;
    let push = next_frame(&mut socket).await;
    assert_eq!(attn(&push), vec!["all", "from_other", "untenanted"]);
    let all = &push[4]["data"]["all"]["metadata"];
    assert_eq!(all["total_count"], 2, "{push}");
    // Counts follow each reference's own options.
    assert_eq!(
        push[4]["data"]["untenanted"]["metadata"]["total_count"], 1,
        "{push}"
    );

    // `read_only` never appeared: a new message is unread. Mark a's two messages read,
    // so the unread badge below counts only the next one.
    let (status, _) = s
        .call(
            "POST",
            "/v1/messages/batch/read",
            Some(json!({"message_ids": s.messages_of("a").await.iter()
                .filter_map(|m| m["id"].as_str().map(String::from)).collect::<Vec<_>>()})),
        )
        .await;
    assert_eq!(status, 200);

    // A re-join replaces the reference map and the join it is tagged with.
    let reply = request(
        &mut socket,
        json!(["5", "5", topic, "phx_join", {"globex": {"tenant": "globex"}, "unread": {"status": "unread"}}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    s.trigger("w", json!({"recipients": ["a"], "tenant": "globex"}))
        .await;
    s.run_engine().await;
    let push = next_frame(&mut socket).await;
    assert_eq!(push[0], "5");
    assert_eq!(attn(&push), vec!["globex", "unread"]);
    let unread = &push[4]["data"]["unread"]["metadata"];
    assert_eq!(
        (&unread["total_count"], &unread["unread_count"]),
        (&json!(3), &json!(1)),
        "badge counts ignore the status filter, as on the HTTP feed: {push}"
    );

    // After leaving a's topic nothing more arrives for it: with c's topic joined, the
    // next push is c's, although a's message was committed first.
    let reply = request(
        &mut socket,
        json!(["7", "7", "feeds:in-app-feed:c", "phx_join", {"c_ref": {}}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let reply = request(&mut socket, json!(["5", "8", topic, "phx_leave", {}])).await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    s.trigger("w", json!({"recipients": ["a"]})).await;
    s.run_engine().await;
    s.trigger("w", json!({"recipients": ["c"]})).await;
    s.run_engine().await;
    let push = next_frame(&mut socket).await;
    assert_eq!(push[2], "feeds:in-app-feed:c", "{push}");
    assert_eq!(attn(&push), vec!["c_ref"]);

    // c's feed joined a second time, naming the channel by id: leaving the first topic
    // leaves the feed joined through the second, which still hears c's messages.
    let (status, channel) = s.mgmt("GET", "/v1/channels/in-app-feed", None).await;
    assert_eq!(status, 200, "{channel}");
    let by_id = format!("feeds:{}:c", channel["id"].as_str().expect("channel id"));
    let reply = request(
        &mut socket,
        json!(["9", "9", by_id, "phx_join", {"by_id": {}}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let reply = request(
        &mut socket,
        json!(["7", "10", "feeds:in-app-feed:c", "phx_leave", {}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    s.trigger("w", json!({"recipients": ["c"]})).await;
    s.run_engine().await;
    let push = next_frame(&mut socket).await;
    assert_eq!(push[2], by_id.as_str(), "{push}");
    assert_eq!(attn(&push), vec!["by_id"]);
}

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

fn user_token(s: &Signer, user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        + 3600;
    encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": user, "exp": exp}),
        &EncodingKey::from_rsa_pem(s.private_pem.as_bytes()).expect("key"),
    )
    .expect("token")
}

/// The upgrade is refused with Knock's error body; returns (status, code).
async fn refused(base: &str, query: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(socket_url(base, query)).await {
        Ok(_) => panic!("socket opened for `{query}`"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("JSON error body");
            (
                response.status().as_u16(),
                body["code"].as_str().expect("code").to_string(),
            )
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

async fn refuses_bad_credentials_and_foreign_topics(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    assert_eq!(
        refused(&s.base, "vsn=2.0.0").await,
        (401, "api_key_missing".to_string())
    );
    assert_eq!(
        refused(&s.base, "api_key=pk_test_nope&vsn=2.0.0").await,
        (401, "invalid_api_key".to_string())
    );

    // Unknown topics and channels are refused at join.
    let mut socket = connect(&s.base, &format!("api_key={}&vsn=2.0.0", s.public_key)).await;
    let reply = request(&mut socket, json!(["1", "1", "guides:x", "phx_join", {}])).await;
    assert_eq!(reply[4]["status"], "error", "{reply}");
    let reply = request(
        &mut socket,
        json!(["2", "2", "feeds:no-such-channel:a", "phx_join", {}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "error", "{reply}");
    let reply = request(
        &mut socket,
        json!(["3", "3", "feeds:in-app-feed:a", "phx_join", {"r": {"archived": "sometimes"}}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "error", "{reply}");
    // A push on a topic never joined is answered, not acted on.
    let reply = request(
        &mut socket,
        json!(["4", "4", "feeds:in-app-feed:a", "new-message", {}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "error", "{reply}");

    // With enhanced security the token is required and names the only joinable user.
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
    assert_eq!(
        refused(&s.base, &format!("api_key={}&vsn=2.0.0", s.public_key)).await,
        (401, "missing_user_token".to_string())
    );
    let forged = user_token(&signer(), "a");
    assert_eq!(
        refused(
            &s.base,
            &format!("user_token={forged}&api_key={}&vsn=2.0.0", s.public_key)
        )
        .await
        .1,
        "invalid_user_token"
    );
    let token = user_token(&keys, "a");
    let mut socket = connect(
        &s.base,
        &format!(
            "user_token={token}&api_key={}&branch_slug=&vsn=2.0.0",
            s.public_key
        ),
    )
    .await;
    let reply = request(
        &mut socket,
        json!(["1", "1", "feeds:in-app-feed:b", "phx_join", {"r": {}}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "error", "{reply}");
    let reply = request(
        &mut socket,
        json!(["2", "2", "feeds:in-app-feed:a", "phx_join", {"r": {}}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");
}

/// Two `hark serve` processes on one PostgreSQL database: a socket on node B receives
/// every message triggered through node A. Both nodes run workers, so each message is
/// created by whichever node claims its job; a socket only ever learns of messages
/// through PostgreSQL's `NOTIFY`, so either way the event crosses the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_another_node_receives_the_message() {
    let t = target(true).await;
    let keys = cli_json(&t.args, &["keys", "create", "--environment", "development"]);
    let sk = keys["secret_key"].as_str().expect("sk").to_string();
    let pk = keys["public_key"].as_str().expect("pk").to_string();
    let token = cli_json(&t.args, &["tokens", "create"])["service_token"]
        .as_str()
        .expect("token")
        .to_string();
    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let mut node_a = spawn_server(&t.args, port_a, &t._dir.path().join("a.log"));
    let mut node_b = spawn_server(&t.args, port_b, &t._dir.path().join("b.log"));
    wait_healthy(&base_a).await;
    wait_healthy(&base_b).await;
    let http = reqwest::Client::new();
    put_workflow(
        &http,
        &base_a,
        &token,
        "w",
        json!([feed_step("f", "hello")]),
    )
    .await;

    let mut socket = connect(&base_b, &format!("api_key={pk}&vsn=2.0.0")).await;
    let reply = request(
        &mut socket,
        json!(["1", "1", "feeds:in-app-feed:u", "phx_join", {"r": {}}]),
    )
    .await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");

    const TRIGGERS: i64 = 10;
    for _ in 0..TRIGGERS {
        let status = http
            .post(format!("{base_a}/v1/workflows/w/trigger"))
            .bearer_auth(&sk)
            .json(&json!({"recipients": ["u"]}))
            .send()
            .await
            .expect("trigger")
            .status();
        assert_eq!(status, 200);
    }
    // Every message arrives; the counts grow to the total.
    let mut highest = 0;
    for _ in 0..TRIGGERS {
        let push = next_frame(&mut socket).await;
        assert_eq!(push[3], "new-message", "{push}");
        assert_eq!(attn(&push), vec!["r"]);
        let total = push[4]["data"]["r"]["metadata"]["total_count"]
            .as_i64()
            .expect("count");
        highest = highest.max(total);
    }
    assert_eq!(highest, TRIGGERS);

    for node in [&mut node_a, &mut node_b] {
        let _ = node.kill();
        let _ = node.wait();
    }
}
