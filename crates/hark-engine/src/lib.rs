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
mod timers;
pub mod tracking;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use hark_core::Clock;
use hark_store::handoff::LocalWorkers;
use hark_store::{
    delivery_committer, step_committer, DeliveryCommitter, StepCommitter, Store, StoreError,
};
use hark_template::Renderer;

use crate::workers::Slots;

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
    /// This node's worker slots: permits, hand-over of jobs written leased to them,
    /// wake-ups.
    slots: Arc<Slots>,
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
        let slots = Arc::new(Slots::new(&config, clock.clone(), store.job_wakeups()));
        Ok(Self {
            inner: Arc::new(Inner {
                steps: step_committer(store.clone(), slots.clone()),
                deliveries: delivery_committer(store.clone()),
                workflows: std::sync::Mutex::new(WorkflowCache::new()),
                slots,
                store,
                clock,
                channels,
                renderer: Renderer::new()?,
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

    /// This node's workers as group committers see them: triggers committed through a
    /// committer given this hand their runs' jobs straight to them.
    pub fn local_workers(&self) -> Arc<dyn LocalWorkers> {
        self.inner.slots.clone()
    }

    /// Tells idle workers that new jobs are due: this node's at once, other nodes'
    /// through the store's wake-ups. Harmless on a node that runs no workers.
    pub fn wake(&self) {
        self.inner.slots.wake();
    }

    /// Jobs this node wrote become due at `at`: its worker loop claims then.
    pub(crate) fn note_timer(&self, at: hark_core::Millis) {
        self.inner.slots.timers.note(at);
    }
}
