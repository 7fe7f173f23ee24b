//! The real binary under `kill -9`: every accepted trigger completes after a restart and
//! no recipient gets a message twice. Also: CLI credentials while the server runs, and a
//! clean exit on SIGTERM.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::process::*;

async fn kill_nine_loses_nothing_and_duplicates_nothing(postgres: bool) {
    let t = target(postgres).await;
    let keys = cli_json(&t.args, &["keys", "create", "--environment", "development"]);
    let sk = keys["secret_key"].as_str().expect("sk").to_string();
    assert!(sk.starts_with("sk_"));
    assert!(keys["public_key"].as_str().expect("pk").starts_with("pk_"));
    let token = cli_json(&t.args, &["tokens", "create"])["service_token"]
        .as_str()
        .expect("token")
        .to_string();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = t._dir.path().join("serve-1.log");
    let mut server = spawn_server(&t.args, port, &log);
    wait_healthy(&base).await;
    let http = reqwest::Client::new();
    put_workflow(
        &http,
        &base,
        &token,
        "crash",
        json!([
            {"type": "channel", "ref": "a", "channel_key": "in-app-feed", "template": {"markdown_body": "a {{ recipient.id }}"}},
            {"type": "channel", "ref": "b", "channel_key": "in-app-feed", "template": {"markdown_body": "b {{ recipient.id }}"}}
        ]),
    )
    .await;

    // Keys made by the CLI while the server runs work at once.
    let late = cli_json(&t.args, &["keys", "create", "--environment", "development"]);
    let status = http
        .get(format!("{base}/v1/users?page_size=1"))
        .bearer_auth(late["secret_key"].as_str().expect("sk"))
        .send()
        .await
        .expect("list")
        .status();
    assert_eq!(status, 200);

    // Fire triggers from 8 clients; kill the server mid-stream.
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (http, base, sk, accepted) = (http.clone(), base.clone(), sk.clone(), accepted.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..100 {
                let user = format!("c{c}-u{i}");
                let resp = http
                    .post(format!("{base}/v1/workflows/crash/trigger"))
                    .bearer_auth(&sk)
                    .json(&json!({"recipients": [user]}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        if let Ok(mut a) = accepted.lock() {
                            a.push(user);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted.lock().map(|a| a.len()).unwrap_or(0) < 250 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().expect("kill -9");
    server.wait().expect("reap");
    for c in clients {
        let _ = c.await;
    }
    let accepted: Vec<String> = accepted.lock().expect("lock").clone();
    assert!(accepted.len() >= 250, "only {} accepted", accepted.len());

    // Restart on the same data: the engine finishes what was accepted.
    let mut server = spawn_server(&t.args, port, &t._dir.path().join("serve-2.log"));
    wait_healthy(&base).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let recipients = loop {
        let recipients = all_message_recipients(&http, &base, &sk).await;
        let done = accepted
            .iter()
            .all(|u| recipients.iter().filter(|r| *r == u).count() == 2);
        if done || Instant::now() > deadline {
            break recipients;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut counts = std::collections::HashMap::new();
    for r in &recipients {
        *counts.entry(r.clone()).or_insert(0) += 1;
    }
    for user in &accepted {
        assert_eq!(
            counts.get(user),
            Some(&2),
            "{user}: every accepted trigger completes"
        );
    }
    for (user, n) in &counts {
        assert_eq!(*n, 2, "{user}: one message per step, never twice");
    }
    server.kill().expect("kill");
    let _ = server.wait();
}

async fn sigterm_shuts_down_cleanly(postgres: bool) {
    let t = target(postgres).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = spawn_server(&t.args, port, &t._dir.path().join("serve.log"));
    wait_healthy(&base).await;
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(code) = server.try_wait().expect("wait") {
            assert!(code.success(), "exit status {code:?}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_on_sqlite() {
    kill_nine_loses_nothing_and_duplicates_nothing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_on_postgres() {
    kill_nine_loses_nothing_and_duplicates_nothing(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_sqlite() {
    sigterm_shuts_down_cleanly(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_postgres() {
    sigterm_shuts_down_cleanly(true).await;
}

#[tokio::test]
async fn bad_config_fails_fast_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[channels]]\nkey = \"pigeon\"\ntype = \"carrier_pigeon\"\n",
    )
    .expect("config");
    let out = Command::new(HARK)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run hark serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown type `carrier_pigeon`"), "{stderr}");

    std::fs::write(&config, "[outbound]\nallow_private = true\n").expect("config");
    let out = Command::new(HARK)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run hark serve");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow_private"));
}

/// Webhook deliveries in flight when the server dies are retried after the restart with
/// the same `Idempotency-Key`; every message ends delivered.
async fn kill_nine_during_deliveries(postgres: bool) {
    let sink = hark_channels::testing::HttpSink::start()
        .await
        .expect("sink");
    // Slow answers keep deliveries in flight when the kill comes.
    sink.set_delay(Duration::from_millis(200));
    let t = target_with_config(
        postgres,
        "[outbound]\nallow_private_networks = true\n\n[[channels]]\nkey = \"webhook\"\ntype = \"http\"\nprovider = \"webhook\"\n",
    )
    .await;
    let Served {
        base,
        port,
        sk,
        token,
        mut server,
    } = serve_with_credentials(&t, "hooks-1.log").await;
    let http = reqwest::Client::new();
    put_workflow(
        &http,
        &base,
        &token,
        "hooks",
        json!([
            {"type": "channel", "ref": "hook", "channel_key": "webhook",
             "template": {"method": "post", "url": sink.url("/in"), "body": "{\"user\": \"{{ recipient.id }}\"}"}}
        ]),
    )
    .await;
    let users: Vec<String> = (0..40).map(|i| format!("h{i}")).collect();
    for chunk in users.chunks(10) {
        let resp = http
            .post(format!("{base}/v1/workflows/hooks/trigger"))
            .bearer_auth(&sk)
            .json(&json!({"recipients": chunk}))
            .send()
            .await
            .expect("trigger");
        assert!(resp.status().is_success());
    }
    // Kill once some deliveries reached the receiver, so others are mid-flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.requests().len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("kill -9");
    server.wait().expect("reap");
    sink.set_delay(Duration::from_millis(0));

    let mut server = spawn_server(&t.args, port, &t._dir.path().join("hooks-2.log"));
    wait_healthy(&base).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let delivered = loop {
        let page = get_json(
            &http,
            &format!("{base}/v1/messages?page_size=50&status[]=delivered"),
            &sk,
        )
        .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() == users.len() || Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(delivered.len(), users.len(), "every message ends delivered");
    let requests = sink.requests();
    let mut per_key: std::collections::HashMap<String, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for r in &requests {
        let key = r
            .header("idempotency-key")
            .expect("idempotency key")
            .to_string();
        let body: Value = serde_json::from_str(&r.body).expect("json body");
        per_key
            .entry(key)
            .or_default()
            .insert(body["user"].as_str().expect("user").to_string());
    }
    // Each message id reached the receiver at least once, always for the same recipient.
    for m in &delivered {
        let id = m["id"].as_str().expect("id");
        let seen = per_key
            .get(id)
            .expect("delivered message reached the receiver");
        assert_eq!(seen.len(), 1, "one key, one recipient");
        assert!(seen.contains(m["recipient"].as_str().expect("recipient")));
    }
    assert_eq!(
        per_key.len(),
        users.len(),
        "no request without a message behind it"
    );
    server.kill().expect("kill");
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_during_deliveries_on_sqlite() {
    kill_nine_during_deliveries(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_during_deliveries_on_postgres() {
    kill_nine_during_deliveries(true).await;
}
