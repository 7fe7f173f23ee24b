//! Fan-out jobs: stream an object's subscribers into runs, one page per commit, so memory
//! stays bounded however many subscribers there are and a crash resumes mid-way.

use std::time::Duration;

use hark_store::handoff::LocalWorkers;
use hark_store::{ClaimedJob, StoreError};

use crate::Engine;

/// Subscribers turned into runs per transaction.
const FAN_OUT_PAGE: i64 = 500;

/// How long a page waits for this node's workers to have room for its runs before they
/// are written for any node to claim. Waiting paces the fan-out to the workers, which
/// then start every run without a claim.
const ROOM_WAIT: Duration = Duration::from_millis(200);

impl Engine {
    pub(crate) async fn fan_out(&self, job: &ClaimedJob) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let slots = &self.inner.slots;
        loop {
            let Some(fanout) = store.load_fanout(&job.ref_id).await? else {
                store.complete_job(job).await?;
                return Ok(());
            };
            let page = store
                .object_subscriptions(
                    &fanout.environment_id,
                    &fanout.collection,
                    &fanout.object_id,
                    fanout.after.as_ref(),
                    FAN_OUT_PAGE,
                )
                .await?;
            let done = page.is_empty();
            // Room for the whole page or none of it: a page's runs share one lease.
            let reservation = match page.len() {
                0 => None,
                n => slots.reserve_waiting(n, ROOM_WAIT).await,
            };
            let now = self.inner.clock.now_ms();
            let lease = reservation.as_ref().map(|r| &r.lease);
            let Some(written) = store.fan_out_page(job, &fanout, &page, lease, now).await? else {
                return Ok(());
            };
            let unheld_runs = written.outcome > written.leased_jobs.len();
            let nested = page.iter().any(|s| s.recipient.collection.is_some());
            if let Some(reservation) = reservation {
                slots.start(reservation, written.leased_jobs);
            }
            if unheld_runs || nested {
                self.wake();
            }
            if done {
                return Ok(());
            }
        }
    }
}
