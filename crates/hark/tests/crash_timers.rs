//! The real binary under `kill -9` while runs wait in delays and open batches, and while
//! batch windows are closing: after a restart every timer fires exactly once, and every
//! batched activity lands in exactly one digest.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::process::*;

struct Running {
    base: String,
    sk: String,
    http: reqwest::Client,
    port: u16,
}

async fn start(t: &Target, log: &str) -> (Running, ServerProcess) {
    let keys = cli_json(&t.args, &["keys", "create", "--environment", "development"]);
    let sk = keys["secret_key"].as_str().expect("sk").to_string();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = spawn_server(&t.args, port, &t._dir.path().join(log));
    wait_healthy(&base).await;
    (
        Running {
            base,
            sk,
            http: reqwest::Client::new(),
            port,
        },
        server,
    )
}

async fn trigger(r: &Running, workflow: &str, body: Value) {
    let resp = r
        .http
        .post(format!("{}/v1/workflows/{workflow}/trigger", r.base))
        .bearer_auth(&r.sk)
        .json(&body)
        .send()
        .await
        .expect("trigger");
    assert!(resp.status().is_success(), "trigger accepted");
}

/// Every message (all pages) as `(recipient, total_activities, activity ids)`.
async fn all_messages(r: &Running) -> Vec<(String, i64, Vec<String>)> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = get_json(
            &r.http,
            &format!("{}/v1/messages?page_size=50{after}", r.base),
            &r.sk,
        )
        .await;
        for m in page["items"].as_array().expect("items") {
            let recipient = m["recipient"].as_str().expect("recipient").to_string();
            let id = m["id"].as_str().expect("id");
            let activities = get_json(
                &r.http,
                &format!("{}/v1/messages/{id}/activities?page_size=50", r.base),
                &r.sk,
            )
            .await;
            let ids: Vec<String> = activities["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|a| a["data"]["n"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            out.push((recipient, ids.len() as i64, ids));
        }
        match page["page_info"]["after"].as_str() {
            Some(a) => after = format!("&after={a}"),
            None => return out,
        }
    }
}

async fn paused_runs(r: &Running) -> usize {
    let mut total = 0;
    let mut after = String::new();
    loop {
        let page = get_json(
            &r.http,
            &format!(
                "{}/v1/workflow_recipient_runs?status=paused&page_size=50{after}",
                r.base
            ),
            &r.sk,
        )
        .await;
        total += page["items"].as_array().map(Vec::len).unwrap_or(0);
        match page["page_info"]["after"].as_str() {
            Some(a) => after = format!("&after={a}"),
            None => return total,
        }
    }
}

async fn wait_until<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks that each digest recipient got each of its activities exactly once, and each
/// delayed recipient exactly one message.
fn check_exactly_once(
    messages: &[(String, i64, Vec<String>)],
    delayed: &[String],
    batched: &HashMap<String, HashSet<String>>,
) {
    let mut delayed_counts: HashMap<&str, usize> = HashMap::new();
    let mut seen: HashMap<&str, Vec<String>> = HashMap::new();
    for (recipient, _, ids) in messages {
        if batched.contains_key(recipient) {
            seen.entry(recipient)
                .or_default()
                .extend(ids.iter().cloned());
        } else {
            *delayed_counts.entry(recipient).or_default() += 1;
        }
    }
    for user in delayed {
        assert_eq!(
            delayed_counts.get(user.as_str()),
            Some(&1),
            "{user}: the delay fired exactly once"
        );
    }
    for (user, expected) in batched {
        let got = seen.get(user.as_str()).cloned().unwrap_or_default();
        let unique: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "{user}: no activity doubled: {got:?}"
        );
        assert_eq!(&unique, expected, "{user}: no activity lost");
    }
}

fn workflows() -> [(&'static str, Value); 2] {
    [
        (
            "later",
            json!([{"type": "delay", "ref": "wait", "settings": {"delay_for": {"unit": "seconds", "value": 3}}},
                   {"type": "channel", "ref": "f", "channel_key": "in-app-feed", "template": {"markdown_body": "later"}}]),
        ),
        (
            "digest",
            json!([{"type": "batch", "ref": "b", "settings": {"batch_window": {"unit": "seconds", "value": 3}, "batch_items_render_limit": 100}},
                   {"type": "channel", "ref": "f", "channel_key": "in-app-feed", "template": {"markdown_body": "{{ total_activities }}"}}]),
        ),
    ]
}

/// Kills the server while runs wait (`kill_after_close` false) or while windows close
/// (true), restarts it, and checks exactly-once.
async fn timers_survive_kill_nine(postgres: bool, kill_while_closing: bool) {
    let t = target(postgres).await;
    let token = cli_json(&t.args, &["tokens", "create"])["service_token"]
        .as_str()
        .expect("token")
        .to_string();
    let (r, mut server) = start(&t, "serve-1.log").await;
    for (key, steps) in workflows() {
        put_workflow(&r.http, &r.base, &token, key, steps).await;
    }
    let delayed: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    for chunk in delayed.chunks(10) {
        trigger(&r, "later", json!({"recipients": chunk})).await;
    }
    let mut batched: HashMap<String, HashSet<String>> = HashMap::new();
    for i in 0..60 {
        let user = format!("b{}", i % 6);
        let n = format!("a{i}");
        batched.entry(user.clone()).or_default().insert(n.clone());
        trigger(
            &r,
            "digest",
            json!({"recipients": [user], "actor": format!("actor{}", i % 4), "data": {"n": n}}),
        )
        .await;
    }
    wait_until("every run to pause", || async {
        paused_runs(&r).await == 100
    })
    .await;
    if kill_while_closing {
        // The windows close about 3 s after they opened; kill in the middle of that.
        let deadline = Instant::now() + Duration::from_secs(10);
        while all_messages(&r).await.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    server.kill().expect("kill -9");
    server.wait().expect("reap");
    let before = if kill_while_closing {
        // Nothing runs now; let every remaining timer fall due while the server is down.
        tokio::time::sleep(Duration::from_secs(3)).await;
        "killed while windows closed"
    } else {
        tokio::time::sleep(Duration::from_secs(4)).await;
        "killed while runs waited"
    };

    let mut server = spawn_server(&t.args, r.port, &t._dir.path().join("serve-2.log"));
    wait_healthy(&r.base).await;
    let expected_messages = delayed.len();
    wait_until("every timer to fire after the restart", || async {
        let messages = all_messages(&r).await;
        let digested: usize = messages
            .iter()
            .filter(|(u, _, _)| batched.contains_key(u))
            .map(|(_, n, _)| *n as usize)
            .sum();
        messages.len() >= expected_messages && digested >= 60
    })
    .await;
    // Give a duplicate the chance to show up before judging.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = all_messages(&r).await;
    check_exactly_once(&messages, &delayed, &batched);
    assert_eq!(paused_runs(&r).await, 0, "{before}: nothing left waiting");
    server.kill().expect("kill");
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_while_waiting_on_sqlite() {
    timers_survive_kill_nine(false, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_while_waiting_on_postgres() {
    timers_survive_kill_nine(true, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_while_batches_close_on_sqlite() {
    timers_survive_kill_nine(false, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_while_batches_close_on_postgres() {
    timers_survive_kill_nine(true, true).await
}
