//! `hark serve`: the API server and the engine workers in one process, or one of the
//! two (`--role api|worker`) when several nodes share a PostgreSQL database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::{Args, ValueEnum};
use hark_channels::outbound::OutboundPolicy;
use hark_core::SystemClock;
use hark_engine::{ChannelRegistry, Engine, EngineConfig};
use tokio::sync::watch;

use crate::config::open_store;
use crate::StoreArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "HARK_LISTEN")]
    listen: Option<SocketAddr>,
    /// What this node does: `all` (default), `api` (HTTP only, no engine workers) or
    /// `worker` (engine workers; HTTP serves only health checks and metrics).
    #[arg(long, env = "HARK_ROLE", value_enum)]
    role: Option<Role>,
    /// `text` (default) or `json`: one JSON object per log line.
    #[arg(long, env = "HARK_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::logging::LogFormat,
    #[command(flatten)]
    store: StoreArgs,
}

/// The part of Hark a node runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The API and the engine workers.
    #[default]
    All,
    /// The public and Management APIs; jobs are left to worker nodes.
    Api,
    /// The engine workers, with health checks and metrics over HTTP.
    Worker,
}

impl Role {
    fn runs_workers(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }

    fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // The config file is read before anything else for the trace exporter's settings.
    let telemetry = crate::config::load(args.store.config.as_deref())?.telemetry;
    let traces = match telemetry.otlp_endpoint.as_deref() {
        Some(endpoint) => Some(crate::telemetry::tracer_provider(endpoint)?),
        None => None,
    };
    crate::logging::init(args.log_format, traces.as_ref());
    let metrics_handle =
        hark_api::prometheus::install_recorder().context("installing the metrics recorder")?;
    let (store, file) = open_store(&args.store).await?;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let policy = OutboundPolicy {
        allow_private_networks: file.outbound.allow_private_networks,
    };
    let timeout = Duration::from_secs(file.outbound.timeout_seconds.unwrap_or(15));
    let mut channels =
        ChannelRegistry::build(&file.channels, policy, timeout).context("configuring channels")?;
    bind_environments(&store, &mut channels).await?;
    let channels = Arc::new(channels);
    let public_url = crate::config::tracking_public_url(&file.tracking, listen)?;
    let mut engine_config = EngineConfig {
        tracking: Some(tracking(&store, &public_url).await?),
        ..EngineConfig::default()
    };
    if let Some(c) = file.engine.concurrency {
        engine_config.concurrency = c.max(1);
    }
    if let Some(ms) = file.engine.poll_interval_ms {
        engine_config.poll_interval = Duration::from_millis(ms.max(1));
    }
    if let Some(s) = file.engine.lease_seconds {
        engine_config.lease_ms = s.max(1) * 1000;
    }
    let engine = Engine::new(
        store.clone(),
        Arc::new(SystemClock),
        channels,
        engine_config,
    )?;
    let role = args.role.or(file.role).unwrap_or_default();
    let (stop_tx, stop_rx) = watch::channel(false);
    // An API-only node still has an engine: its `wake` reaches the other nodes' workers.
    let workers = role.runs_workers().then(|| {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run_workers(stop_rx).await })
    });
    let state = hark_api::AppState {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        // Triggers this node accepts run on its own workers while they have room.
        triggers: hark_store::trigger_committer(store.clone(), engine.local_workers()),
        engine,
        lookups: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        store = store.backend_name(),
        role = ?role,
        "hark is listening"
    );
    let app = if role.serves_api() {
        hark_api::router(state)
    } else {
        hark_api::ops_router(state)
    };
    let app = app.merge(hark_api::prometheus::router(
        metrics_handle,
        store.clone(),
        Arc::new(SystemClock),
    ));
    // One span per request (at INFO, so the default filter lets it reach the exporter).
    let app = app.layer(
        tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO)),
    );
    // Without TCP_NODELAY a realtime push queued behind an unacknowledged frame on the
    // same socket waits for the client's delayed ACK (tens of milliseconds).
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("HTTP stopped; waiting for in-flight jobs");
    let _ = stop_tx.send(true);
    if let Some(workers) = workers {
        let _ = workers.await;
    }
    if let Some(provider) = traces {
        // Sends the spans still buffered; the exporter's HTTP client blocks.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Gives the registry the ids of the environments its channels have settings for; an
/// environment the configuration names but the database lacks stops the start.
async fn bind_environments(
    store: &Arc<dyn hark_store::Store>,
    channels: &mut ChannelRegistry,
) -> anyhow::Result<()> {
    for slug in channels.configured_environments() {
        let environment = store
            .environment_by_slug(&slug)
            .await
            .context("reading environments")?
            .with_context(|| {
                format!("[channels.environments.{slug}]: there is no environment `{slug}`")
            })?;
        channels.bind_environment(&environment.id, &slug);
    }
    Ok(())
}

/// Link and open tracking: URLs under `public_url`, signed with the key every node reads
/// from the database (the first node to start creates it).
async fn tracking(
    store: &Arc<dyn hark_store::Store>,
    public_url: &str,
) -> anyhow::Result<hark_engine::tracking::Tracking> {
    use hark_engine::tracking::{Tracking, TrackingKey, TRACKING_SECRET_NAME};
    let secret = store
        .server_secret(
            TRACKING_SECRET_NAME,
            &hark_core::ids::random_hex(32),
            hark_core::Clock::now_ms(&SystemClock),
        )
        .await
        .context("reading the tracking key")?;
    Ok(Tracking::new(
        public_url,
        TrackingKey::new(secret.as_bytes()),
    ))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
