//! The durable runner. Workers claim due jobs from the store's job table, advance
//! recipient runs step by step, and deliver messages with retries. Every decision reads
//! the injected [`Clock`]; every write a job makes is fenced by its lease.

mod advance;
mod backoff;
mod channel;
pub mod channel_data;
mod context;
mod deliver;
mod deliver_push_chat;
mod fanout;
mod functions;
pub mod layout;
mod prefetch;
pub mod push_chat;
pub mod registry;
pub mod render;
pub mod tracking;

use crate::prefetch::Prefetched;
use std::sync::Arc;
use std::time::Duration;

use hark_core::Clock;
use hark_store::{
    delivery_committer, step_committer, ClaimedJob, DeliveryCommitter, JobKind, StepCommitter,
    Store, StoreError,
};
use hark_template::Renderer;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

pub use backoff::{retry_delay_ms, MAX_DELIVERY_ATTEMPTS};
pub use registry::{ChannelConfig, ChannelRegistry};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Jobs processed at once by this node.
    pub concurrency: usize,
    /// Jobs claimed per round trip.
    pub claim_batch: i64,
    /// How long a claim is held before another worker may take the job over.
    pub lease_ms: i64,
    /// Longest sleep between claims when nothing wakes the worker.
    pub poll_interval: Duration,
    /// Where link and open tracking URLs point and how they are signed; without it no
    /// message is rewritten, whatever the channels say.
    pub tracking: Option<tracking::Tracking>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            concurrency: 256,
            claim_batch: 128,
            lease_ms: 60_000,
            poll_interval: Duration::from_millis(250),
            tracking: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("template engine failed to start: {0}")]
    Template(#[from] hark_template::TemplateError),
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    channels: Arc<ChannelRegistry>,
    renderer: Renderer,
    wake: Notify,
    /// Other nodes' workers, reached through the store (PostgreSQL only).
    wakeups: Option<Arc<hark_store::wakeups::JobWakeups>>,
    config: EngineConfig,
    /// Step outcomes of concurrent jobs share commits.
    steps: StepCommitter,
    /// Group commit for delivery outcomes.
    deliveries: DeliveryCommitter,
    /// Parsed, immutable workflow versions by (environment, key, version).
    workflows: std::sync::Mutex<WorkflowCache>,
}

type WorkflowCache =
    std::collections::HashMap<(String, String, i64), Arc<hark_core::workflow::WorkflowDefinition>>;

/// Cheap to clone; all clones share one worker state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        channels: Arc<ChannelRegistry>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        Ok(Self {
            inner: Arc::new(Inner {
                steps: step_committer(store.clone()),
                deliveries: delivery_committer(store.clone()),
                workflows: std::sync::Mutex::new(WorkflowCache::new()),
                wakeups: store.job_wakeups(),
                store,
                clock,
                channels,
                renderer: Renderer::new()?,
                wake: Notify::new(),
                config,
            }),
        })
    }

    pub fn channels(&self) -> &Arc<ChannelRegistry> {
        &self.inner.channels
    }

    /// The tracking URL settings, when this server rewrites links.
    pub fn tracking(&self) -> Option<&tracking::Tracking> {
        self.inner.config.tracking.as_ref()
    }

    /// Tells idle workers that new jobs are due (called after a trigger commits): this
    /// node's at once, other nodes' through the store's wake-ups. Harmless on a node
    /// that runs no workers.
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
        if let Some(wakeups) = &self.inner.wakeups {
            wakeups.announce();
        }
    }

    /// Claims and processes due jobs until `shutdown` turns true. In-flight jobs finish
    /// before it returns; jobs it never got to stay in the table for the next start.
    pub async fn run_workers(&self, mut shutdown: watch::Receiver<bool>) {
        // Other nodes' announcements wake this node's workers; the poll stays as the
        // fallback for announcements lost to a crash or a dropped connection.
        let listener = self.inner.wakeups.clone().map(|wakeups| {
            let inner = self.inner.clone();
            tokio::spawn(async move { wakeups.listen(move || inner.wake.notify_waiters()).await })
        });
        let permits = Arc::new(Semaphore::new(self.inner.config.concurrency));
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            // Register interest before claiming so a wake that arrives between the claim
            // and the sleep is not lost.
            let notified = self.inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let free = permits.available_permits() as i64;
            let limit = free.min(self.inner.config.claim_batch);
            let mut claimed = 0;
            if limit > 0 {
                match self
                    .inner
                    .store
                    .claim_due_jobs(self.inner.clock.now_ms(), limit, self.inner.config.lease_ms)
                    .await
                {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        metrics::counter!("hark_jobs_claimed_total").increment(claimed as u64);
                        let prefetched = self.prefetch(&jobs).await;
                        for job in jobs {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                break;
                            };
                            let engine = self.clone();
                            let prefetched = prefetched.clone();
                            let span =
                                tracing::info_span!("job", kind = job.kind.as_str(), id = %job.id);
                            tasks.spawn(
                                async move {
                                    engine.process_job(job, prefetched.as_deref()).await;
                                    drop(permit);
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            // A full claim means more may be due: claim again at once (with every permit
            // taken, the next round waits for a job to finish instead of spinning).
            if limit > 0 && claimed as i64 >= limit {
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(self.inner.config.poll_interval) => {}
                _ = shutdown.changed() => {}
                // A finished job frees a permit, and what it committed may be due now.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        if let Some(listener) = listener {
            listener.abort();
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Processes every job due at the clock's current time, including jobs those jobs
    /// create, and returns how many it processed. Tests drive virtual time with this.
    pub async fn run_until_idle(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let jobs = self
                .inner
                .store
                .claim_due_jobs(
                    self.inner.clock.now_ms(),
                    self.inner.config.claim_batch,
                    self.inner.config.lease_ms,
                )
                .await?;
            if jobs.is_empty() {
                return Ok(total);
            }
            total += jobs.len();
            let prefetched = self.prefetch(&jobs).await;
            let mut tasks = JoinSet::new();
            for job in jobs {
                let engine = self.clone();
                let prefetched = prefetched.clone();
                tasks.spawn(async move { engine.process_job(job, prefetched.as_deref()).await });
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Reads ahead for a claimed batch with more than one run to advance or message to
    /// deliver. A failed read only costs the speed-up: each job then reads for itself.
    async fn prefetch(&self, jobs: &[ClaimedJob]) -> Option<Arc<Prefetched>> {
        if !prefetch::worth_prefetching(jobs) {
            return None;
        }
        match Prefetched::load(&self.inner.store, jobs).await {
            Ok(prefetched) => Some(Arc::new(prefetched)),
            Err(e) => {
                tracing::warn!(error = %e, "reading ahead for claimed runs failed");
                None
            }
        }
    }

    async fn process_job(&self, job: ClaimedJob, prefetched: Option<&Prefetched>) {
        let result = match job.kind {
            JobKind::AdvanceRun => self.advance_run(&job, prefetched).await,
            JobKind::DeliverMessage => self.deliver_message(&job, prefetched).await,
            JobKind::CloseBatch => self.close_batch(&job).await,
            JobKind::FanOut => self.fan_out(&job).await,
        };
        if let Err(e) = result {
            // The job keeps its lease and becomes due again when the lease expires: a
            // store hiccup delays the work, it never drops it.
            tracing::warn!(job = %job.id, kind = job.kind.as_str(), error = %e, "job failed; will retry");
        }
    }
}
