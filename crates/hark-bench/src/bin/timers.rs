//! Timer benchmark: how many open delays and batches one node holds, and how fast due
//! timers fire, next to the raw claim rate of the same job table measured in the same run.
//!
//! `cargo run --release -p hark-bench --bin timers -- --store sqlite --count 20000`
//!
//! Runs the engine in-process on a virtual clock, so "every timer falls due at once" is
//! exact: the figures are the engine's throughput, not a timer's lateness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hark_bench::baselines::raw_batched_insert_rate;
use hark_channels::outbound::OutboundPolicy;
use hark_core::{Clock, ManualClock};
use hark_engine::{ChannelRegistry, Engine, EngineConfig};
use hark_store::{Store, TriggerFrequency, TriggerWrite};
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Open timers of each kind.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Subscribers of the object the fan-out figure triggers.
    #[arg(long, default_value_t = 100_000)]
    subscribers: usize,
    /// Jobs a node works on at once (the engine's `concurrency`).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

const START: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

/// Resident set size of this process in MiB, from /proc.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn open_store(kind: &str, dir: &std::path::Path) -> anyhow::Result<Arc<dyn Store>> {
    let url = match kind {
        "sqlite" => format!("sqlite://{}", dir.join("bench.db").display()),
        "postgres" => hark_store::testing::fresh_postgres_database().await?,
        other => anyhow::bail!("unknown store `{other}`"),
    };
    let store = hark_store::connect(&url).await?;
    store.ensure_default_environments(START).await?;
    Ok(store)
}

async fn environment(store: &Arc<dyn Store>) -> anyhow::Result<String> {
    Ok(store
        .environment_by_slug("development")
        .await?
        .context("development environment")?
        .id)
}

/// Triggers `workflow` for `count` recipients, 1,000 per trigger, as the API would.
async fn trigger_many(
    store: &Arc<dyn Store>,
    env: &str,
    workflow: &str,
    count: usize,
    per_recipient_data: bool,
) -> anyhow::Result<()> {
    let version = store
        .committed_workflow(env, workflow)
        .await?
        .context("committed workflow")?
        .version;
    let recipients: Vec<String> = (0..count).map(|i| format!("{workflow}-{i}")).collect();
    for chunk in recipients.chunks(1000) {
        let write = TriggerWrite {
            environment_id: env.to_string(),
            workflow_key: workflow.to_string(),
            workflow_version: version,
            workflow_run_id: hark_core::new_id(),
            actor: None,
            tenant: None,
            data: if per_recipient_data {
                json!({"n": 1})
            } else {
                json!({})
            },
            cancellation_key: None,
            recipients: chunk.to_vec(),
            inline_users: vec![],
            inline_objects: vec![],
            inline_documents: Vec::new(),
            fan_outs: vec![],
            idempotency: None,
            state: json!({}),
            frequency: TriggerFrequency::EveryTrigger,
            lease: None,
            now: START,
        };
        store.create_trigger(&write).await?;
    }
    Ok(())
}

fn feed_step() -> Value {
    json!({"type": "channel", "ref": "f", "channel_key": "in-app-feed", "template": {"markdown_body": "hi {{ recipient.id }}"}})
}

struct Figure {
    label: &'static str,
    count: usize,
    elapsed: Duration,
}

impl Figure {
    fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The job table alone: claim due jobs in batches and delete each, with the engine's
/// concurrency, on jobs whose runs don't exist (so no step work is done).
async fn raw_claim_rate(store: &Arc<dyn Store>, env: &str, args: &Args) -> anyhow::Result<Figure> {
    store
        .save_workflow(
            env,
            "raw",
            &json!({"name": "raw", "steps": []}),
            true,
            START,
        )
        .await?;
    trigger_many(store, env, "raw", args.count, false).await?;
    let started = Instant::now();
    let mut done = 0;
    loop {
        let jobs = store.claim_due_jobs(START, 64, 60_000).await?;
        if jobs.is_empty() {
            break;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for job in jobs {
            let store = store.clone();
            tasks.spawn(async move { store.complete_job(&job).await });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
            done += 1;
        }
    }
    Ok(Figure {
        label: "raw claim + delete of due jobs (baseline)",
        count: done,
        elapsed: started.elapsed(),
    })
}

/// One trigger to an object with `subscribers` subscribers, until every subscriber has its
/// in-app message.
async fn fan_out_rate(
    store: &Arc<dyn Store>,
    engine: &Engine,
    env: &str,
    subscribers: usize,
    now: i64,
) -> anyhow::Result<Figure> {
    store
        .upsert_object(env, "everyone", "all", &serde_json::Map::new(), START)
        .await?;
    let keys: Vec<hark_store::RecipientKey> = (0..subscribers)
        .map(|i| hark_store::RecipientKey {
            collection: None,
            id: format!("sub-{i:07}"),
        })
        .collect();
    for chunk in keys.chunks(5_000) {
        store
            .add_subscriptions(env, "everyone", "all", chunk, &json!({}), START)
            .await?;
    }
    store
        .save_workflow(
            env,
            "announce",
            &json!({"name": "announce", "steps": [feed_step()]}),
            true,
            START,
        )
        .await?;
    let version = store
        .committed_workflow(env, "announce")
        .await?
        .context("announce")?
        .version;
    let started = Instant::now();
    store
        .create_trigger(&TriggerWrite {
            environment_id: env.to_string(),
            workflow_key: "announce".into(),
            workflow_version: version,
            workflow_run_id: hark_core::new_id(),
            actor: None,
            tenant: None,
            data: json!({}),
            cancellation_key: None,
            recipients: vec![],
            inline_users: vec![],
            inline_objects: vec![],
            inline_documents: Vec::new(),
            fan_outs: vec![("everyone".into(), "all".into())],
            idempotency: None,
            state: json!({}),
            frequency: TriggerFrequency::EveryTrigger,
            lease: None,
            now,
        })
        .await?;
    engine.run_until_idle().await?;
    Ok(Figure {
        label: "fan-out: subscribers reached (run + in-app message)",
        count: subscribers,
        elapsed: started.elapsed(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let baseline_store = open_store(&args.store, dir.path()).await?;
    let env = environment(&baseline_store).await?;
    let baseline = raw_claim_rate(&baseline_store, &env, &args).await?;
    drop(baseline_store);

    let work_dir = tempfile::tempdir()?;
    let store = open_store(&args.store, work_dir.path()).await?;
    let env = environment(&store).await?;
    let clock = Arc::new(ManualClock::new(START));
    let channels = ChannelRegistry::build(
        &[],
        OutboundPolicy {
            allow_private_networks: false,
        },
        Duration::from_secs(5),
    )?;
    let engine = Engine::new(
        store.clone(),
        clock.clone(),
        Arc::new(channels),
        EngineConfig {
            concurrency: args.concurrency,
            claim_batch: args.concurrency as i64,
            ..EngineConfig::default()
        },
    )?;
    store
        .save_workflow(
            &env,
            "delayed",
            &json!({"name": "delayed", "steps": [
                {"type": "delay", "ref": "d", "settings": {"delay_for": {"unit": "minutes", "value": 1}}}, feed_step()]}),
            true,
            START,
        )
        .await?;
    store
        .save_workflow(
            &env,
            "batched",
            &json!({"name": "batched", "steps": [
                {"type": "batch", "ref": "b", "settings": {"batch_window": {"unit": "minutes", "value": 2}}}, feed_step()]}),
            true,
            START,
        )
        .await?;
    let rss_before = rss_mib();
    trigger_many(&store, &env, "delayed", args.count, false).await?;
    trigger_many(&store, &env, "batched", args.count, true).await?;
    let started = Instant::now();
    let registered = engine.run_until_idle().await?;
    let open = Figure {
        label: "runs reaching a delay or opening a batch",
        count: registered,
        elapsed: started.elapsed(),
    };
    let rss_open = rss_mib();
    let pending = store.pending_job_count().await?;

    clock.advance(MINUTE);
    let started = Instant::now();
    let fired = engine.run_until_idle().await?;
    let delays = Figure {
        label: "due delays fired (run resumes, message created)",
        count: fired,
        elapsed: started.elapsed(),
    };
    clock.advance(MINUTE);
    let started = Instant::now();
    let closed = engine.run_until_idle().await?;
    let batches = Figure {
        label: "due batches closed and continued (2 jobs each)",
        count: closed,
        elapsed: started.elapsed(),
    };

    let fan_out = fan_out_rate(&store, &engine, &env, args.subscribers, clock.now_ms()).await?;
    let raw = raw_batched_insert_rate(&args.store, work_dir.path(), args.subscribers).await?;
    let raw_insert = Figure {
        label: "raw batched inserts, 500 rows per commit (baseline)",
        count: raw.count as usize,
        elapsed: Duration::from_secs_f64(raw.count as f64 / raw.per_second.max(1e-9)),
    };

    println!(
        "store={} count={} concurrency={}",
        args.store, args.count, args.concurrency
    );
    println!(
        "open timers held: {} delays + {} batches ({} pending jobs); RSS {:.1} MiB before, {:.1} MiB while holding them",
        args.count, args.count, pending, rss_before, rss_open
    );
    for figure in [&baseline, &open, &delays, &batches, &fan_out, &raw_insert] {
        println!(
            "{:<52} {:>8} in {:>7.2}s = {:>9.0}/s",
            figure.label,
            figure.count,
            figure.elapsed.as_secs_f64(),
            figure.per_second()
        );
    }
    let messages = store
        .list_messages(
            &env,
            &hark_store::MessageFilter::default(),
            &hark_store::PageRequest {
                page_size: 1,
                ..Default::default()
            },
        )
        .await?;
    anyhow::ensure!(!messages.entries.is_empty(), "timers produced messages");
    anyhow::ensure!(store.pending_job_count().await? == 0, "every timer fired");
    Ok(())
}
