use std::sync::Arc;

use hark_core::Clock;
use hark_engine::{ChannelRegistry, Engine};
use hark_store::{Store, TriggerCommitter};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub engine: Engine,
    /// Group commit for triggers.
    pub triggers: TriggerCommitter,
    /// API keys and workflow versions seen in the last second.
    pub lookups: Arc<crate::lookups::Lookups>,
}

impl AppState {
    pub fn channels(&self) -> &Arc<ChannelRegistry> {
        self.engine.channels()
    }

    pub fn now(&self) -> hark_core::Millis {
        self.clock.now_ms()
    }
}
