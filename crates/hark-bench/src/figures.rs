//! The figures themselves, each measured against a running [`Cluster`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cluster::{Cluster, Prepared};
use crate::measure::{closed_loop, Figure};
use crate::realtime::FeedSocket;

pub fn feed_step() -> Value {
    json!([{"type": "channel", "ref": "feed", "channel_key": "in-app-feed",
            "template": {"markdown_body": "Hello **{{ recipient.id }}** #{{ data.n }}"}}])
}

pub fn webhook_step(sink: &str) -> Value {
    json!([{"type": "channel", "ref": "hook", "channel_key": "webhook",
            "template": {"method": "post", "url": sink,
                         "body": "{\"n\": {{ data.n }}}"}}])
}

async fn trigger(
    http: &reqwest::Client,
    cluster: &Cluster,
    workflow: &str,
    n: u64,
    body: Value,
) -> bool {
    http.post(format!(
        "{}/v1/workflows/{workflow}/trigger",
        cluster.base(n)
    ))
    .bearer_auth(&cluster.secret_key)
    .json(&body)
    .send()
    .await
    .is_ok_and(|r| r.status().is_success())
}

/// Closed-loop triggers with one recipient each; each 2xx means the run is committed.
pub async fn trigger_accept_rate(
    cluster: &Arc<Cluster>,
    workflow: &'static str,
    clients: usize,
    seconds: u64,
) -> Figure {
    let http = reqwest::Client::new();
    let cluster = cluster.clone();
    closed_loop(clients, seconds, move |n| {
        let (http, cluster) = (http.clone(), cluster.clone());
        async move {
            let body = json!({"recipients": [format!("accept-{n}")], "data": {"n": n}});
            trigger(&http, &cluster, workflow, n, body).await
        }
    })
    .await
}

/// Realtime sockets per node in the visibility figure.
const SOCKETS_PER_NODE: usize = 32;

/// Offers triggers at `rate`/s and measures each until its message is visible to the
/// recipient the way Knock's in-app client sees it: the client has joined the user's feed
/// over the realtime socket (on the next node round-robin, so with several nodes the push
/// crosses nodes), receives `new-message`, and refetches the feed, which must show the
/// item. Latency runs from sending the trigger to that refetch's answer. The client polls
/// nothing, so the measurement adds one feed read per message and no more.
pub async fn trigger_to_feed(
    cluster: &Arc<Cluster>,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Visibility> {
    let http = reqwest::Client::new();
    // Per node, several sockets as several browsers would hold: the server handles one
    // socket's frames and pushes in turn, so one socket for every user would queue them.
    let mut sockets = Vec::new();
    for node in &cluster.nodes {
        let mut per_node = Vec::new();
        for _ in 0..SOCKETS_PER_NODE {
            per_node.push(FeedSocket::connect(&node.base, &cluster.public_key).await?);
        }
        sockets.push(per_node);
    }
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut ticker = tokio::time::interval(interval);
    let mut tasks = Vec::new();
    let start = Instant::now();
    for n in 0..rate * seconds {
        ticker.tick().await;
        let (http, cluster) = (http.clone(), cluster.clone());
        let reader = (n + 1) as usize % sockets.len();
        let socket = sockets[reader][n as usize % SOCKETS_PER_NODE].clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("latency-{n}");
            let mut feed = socket.join("in-app-feed", &user).await.ok()?;
            let t0 = Instant::now();
            let body = json!({"recipients": [user], "data": {"n": n}});
            if !trigger(&http, &cluster, "feed", n, body).await {
                return None;
            }
            let accepted = t0.elapsed();
            let url = format!(
                "{}/v1/users/{user}/feeds/in-app-feed?page_size=1",
                cluster.nodes[reader].base
            );
            let limit = Duration::from_secs(30);
            feed.next_event("new-message", limit).await.ok()?;
            let pushed = t0.elapsed();
            // The push follows the commit, so the first refetch normally shows the item.
            while t0.elapsed() < limit {
                let entries = http
                    .get(&url)
                    .bearer_auth(&cluster.secret_key)
                    .send()
                    .await
                    .ok()?
                    .json::<Value>()
                    .await
                    .ok()?["entries"]
                    .as_array()
                    .map_or(0, Vec::len);
                if entries > 0 {
                    return Some([accepted, pushed, t0.elapsed()].map(|t| t.as_micros() as u64));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        }));
    }
    let mut stamps = Vec::new();
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            stamps.push(s);
        }
    }
    let per_second = stamps.len() as f64 / start.elapsed().as_secs_f64();
    let phase = |of: fn(&[u64; 3]) -> u64| Figure {
        count: stamps.len() as u64,
        per_second,
        latencies_us: stamps.iter().map(of).collect(),
    };
    Ok(Visibility {
        total: phase(|s| s[2]),
        accepted: phase(|s| s[0]),
        pushed: phase(|s| s[1] - s[0]),
        refetched: phase(|s| s[2] - s[1]),
    })
}

/// The in-app visibility figure and the three phases each sample went through, to say
/// where a tail comes from. Each phase has its own percentiles, which do not add up to
/// the total's: a slow sample is rarely slow in every phase.
pub struct Visibility {
    /// From sending the trigger to the refetch that shows the item.
    pub total: Figure,
    /// Until the trigger's 2xx: the run is committed.
    pub accepted: Figure,
    /// From the 2xx to the `new-message` push: the engine's step and its commit, and the
    /// realtime fan-out (across nodes when there are several).
    pub pushed: Figure,
    /// From the push to the refetch's answer: one feed read.
    pub refetched: Figure,
}

/// A loopback HTTP receiver recording when each webhook (`{"n": …}`) first arrived.
pub struct WebhookSink {
    pub url: String,
    arrivals: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl WebhookSink {
    pub async fn start() -> anyhow::Result<Self> {
        let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let recorded = arrivals.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::Json<Value>| {
                let recorded = recorded.clone();
                async move {
                    if let Some(n) = body.0["n"].as_u64() {
                        if let Ok(mut seen) = recorded.lock() {
                            seen.entry(n).or_insert_with(Instant::now);
                        }
                    }
                    "{}"
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}/hook"),
            arrivals,
        })
    }

    fn received(&self) -> usize {
        self.arrivals.lock().map(|a| a.len()).unwrap_or(0)
    }

    fn arrival(&self, n: u64) -> Option<Instant> {
        self.arrivals.lock().ok().and_then(|a| a.get(&n).copied())
    }

    fn last_arrival(&self) -> Option<Instant> {
        self.arrivals
            .lock()
            .ok()
            .and_then(|a| a.values().max().copied())
    }

    /// Waits until `expected` distinct webhooks arrived; gives up after 30 s without one.
    async fn wait_for(&self, expected: usize) {
        let mut last = (self.received(), Instant::now());
        while last.0 < expected && last.1.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.received();
            if now > last.0 {
                last = (now, Instant::now());
            }
        }
    }
}

/// Offers triggers at `rate`/s to a webhook workflow; latency is trigger sent → webhook
/// received by the sink. The sink must be the one `webhook` workflow posts to.
pub async fn trigger_to_webhook(
    cluster: &Arc<Cluster>,
    sink: &WebhookSink,
    rate: u64,
    seconds: u64,
    first: u64,
) -> Figure {
    let http = reqwest::Client::new();
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut ticker = tokio::time::interval(interval);
    let mut sent = Vec::new();
    let before = sink.received();
    let start = Instant::now();
    for n in first..first + rate * seconds {
        ticker.tick().await;
        let (http, cluster) = (http.clone(), cluster.clone());
        let t0 = Instant::now();
        sent.push((
            n,
            t0,
            tokio::spawn(async move {
                let body = json!({"recipients": [format!("hook-{n}")], "data": {"n": n}});
                trigger(&http, &cluster, "webhook", n, body).await
            }),
        ));
    }
    let mut accepted = Vec::new();
    for (n, t0, task) in sent {
        if task.await.unwrap_or(false) {
            accepted.push((n, t0));
        }
    }
    sink.wait_for(before + accepted.len()).await;
    let latencies_us: Vec<u64> = accepted
        .iter()
        .filter_map(|(n, t0)| sink.arrival(*n).map(|a| (a - *t0).as_micros() as u64))
        .collect();
    let end = sink.last_arrival().unwrap_or_else(Instant::now);
    Figure {
        count: latencies_us.len() as u64,
        per_second: latencies_us.len() as f64 / end.duration_since(start).as_secs_f64(),
        latencies_us,
    }
}

/// Closed-loop triggers to the webhook workflow for `seconds`, then waits for the sink:
/// webhooks delivered per second from the first trigger to the last delivery.
pub async fn webhook_throughput(
    cluster: &Arc<Cluster>,
    sink: &WebhookSink,
    clients: usize,
    seconds: u64,
    first: u64,
) -> Figure {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let before = sink.received();
    let accepted = {
        let cluster = cluster.clone();
        closed_loop(clients, seconds, move |n| {
            let (http, cluster) = (http.clone(), cluster.clone());
            async move {
                let n = first + n;
                let body = json!({"recipients": [format!("hook-{n}")], "data": {"n": n}});
                trigger(&http, &cluster, "webhook", n, body).await
            }
        })
        .await
    };
    sink.wait_for(before + accepted.count as usize).await;
    let delivered = (sink.received() - before) as u64;
    let end = sink.last_arrival().unwrap_or_else(Instant::now);
    Figure::rate(delivered, end.duration_since(start))
}

/// One trigger to an object with `subscribers` subscribers (seeded through the store
/// before the servers start) until every subscriber's in-app message exists.
pub async fn fan_out(
    hark: &str,
    store: &str,
    nodes: usize,
    subscribers: usize,
) -> anyhow::Result<(Figure, f64)> {
    let prepared = Prepared::new(store).await?;
    {
        let seed = hark_store::connect(&prepared.url).await?;
        seed.ensure_default_environments(0).await?;
        let env = seed
            .environment_by_slug("development")
            .await?
            .context("development environment")?
            .id;
        seed.upsert_object(&env, "everyone", "all", &serde_json::Map::new(), 0)
            .await?;
        let keys: Vec<hark_store::RecipientKey> = (0..subscribers)
            .map(|i| hark_store::RecipientKey {
                collection: None,
                id: format!("sub-{i:07}"),
            })
            .collect();
        for chunk in keys.chunks(5_000) {
            seed.add_subscriptions(&env, "everyone", "all", chunk, &json!({}), 0)
                .await?;
        }
    }
    let cluster = Cluster::start(hark, prepared, nodes).await?;
    cluster.put_workflow("announce", feed_step()).await?;
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/workflows/announce/trigger", cluster.base(0)))
        .bearer_auth(&cluster.secret_key)
        .json(&json!({"recipients": [{"collection": "everyone", "id": "all"}], "data": {"n": 0}}))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("fan-out trigger failed: {}", resp.text().await?);
    }
    // The database is this figure's own: every message is one of the fan-out's. A bare
    // COUNT(*) keeps the polling cheap next to what it measures.
    let sql = "SELECT COUNT(*) AS n FROM messages";
    let mut last = (0, Instant::now());
    loop {
        let done = cluster.count(sql).await?;
        if done >= subscribers as i64 {
            break;
        }
        if done > last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            bail!("fan-out stalled at {done} of {subscribers} messages");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((
        Figure::rate(subscribers as u64, started.elapsed()),
        cluster.peak_rss_mib(),
    ))
}

/// Feed reads (50 items with counts) by `readers` clients while triggers are offered at
/// `rate`/s to other recipients.
pub async fn feed_read_under_load(
    cluster: &Arc<Cluster>,
    rate: u64,
    readers: usize,
    seconds: u64,
) -> anyhow::Result<Figure> {
    let http = reqwest::Client::new();
    for n in 0..50 {
        let body = json!({"recipients": ["reader"], "data": {"n": n}});
        if !trigger(&http, cluster, "feed", n, body).await {
            bail!("seeding the reader's feed failed");
        }
    }
    let feed = format!(
        "{}/v1/users/reader/feeds/in-app-feed?page_size=50",
        cluster.base(0)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let entries = http
            .get(&feed)
            .bearer_auth(&cluster.secret_key)
            .send()
            .await?
            .json::<Value>()
            .await?["entries"]
            .as_array()
            .map_or(0, Vec::len);
        if entries >= 50 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the reader's feed holds {entries} of 50 items");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let load = {
        let (http, cluster) = (http.clone(), cluster.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            for n in 0..rate * (seconds + 1) {
                ticker.tick().await;
                let (http, cluster) = (http.clone(), cluster.clone());
                tokio::spawn(async move {
                    let body = json!({"recipients": [format!("load-{n}")], "data": {"n": n}});
                    trigger(&http, &cluster, "feed", n, body).await
                });
            }
        })
    };
    let cluster = cluster.clone();
    let figure = closed_loop(readers, seconds, move |n| {
        let (http, cluster) = (http.clone(), cluster.clone());
        async move {
            let url = format!(
                "{}/v1/users/reader/feeds/in-app-feed?page_size=50",
                cluster.base(n)
            );
            match http.get(&url).bearer_auth(&cluster.secret_key).send().await {
                Ok(r) if r.status().is_success() => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["entries"].as_array().is_some_and(|e| e.len() == 50)),
                _ => false,
            }
        }
    })
    .await;
    load.abort();
    Ok(figure)
}

/// How late a one-second delay ends: `runs` triggers, about 27 a second, of `delay 1 s →
/// in-app message`, each read as its message's creation less its run's creation and the
/// second (both stamped by the server). The baseline, triggered alongside: the same
/// workflow without the delay, the engine's own time from a run to its message.
/// Returns (baseline, figure).
pub async fn delay_lateness(cluster: &Cluster, runs: u64) -> anyhow::Result<(Figure, Figure)> {
    const DELAY_MS: i64 = 1_000;
    cluster.put_workflow("soon", feed_step()).await?;
    let mut delayed = json!([{"type": "delay", "ref": "wait",
        "settings": {"delay_for": {"unit": "seconds", "value": DELAY_MS / 1_000}}}]);
    if let (Some(steps), Value::Array(feed)) = (delayed.as_array_mut(), feed_step()) {
        steps.extend(feed);
    }
    cluster.put_workflow("later", delayed).await?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    for n in 0..runs {
        for workflow in ["soon", "later"] {
            let body = json!({"recipients": [format!("{workflow}-{n}")], "data": {"n": n}});
            if !trigger(&http, cluster, workflow, n, body).await {
                bail!("triggering {workflow} failed");
            }
        }
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
    let elapsed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.count("SELECT COUNT(*) AS n FROM messages").await? < 2 * runs as i64 {
        if Instant::now() > deadline {
            bail!("the delayed messages did not all arrive");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut figures = Vec::new();
    for (workflow, due_after) in [("soon", 0), ("later", DELAY_MS)] {
        let late_ms = cluster
            .integers(&format!(
                "SELECT m.inserted_at - r.inserted_at - {due_after} AS n FROM messages m \
                 JOIN recipient_runs r ON r.id = m.recipient_run_id WHERE m.workflow_key = '{workflow}'"
            ))
            .await?;
        let mut figure = Figure::rate(runs, elapsed);
        figure.latencies_us = late_ms
            .iter()
            .map(|ms| ms.max(&0).unsigned_abs() * 1_000)
            .collect();
        figures.push(figure);
    }
    let late = figures.pop().context("the delayed figure")?;
    let soon = figures.pop().context("the baseline")?;
    Ok((soon, late))
}
