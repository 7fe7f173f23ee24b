//! Load generator: starts real `hark serve` processes on loopback and measures them,
//! printing every figure next to a baseline measured in the same run on the same machine.
//!
//! `cargo run --release -p hark-bench -- --hark target/release/hark --store sqlite`
//! `… --store postgres --nodes 2` runs two servers on one PostgreSQL database.

use std::sync::Arc;

use anyhow::bail;
use clap::Parser;
use hark_bench::baselines::{
    empty_route_baseline, fan_out_floor, raw_batched_insert_rate, raw_commit_baseline,
};
use hark_bench::cluster::{Cluster, Prepared};
use hark_bench::figures::{
    delay_lateness, fan_out, feed_read_under_load, feed_step, trigger_accept_rate, trigger_to_feed,
    trigger_to_webhook, webhook_step, webhook_throughput, WebhookSink,
};
use hark_bench::measure::cpu_seconds_named;

#[derive(Parser)]
struct Args {
    /// The `hark` binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/hark")]
    hark: String,
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Servers sharing the store (PostgreSQL only); requests are spread round-robin.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Concurrent clients for throughput figures.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds per throughput figure.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Offered trigger rate for the latency figures (per second).
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Subscribers of the object the fan-out figure triggers (0 skips the figure).
    #[arg(long, default_value_t = 100_000)]
    subscribers: usize,
    /// Concurrent feed readers for the feed-read figure.
    #[arg(long, default_value_t = 4)]
    readers: usize,
    /// Measure only these groups (comma-separated): baselines, accept, api-only,
    /// visible, webhook, feed, timers, fan-out. All of them when absent.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Args {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

/// PostgreSQL's current write-ahead log position in bytes.
const WAL_POSITION: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS n";

fn line(kind: &str, label: &str, value: String) {
    println!("{kind:<9} {label:<52} {value}");
}

async fn cluster(args: &Args) -> anyhow::Result<Arc<Cluster>> {
    cluster_with_role(args, "all").await
}

async fn cluster_with_role(args: &Args, role: &str) -> anyhow::Result<Arc<Cluster>> {
    let prepared = Prepared::new(&args.store).await?;
    let cluster = Cluster::start_with_role(&args.hark, prepared, args.nodes, role).await?;
    cluster.put_workflow("feed", feed_step()).await?;
    Ok(Arc::new(cluster))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.nodes > 1 && args.store != "postgres" {
        bail!("--nodes > 1 needs --store postgres");
    }
    println!(
        "hark-bench: store={} nodes={} clients={} seconds={} rate={}/s cores={}",
        args.store,
        args.nodes,
        args.clients,
        args.seconds,
        args.rate,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let (c, s, r) = (args.clients, args.seconds, args.rate);
    if args.wants("baselines") {
        line(
            "baseline",
            &format!("empty axum route, {c} clients"),
            empty_route_baseline(c, s).await?.describe(),
        );
        line(
            "baseline",
            &format!("raw single-row commits ({})", args.store),
            raw_commit_baseline(&args.store, c, s).await?.describe(),
        );
    }

    // Each figure gets fresh servers, so none is measured behind another's backlog.
    let mut peak_rss: f64 = 0.0;
    if args.wants("accept") {
        let accept = cluster(&args).await?;
        line(
            "figure",
            "trigger accept rate, 1 recipient",
            trigger_accept_rate(&accept, "feed", c, s).await.describe(),
        );
        line(
            "figure",
            "cold start (spawn → healthy), idle RSS",
            format!(
                "{:>7.1} ms, {:.1} MiB",
                accept.cold_start.as_secs_f64() * 1000.0,
                accept.idle_rss_mib
            ),
        );
        peak_rss = peak_rss.max(accept.peak_rss_mib());
    }

    // The same with the workers off: what accepting alone costs, runs left queued.
    if args.wants("api-only") {
        let api_only = cluster_with_role(&args, "api").await?;
        line(
            "figure",
            "trigger accept rate, 1 recipient, API only (no workers)",
            trigger_accept_rate(&api_only, "feed", c, s)
                .await
                .describe(),
        );
        peak_rss = peak_rss.max(api_only.peak_rss_mib());
    }

    if args.wants("visible") {
        let visible = cluster(&args).await?;
        let mut phases = trigger_to_feed(&visible, r, s).await?;
        line(
            "figure",
            &format!("trigger → in-app message visible at {r}/s"),
            phases.total.describe(),
        );
        for (phase, figure) in [
            ("trigger sent → 2xx", &mut phases.accepted),
            ("2xx → new-message push", &mut phases.pushed),
            ("push → refetch shows it", &mut phases.refetched),
        ] {
            line(
                "  phase",
                phase,
                format!("{:>12}{}", "", figure.percentiles()),
            );
        }
        peak_rss = peak_rss.max(visible.peak_rss_mib());
    }

    if args.wants("webhook") {
        let hooks = cluster(&args).await?;
        let sink = WebhookSink::start().await?;
        hooks
            .put_workflow("webhook", webhook_step(&sink.url))
            .await?;
        line(
            "figure",
            &format!("trigger → webhook delivered at {r}/s"),
            trigger_to_webhook(&hooks, &sink, r, s, 0).await.describe(),
        );
        let postgres = args.store == "postgres";
        let cpu_before = (hooks.nodes_cpu_seconds(), cpu_seconds_named("postgres"));
        let wal_before = if postgres {
            hooks.count(WAL_POSITION).await?
        } else {
            0
        };
        let mut flat_out = webhook_throughput(&hooks, &sink, c, s, 10_000_000).await;
        let cpu_used = (
            hooks.nodes_cpu_seconds() - cpu_before.0,
            cpu_seconds_named("postgres") - cpu_before.1,
        );
        line(
            "figure",
            &format!("trigger → webhook delivered, {c} clients flat out"),
            flat_out.describe(),
        );
        // CPU per webhook says what throughput costs even when the machine's disk, not
        // its cores, sets the rate. PostgreSQL's share counts every `postgres` process.
        let per_webhook_us = |seconds: f64| seconds * 1e6 / flat_out.count.max(1) as f64;
        let database = if postgres {
            // WAL written per webhook counts the database's work without depending on
            // how fast this machine's cores or disk are today.
            let wal = hooks.count(WAL_POSITION).await? - wal_before;
            format!(
                ", PostgreSQL {:.0} µs; WAL {:.0} bytes",
                per_webhook_us(cpu_used.1),
                wal as f64 / flat_out.count.max(1) as f64
            )
        } else {
            String::new()
        };
        line(
            "figure",
            "CPU (and WAL) per webhook delivered flat out",
            format!("hark {:.0} µs{database}", per_webhook_us(cpu_used.0)),
        );
        peak_rss = peak_rss.max(hooks.peak_rss_mib());
    }

    if args.wants("timers") {
        let timers = cluster(&args).await?;
        let (mut soon, mut late) = delay_lateness(&timers, 100).await?;
        line(
            "baseline",
            "run → its in-app message, no delay (ms after the run)",
            soon.describe(),
        );
        line(
            "figure",
            "1 s delay → in-app message (ms after the second)",
            late.describe(),
        );
        peak_rss = peak_rss.max(timers.peak_rss_mib());
    }

    if args.wants("feed") {
        line(
            "baseline",
            &format!("empty axum route, {} clients", args.readers),
            empty_route_baseline(args.readers, s).await?.describe(),
        );
        let reads = cluster(&args).await?;
        line(
            "figure",
            &format!("feed read (50 items + counts) under {r} triggers/s"),
            feed_read_under_load(&reads, r, args.readers, s)
                .await?
                .describe(),
        );
        peak_rss = peak_rss.max(reads.peak_rss_mib());
    }

    if args.subscribers > 0 && args.wants("fan-out") {
        let dir = tempfile::tempdir()?;
        line(
            "baseline",
            &format!("raw batched inserts, {} rows, 500/commit", args.subscribers),
            raw_batched_insert_rate(&args.store, dir.path(), args.subscribers)
                .await?
                .describe(),
        );
        line(
            "baseline",
            &format!(
                "fan-out floor: {} messages' rows in Hark's schema",
                args.subscribers
            ),
            fan_out_floor(&args.store, dir.path(), args.subscribers)
                .await?
                .describe(),
        );
        let (mut figure, rss) =
            fan_out(&args.hark, &args.store, args.nodes, args.subscribers).await?;
        line(
            "figure",
            &format!("fan-out to {} subscribers, messages", args.subscribers),
            figure.describe(),
        );
        line(
            "figure",
            "peak RSS during fan-out",
            format!("{rss:>7.1} MiB"),
        );
    }
    line(
        "figure",
        "peak RSS of any node, other figures",
        format!("{peak_rss:>7.1} MiB"),
    );
    Ok(())
}
