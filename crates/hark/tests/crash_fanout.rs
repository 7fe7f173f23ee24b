//! A trigger to an object with 100,000 subscribers, with the server killed (`kill -9`)
//! half-way through the fan-out: after a restart every subscriber has exactly one
//! message, and the server's memory stayed bounded.

mod support;

use std::time::{Duration, Instant};

use hark_store::RecipientKey;
use serde_json::json;
use sqlx::Row;
use support::process::*;

const DEFAULT_SUBSCRIBERS: usize = 100_000;

/// Peak resident memory of a process in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

// Subscribers' messages only: the object is a recipient too and gets its own.
const COUNT_SQL: &str = "SELECT COUNT(*) AS n FROM messages WHERE recipient_collection = ''";
const DOUBLED_SQL: &str = "SELECT COUNT(*) AS n FROM (SELECT recipient_id FROM messages \
     WHERE recipient_collection = '' GROUP BY recipient_id HAVING COUNT(*) > 1) d";

/// One integer (`n`) selected straight from the database.
async fn count(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query(sql)
            .fetch_one(&mut conn)
            .await
            .expect("count")
            .get("n")
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query(sql)
            .fetch_one(&mut conn)
            .await
            .expect("count")
            .get("n")
    }
}

/// Subscribers' messages so far. Progress is polled with this alone: the duplicate check
/// sorts every message, and doing that twice a second took CPU from the fan-out itself.
async fn message_count(url: &str) -> i64 {
    count(url, COUNT_SQL).await
}

/// `(messages, recipients with more than one message)`, for the final checks.
async fn message_counts(url: &str) -> (i64, i64) {
    (count(url, COUNT_SQL).await, count(url, DOUBLED_SQL).await)
}

async fn fan_out_survives_kill_nine(postgres: bool) {
    let subscribers: usize = std::env::var("HARK_FANOUT_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SUBSCRIBERS);
    let t = target(postgres).await;
    let url = match t.args.iter().position(|a| a == "--database-url") {
        Some(i) => t.args[i + 1].clone(),
        None => format!("sqlite://{}", t._dir.path().join("hark.db").display()),
    };
    // Seed the object and its subscribers through the store before the server starts.
    let store = hark_store::connect(&url).await.expect("store");
    store.ensure_default_environments(0).await.expect("envs");
    let env = store
        .environment_by_slug("development")
        .await
        .expect("env")
        .expect("development")
        .id;
    store
        .upsert_object(&env, "announcements", "all", &serde_json::Map::new(), 0)
        .await
        .expect("object");
    let keys: Vec<RecipientKey> = (0..subscribers)
        .map(|i| RecipientKey {
            collection: None,
            id: format!("s{i:06}"),
        })
        .collect();
    for chunk in keys.chunks(5_000) {
        store
            .add_subscriptions(&env, "announcements", "all", chunk, &json!({}), 0)
            .await
            .expect("subscribe");
    }
    drop(store);

    let Served {
        base,
        port,
        sk,
        token,
        mut server,
    } = serve_with_credentials(&t, "serve-1.log").await;
    let http = reqwest::Client::new();
    put_workflow(
        &http,
        &base,
        &token,
        "announce",
        json!([{"type": "channel", "ref": "f", "channel_key": "in-app-feed", "template": {"markdown_body": "News for {{ recipient.id }}"}}]),
    )
    .await;
    let resp = http
        .post(format!("{base}/v1/workflows/announce/trigger"))
        .bearer_auth(&sk)
        .json(&json!({"recipients": [{"collection": "announcements", "id": "all"}]}))
        .send()
        .await
        .expect("trigger");
    assert!(resp.status().is_success());

    // Kill the server once the fan-out is well under way. A slow machine only makes this
    // take longer; the test gives up only when nothing moves for a whole minute.
    let mut last_progress = (0_i64, Instant::now());
    loop {
        let total = message_count(&url).await;
        if total >= (subscribers / 10) as i64 {
            break;
        }
        if total > last_progress.0 {
            last_progress = (total, Instant::now());
        }
        if last_progress.1.elapsed() > Duration::from_secs(60) {
            let log =
                std::fs::read_to_string(t._dir.path().join("serve-1.log")).unwrap_or_default();
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("c");
            let mut counts = Vec::new();
            for table in [
                "subscriptions",
                "fanouts",
                "jobs",
                "recipient_runs",
                "workflow_runs",
                "environments",
            ] {
                let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                    .fetch_one(&mut conn)
                    .await
                    .expect("q")
                    .get("n");
                counts.push(format!("{table}={n}"));
            }
            let jobs: Vec<String> =
                sqlx::query("SELECT kind, run_at, lease, attempts FROM jobs LIMIT 5")
                    .fetch_all(&mut conn)
                    .await
                    .expect("q")
                    .iter()
                    .map(|r| {
                        format!(
                            "{}/{}/{:?}/{}",
                            r.get::<String, _>("kind"),
                            r.get::<i64, _>("run_at"),
                            r.get::<Option<String>, _>("lease"),
                            r.get::<i64, _>("attempts")
                        )
                    })
                    .collect();
            panic!("fan-out made no progress {counts:?} {jobs:?}; server log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_peak = peak_rss_mib(server.id());
    server.kill().expect("kill -9");
    server.wait().expect("reap");
    let at_kill = message_count(&url).await;
    assert!(
        at_kill < subscribers as i64,
        "killed half-way ({at_kill} messages)"
    );

    let mut server = spawn_server(&t.args, port, &t._dir.path().join("serve-2.log"));
    wait_healthy(&base).await;
    let mut last_progress = (at_kill, Instant::now());
    loop {
        let total = message_count(&url).await;
        if total > last_progress.0 {
            last_progress = (total, Instant::now());
        }
        if total >= subscribers as i64 || last_progress.1.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (total, doubled) = message_counts(&url).await;
    let second_peak = peak_rss_mib(server.id());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, doubled_after) = message_counts(&url).await;
    server.kill().expect("kill");
    let _ = server.wait();
    assert_eq!(total, subscribers as i64, "every subscriber got a message");
    assert_eq!(doubled, 0, "nobody got two");
    assert_eq!(
        (after, doubled_after),
        (total, 0),
        "and nothing more came later"
    );
    // Streaming keeps memory flat: far below what 100,000 runs held at once would need.
    assert!(
        first_peak < 256.0 && second_peak < 256.0,
        "peak RSS {first_peak:.0} MiB / {second_peak:.0} MiB"
    );
}

/// The two stores' runs take turns: together they would compete for the same two cores
/// and each would crawl.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_100k_survives_kill_nine_on_sqlite() {
    let _turn = ONE_AT_A_TIME.lock().await;
    fan_out_survives_kill_nine(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_100k_survives_kill_nine_on_postgres() {
    let _turn = ONE_AT_A_TIME.lock().await;
    fan_out_survives_kill_nine(true).await
}
