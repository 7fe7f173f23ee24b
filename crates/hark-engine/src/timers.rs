//! When this node's own timers come due: the instants at which jobs it wrote for later
//! (a delay or throttle window, a wait's expiry, a batch window's close, a delivery
//! retry) become due, so its worker loop claims them then instead of on the next poll.
//!
//! Only a hint kept in memory. When the worker loop starts it reads the first instants
//! from the job table (what this node wrote before it restarted, and the leases of a
//! node that died); a timer beyond what is kept, or a job another node wrote while this
//! one runs, is found by the poll as before, and a timer whose job was taken or made due
//! earlier costs one claim that finds nothing.

use std::collections::BTreeSet;
use std::sync::Mutex;

use hark_core::Millis;
use tokio::sync::Notify;

/// Timers kept at once; beyond this the latest are left to the poll.
const MAX_TIMERS: usize = 10_000;

#[derive(Default)]
pub(crate) struct DueTimers {
    instants: Mutex<BTreeSet<Millis>>,
    /// Notified when a timer earlier than every other arrives, so the worker loop stops
    /// sleeping towards a later instant.
    earlier: Notify,
}

impl DueTimers {
    /// Remembers that jobs become due at `at`.
    pub(crate) fn note(&self, at: Millis) {
        let Ok(mut instants) = self.instants.lock() else {
            return;
        };
        let earliest = instants.first().is_none_or(|first| at < *first);
        if instants.len() >= MAX_TIMERS {
            match instants.last() {
                Some(&latest) if at < latest => {
                    instants.remove(&latest);
                }
                _ => return,
            }
        }
        instants.insert(at);
        drop(instants);
        if earliest {
            self.earlier.notify_one();
        }
    }

    /// The earliest timer kept.
    pub(crate) fn earliest(&self) -> Option<Millis> {
        self.instants.lock().ok()?.first().copied()
    }

    /// Forgets the timers up to `now`: a claim at `now` takes what they were for.
    pub(crate) fn forget_through(&self, now: Millis) {
        if let Ok(mut instants) = self.instants.lock() {
            let later = instants.split_off(&now.saturating_add(1));
            *instants = later;
        }
    }

    /// Waits for a timer earlier than those kept (a notice given while nobody waited is
    /// kept for the next wait).
    pub(crate) async fn earlier_noted(&self) {
        self.earlier.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_timer_is_kept_and_passed_ones_are_forgotten() {
        let timers = DueTimers::default();
        assert_eq!(timers.earliest(), None);
        for at in [300, 100, 200, 100] {
            timers.note(at);
        }
        assert_eq!(timers.earliest(), Some(100));
        timers.forget_through(200);
        assert_eq!(timers.earliest(), Some(300));
        timers.forget_through(300);
        assert_eq!(timers.earliest(), None);
    }

    #[test]
    fn beyond_the_limit_the_latest_timers_are_left_to_the_poll() {
        let timers = DueTimers::default();
        for at in 0..MAX_TIMERS as Millis {
            timers.note(1_000 + at);
        }
        // Later than all kept: dropped. Earlier: kept, in place of the latest.
        timers.note(1_000_000);
        timers.note(5);
        let instants = timers
            .instants
            .lock()
            .map(|i| i.clone())
            .unwrap_or_default();
        assert_eq!(instants.len(), MAX_TIMERS);
        assert_eq!(instants.first(), Some(&5));
        assert!(!instants.contains(&1_000_000));
        assert!(!instants.contains(&(1_000 + MAX_TIMERS as Millis - 1)));
    }

    #[tokio::test]
    async fn an_earlier_timer_wakes_the_waiting_loop() -> Result<(), Box<dyn std::error::Error>> {
        let timers = std::sync::Arc::new(DueTimers::default());
        timers.note(500);
        // Taken by this wait: the first timer was the earliest.
        timers.earlier_noted().await;
        // A later one gives no notice; an earlier one wakes the waiter.
        timers.note(900);
        let waiting = tokio::spawn({
            let timers = timers.clone();
            async move { timers.earlier_noted().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        timers.note(100);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await??;
        Ok(())
    }
}
