//! Fan-out jobs: stream an object's subscribers into runs, one page per commit, so memory
//! stays bounded however many subscribers there are and a crash resumes mid-way.

use hark_store::{ClaimedJob, StoreError};

use crate::Engine;

/// Subscribers turned into runs per transaction.
const FAN_OUT_PAGE: i64 = 500;

impl Engine {
    pub(crate) async fn fan_out(&self, job: &ClaimedJob) -> Result<(), StoreError> {
        let store = &self.inner.store;
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
            let now = self.inner.clock.now_ms();
            match store.fan_out_page(job, &fanout, &page, now).await? {
                None => return Ok(()),
                Some(created) if created > 0 => self.wake(),
                Some(_) => {}
            }
            if done {
                return Ok(());
            }
        }
    }
}
