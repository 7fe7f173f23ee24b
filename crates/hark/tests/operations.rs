//! Operating the binary: `/metrics` in Prometheus' text format moves with the work, and
//! `--log-format json` writes one JSON object per line.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::process::*;

/// The value of the series named `name` whose labels include every `labels` pair, or 0
/// when the node has not reported it yet.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let resp = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200, "/metrics needs no credentials");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    resp.text().await.expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_after_a_trigger() {
    let t = target(false).await;
    let Served {
        base,
        sk,
        token,
        mut server,
        ..
    } = serve_with_credentials(&t, "serve.log").await;
    let http = reqwest::Client::new();
    put_workflow(
        &http,
        &base,
        &token,
        "counted",
        json!([{"type": "channel", "ref": "feed", "channel_key": "in-app-feed",
                "template": {"markdown_body": "hi {{ recipient.id }}"}}]),
    )
    .await;

    let before = scrape(&http, &base).await;
    assert!(before.contains("hark_job_queue_depth"), "{before}");
    assert!(before.contains("hark_job_queue_lag_seconds"), "{before}");
    let accepted_before = metric(&before, "hark_triggers_accepted_total", &[]);

    let resp = http
        .post(format!("{base}/v1/workflows/counted/trigger"))
        .bearer_auth(&sk)
        .json(&json!({"recipients": ["ada"]}))
        .send()
        .await
        .expect("trigger");
    assert!(resp.status().is_success());

    // The engine runs the trigger in the background: scrape until the run has finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let text = scrape(&http, &base).await;
        if metric(
            &text,
            "hark_runs_finished_total",
            &[("status", "completed")],
        ) >= 1.0
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        metric(&after, "hark_triggers_accepted_total", &[]),
        accepted_before + 1.0,
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "hark_runs_finished_total",
            &[("status", "completed")]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "hark_messages_total",
            &[("channel_type", "in_app_feed"), ("status", "delivered")]
        ),
        1.0,
        "{after}"
    );
    // An idle node runs the run of a trigger it accepted itself: handed over, not claimed.
    assert_eq!(
        metric(&after, "hark_jobs_handed_over_total", &[]),
        1.0,
        "{after}"
    );
    assert_eq!(
        metric(&after, "hark_jobs_claimed_total", &[]),
        0.0,
        "{after}"
    );
    assert_eq!(metric(&after, "hark_job_queue_depth", &[]), 0.0, "{after}");

    // Runs that end another way count too: a cancel finishes both paused runs.
    put_workflow(
        &http,
        &base,
        &token,
        "delayed",
        json!([{"type": "delay", "ref": "wait", "settings": {"delay_for": {"unit": "hours", "value": 1}}},
               {"type": "channel", "ref": "feed", "channel_key": "in-app-feed",
                "template": {"markdown_body": "later"}}]),
    )
    .await;
    for recipient in ["bo", "cy"] {
        let resp = http
            .post(format!("{base}/v1/workflows/delayed/trigger"))
            .bearer_auth(&sk)
            .json(&json!({"recipients": [recipient], "cancellation_key": "c1"}))
            .send()
            .await
            .expect("trigger");
        assert!(resp.status().is_success());
    }
    let resp = http
        .post(format!("{base}/v1/workflows/delayed/cancel"))
        .bearer_auth(&sk)
        .json(&json!({"cancellation_key": "c1"}))
        .send()
        .await
        .expect("cancel");
    assert!(resp.status().is_success(), "{}", resp.status());
    let cancelled = metric(
        &scrape(&http, &base).await,
        "hark_runs_finished_total",
        &[("status", "cancelled")],
    );
    // Each trigger's 2xx came after its run was committed, so the cancel found both.
    assert_eq!(cancelled, 2.0);

    server.kill().expect("kill");
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_writes_one_object_per_line() {
    let t = target(false).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = t._dir.path().join("serve.jsonl");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut server = Command::new(HARK)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(&t.args)
        .env("HARK_LOG", "info")
        .env("HARK_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn hark serve");
    wait_healthy(&base).await;
    server.kill().expect("kill");
    let _ = server.wait();

    let text = std::fs::read_to_string(&log_path).expect("read log");
    let lines: Vec<Value> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in &lines {
        assert!(line["level"].is_string(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
    let listening = lines
        .iter()
        .find(|l| l["fields"]["message"] == "hark is listening")
        .expect("startup line");
    assert_eq!(listening["fields"]["store"], "sqlite");
}

/// With `[telemetry] otlp_endpoint` set, request spans reach a collector's `/v1/traces`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_exported_to_the_configured_collector() {
    let collector = hark_channels::testing::HttpSink::start()
        .await
        .expect("collector");
    let t = target_with_config(
        false,
        &format!("\n[telemetry]\notlp_endpoint = \"{}\"\n", collector.url("")),
    )
    .await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // Spans are INFO; the default test log level (warn) would filter them out.
    let log = std::fs::File::create(t._dir.path().join("serve.log")).expect("log file");
    let mut server = Command::new(HARK)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(&t.args)
        .env("HARK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn hark serve");
    wait_healthy(&base).await;
    // SIGTERM: a clean shutdown flushes the spans still in the batch.
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let _ = server.wait();

    let exports = collector.wait_for(1, Duration::from_secs(60)).await;
    let export = exports
        .iter()
        .find(|r| r.path == "/v1/traces")
        .unwrap_or_else(|| panic!("no export to /v1/traces: {exports:?}"));
    assert_eq!(export.method, "POST");
    assert_eq!(
        export.header("content-type"),
        Some("application/x-protobuf")
    );
    // The protobuf carries the service name and the health check's request span.
    let body = String::from_utf8_lossy(&export.body_bytes);
    assert!(body.contains("hark"), "service name in the export");
    assert!(body.contains("/healthz"), "request span in the export");
}
