//! Short-lived copies of what nearly every server-side request looks up: the environment
//! behind a secret API key and the committed version of a workflow. Without them each
//! trigger would pay two database round trips before its write.
//!
//! Only found entries are kept, so something created is visible at once. Public keys are
//! not kept: whether their environment requires user tokens must hold from the moment it
//! is switched. A workflow committed or (de)activated through this node drops its entry
//! here; through another node the change is seen here within [`TTL`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hark_store::{Environment, KeyKind};

/// How long an entry is trusted.
pub const TTL: Duration = Duration::from_secs(1);

/// Entries kept before the map is emptied (bounds memory under many keys or workflows).
const MAX_ENTRIES: usize = 10_000;

struct ShortLived<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> ShortLived<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, value)| value.clone())
    }

    fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), value));
        }
    }

    fn forget(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

/// The per-node lookups; one per server, shared by every handler.
pub struct Lookups {
    api_keys: ShortLived<String, (Environment, KeyKind)>,
    workflow_heads: ShortLived<(String, String), (i64, bool)>,
}

impl Default for Lookups {
    fn default() -> Self {
        Self {
            api_keys: ShortLived::new(),
            workflow_heads: ShortLived::new(),
        }
    }
}

impl Lookups {
    pub fn api_key(&self, key_hash: &str) -> Option<(Environment, KeyKind)> {
        self.api_keys.get(&key_hash.to_string())
    }

    pub fn remember_api_key(&self, key_hash: String, found: (Environment, KeyKind)) {
        self.api_keys.put(key_hash, found);
    }

    /// `(committed version, active)` of a workflow.
    pub fn workflow_head(&self, environment_id: &str, key: &str) -> Option<(i64, bool)> {
        self.workflow_heads
            .get(&(environment_id.to_string(), key.to_string()))
    }

    pub fn remember_workflow_head(&self, environment_id: &str, key: &str, head: (i64, bool)) {
        self.workflow_heads
            .put((environment_id.to_string(), key.to_string()), head);
    }

    /// Called after this node changed the workflow.
    pub fn forget_workflow_head(&self, environment_id: &str, key: &str) {
        self.workflow_heads
            .forget(&(environment_id.to_string(), key.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_dropped() {
        let lookups = Lookups::default();
        assert_eq!(lookups.workflow_head("env", "w"), None);
        lookups.remember_workflow_head("env", "w", (3, true));
        assert_eq!(lookups.workflow_head("env", "w"), Some((3, true)));
        lookups.forget_workflow_head("env", "w");
        assert_eq!(lookups.workflow_head("env", "w"), None);
        lookups.remember_workflow_head("env", "w", (4, false));
        std::thread::sleep(TTL + Duration::from_millis(50));
        assert_eq!(lookups.workflow_head("env", "w"), None);
    }
}
