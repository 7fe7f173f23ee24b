//! `/metrics`: the node's counters and histograms in Prometheus' text format, rendered on
//! request, plus the job queue's depth and lag, read from the store with one query per
//! scrape (the queue is shared by every node, so any node can report it).
//!
//! Unauthenticated, like `/healthz`: it carries counts and latencies, never customer data.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hark_core::Clock;
use hark_store::Store;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds (seconds) for latency histograms: 1 ms to 5 minutes, since a delivery
/// that is retried with backoff ends minutes after its message was created.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs the process-wide recorder the `metrics` macros report to. Call once.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .install_recorder()
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// The `/metrics` route, to merge into whichever router the node serves.
pub fn router(handle: PrometheusHandle, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            handle,
            store,
            clock,
        })
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let now = scrape.clock.now_ms();
    match scrape.store.job_queue_stats(now).await {
        Ok(stats) => {
            metrics::gauge!("hark_job_queue_depth").set(stats.due as f64);
            let lag_ms = stats.oldest_due_at.map_or(0, |at| (now - at).max(0));
            metrics::gauge!("hark_job_queue_lag_seconds").set(lag_ms as f64 / 1000.0);
        }
        // The node's own figures are still worth a scrape without the queue's.
        Err(e) => tracing::warn!(error = %e, "reading the job queue for /metrics failed"),
    }
    // Histograms are summarised lazily; bring them up to date before rendering.
    scrape.handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        scrape.handle.render(),
    )
}
