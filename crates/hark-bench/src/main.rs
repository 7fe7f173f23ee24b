//! Load generator: starts a real `hark serve` on loopback and measures it, printing every
//! figure next to a baseline measured in the same run on the same machine.
//!
//! `cargo run --release -p hark-bench -- --hark target/release/hark --store sqlite`

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use sqlx::Connection;

#[derive(Parser)]
struct Args {
    /// The `hark` binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/hark")]
    hark: String,
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Concurrent clients for throughput figures.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds per throughput figure.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Offered trigger rate for the latency figure (per second).
    #[arg(long, default_value_t = 200)]
    rate: u64,
}

struct Server {
    child: Child,
    base: String,
    secret_key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn store_args(dir: &std::path::Path, url: Option<&str>) -> Vec<String> {
    let mut args = vec!["--data-dir".to_string(), dir.display().to_string()];
    if let Some(u) = url {
        args.extend(["--database-url".to_string(), u.to_string()]);
    }
    args
}

async fn start_server(args: &Args, url: Option<&str>) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let sargs = store_args(dir.path(), url);
    let out = Command::new(&args.hark)
        .args(["keys", "create", "--environment", "development", "--json"])
        .args(&sargs)
        .output()
        .context("running hark keys create")?;
    if !out.status.success() {
        bail!(
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let keys: Value = serde_json::from_slice(&out.stdout)?;
    let out = Command::new(&args.hark)
        .args(["tokens", "create", "--json"])
        .args(&sargs)
        .output()?;
    let token: Value = serde_json::from_slice(&out.stdout)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(&args.hark)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(&sargs)
        .env("HARK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning hark serve")?;
    let base = format!("http://127.0.0.1:{port}");
    let server = Server {
        child,
        base: base.clone(),
        secret_key: keys["secret_key"].as_str().unwrap_or_default().to_string(),
        _dir: dir,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("server did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = http
        .put(format!("{base}/mgmt/v1/workflows/bench?commit=true"))
        .bearer_auth(token["service_token"].as_str().unwrap_or_default())
        .json(&json!({"workflow": {"name": "bench", "steps": [
            {"type": "channel", "ref": "feed", "channel_key": "in-app-feed",
             "template": {"markdown_body": "Hello **{{ recipient.id }}** #{{ data.n }}"}}]}}))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("creating the workflow failed: {}", resp.text().await?);
    }
    Ok(server)
}

struct Figure {
    count: u64,
    per_second: f64,
    latencies_us: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

impl Figure {
    fn describe(&mut self) -> String {
        self.latencies_us.sort_unstable();
        format!(
            "{:>9.0}/s  (n={}, p50 {:.2} ms, p99 {:.2} ms)",
            self.per_second,
            self.count,
            percentile(&self.latencies_us, 0.5),
            percentile(&self.latencies_us, 0.99)
        )
    }
}

/// Runs `clients` loops of `request` for `seconds`, counting successes.
async fn closed_loop<F, Fut>(clients: usize, seconds: u64, request: F) -> Figure
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..clients {
        let (request, stop, counter) = (request.clone(), stop.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut ok = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if request(n).await {
                    ok += 1;
                    lat.push(t.elapsed().as_micros() as u64);
                }
            }
            (ok, lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut count = 0;
    let mut latencies_us = Vec::new();
    for t in tasks {
        if let Ok((ok, lat)) = t.await {
            count += ok;
            latencies_us.extend(lat);
        }
    }
    Figure {
        count,
        per_second: count as f64 / start.elapsed().as_secs_f64(),
        latencies_us,
    }
}

async fn empty_route_baseline(clients: usize, seconds: u64) -> anyhow::Result<Figure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let app = axum::Router::new().route("/", axum::routing::post(|| async { "{}" }));
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/");
    Ok(closed_loop(clients, seconds, move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(&url)
                .json(&json!({"recipients": ["u"]}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await)
}

/// Single-row insert transactions, each committed durably, on the same database kind.
async fn raw_commit_baseline(store: &str, clients: usize, seconds: u64) -> anyhow::Result<Figure> {
    let dir = tempfile::tempdir()?;
    if store == "sqlite" {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("raw.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::query("PRAGMA journal_mode=WAL")
            .execute(&mut conn)
            .await?;
        sqlx::query("PRAGMA synchronous=FULL")
            .execute(&mut conn)
            .await?;
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            .execute(&mut conn)
            .await?;
        let conn = Arc::new(tokio::sync::Mutex::new(conn));
        // SQLite has one writer: clients queue on the connection, as they do in Hark.
        let fig = closed_loop(clients, seconds, move |n| {
            let conn = conn.clone();
            async move {
                let mut c = conn.lock().await;
                sqlx::query("INSERT INTO t (id, v) VALUES ($1, 'x')")
                    .bind(n as i64)
                    .execute(&mut *c)
                    .await
                    .is_ok()
            }
        })
        .await;
        Ok(fig)
    } else {
        let url = hark_store::testing::fresh_postgres_database().await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(clients.min(32) as u32)
            .connect(&url)
            .await?;
        sqlx::query("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
            .execute(&pool)
            .await?;
        Ok(closed_loop(clients, seconds, move |n| {
            let pool = pool.clone();
            async move {
                sqlx::query("INSERT INTO t (id, v) VALUES ($1, 'x')")
                    .bind(n as i64)
                    .execute(&pool)
                    .await
                    .is_ok()
            }
        })
        .await)
    }
}

async fn trigger_accept_rate(server: &Server, clients: usize, seconds: u64) -> Figure {
    let http = reqwest::Client::new();
    let url = format!("{}/v1/workflows/bench/trigger", server.base);
    let key = server.secret_key.clone();
    closed_loop(clients, seconds, move |n| {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        async move {
            http.post(&url)
                .bearer_auth(&key)
                .json(&json!({"recipients": [format!("accept-{n}")], "data": {"n": n}}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await
}

/// Offers triggers at `rate`/s; for each, polls the recipient's feed until the message
/// is visible. Returns trigger → visible latencies.
async fn trigger_to_feed(server: &Server, rate: u64, seconds: u64) -> Figure {
    let http = reqwest::Client::new();
    let total = rate * seconds;
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut tasks = Vec::new();
    let start = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    for n in 0..total {
        ticker.tick().await;
        let (http, base, key) = (http.clone(), server.base.clone(), server.secret_key.clone());
        tasks.push(tokio::spawn(async move {
            let user = format!("latency-{n}");
            let t0 = Instant::now();
            let ok = http
                .post(format!("{base}/v1/workflows/bench/trigger"))
                .bearer_auth(&key)
                .json(&json!({"recipients": [user], "data": {"n": n}}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !ok {
                return None;
            }
            let deadline = t0 + Duration::from_secs(30);
            while Instant::now() < deadline {
                let visible = match http
                    .get(format!(
                        "{base}/v1/users/{user}/feeds/in-app-feed?page_size=1"
                    ))
                    .bearer_auth(&key)
                    .send()
                    .await
                {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["entries"].as_array().map(|e| !e.is_empty()))
                        .unwrap_or(false),
                    Err(_) => false,
                };
                if visible {
                    return Some(t0.elapsed().as_micros() as u64);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        if let Ok(Some(l)) = t.await {
            latencies_us.push(l);
        }
    }
    Figure {
        count: latencies_us.len() as u64,
        per_second: latencies_us.len() as f64 / start.elapsed().as_secs_f64(),
        latencies_us,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = match args.store.as_str() {
        "sqlite" => None,
        "postgres" => Some(hark_store::testing::fresh_postgres_database().await?),
        other => bail!("unknown store `{other}`"),
    };
    println!(
        "hark-bench: store={} clients={} seconds={} rate={}/s cores={}",
        args.store,
        args.clients,
        args.seconds,
        args.rate,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let mut empty = empty_route_baseline(args.clients, args.seconds).await?;
    println!(
        "baseline  empty axum route (same client)      {}",
        empty.describe()
    );
    let mut raw = raw_commit_baseline(&args.store, args.clients, args.seconds).await?;
    println!(
        "baseline  raw single-row commits ({:<8})    {}",
        args.store,
        raw.describe()
    );
    let server = start_server(&args, url.as_deref()).await?;
    let mut accept = trigger_accept_rate(&server, args.clients, args.seconds).await;
    println!(
        "figure    trigger accept rate, 1 recipient     {}",
        accept.describe()
    );
    drop(server);
    // A fresh server, so the latency figure is not measured behind the backlog the accept
    // figure left in the job table.
    let url = match args.store.as_str() {
        "postgres" => Some(hark_store::testing::fresh_postgres_database().await?),
        _ => None,
    };
    let server = start_server(&args, url.as_deref()).await?;
    let mut latency = trigger_to_feed(&server, args.rate, args.seconds).await;
    println!(
        "figure    trigger → in-app message visible at {}/s  {}",
        args.rate,
        latency.describe()
    );
    Ok(())
}
