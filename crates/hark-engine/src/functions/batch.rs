//! Batch steps: joining or opening a batch, and closing it when its window ends.

use hark_core::workflow::{BatchSettings, BatchWindowType, Step};
use hark_store::{BatchClosed, BatchJoin, BatchJoined, ClaimedJob, StoreError};
use serde_json::json;

use super::skip;
use super::timing::dynamic_end;
use crate::advance::{step_event, Flow};
use crate::context::RunContext;
use crate::Engine;

impl Engine {
    pub(crate) async fn batch_step(
        &self,
        job: &ClaimedJob,
        ctx: &mut RunContext,
        step: &Step,
        s: &BatchSettings,
        pc: usize,
        now: i64,
    ) -> Result<Flow, StoreError> {
        let suffix = match &s.batch_key {
            Some(source) => match self.render_key(ctx, source, now).await {
                Some(key) => key,
                None => {
                    return Ok(skip(
                        ctx,
                        step,
                        "invalid_batch_key",
                        json!(format!("`{source}` resolved to nothing")),
                        now,
                    ))
                }
            },
            None => String::new(),
        };
        let closes_at = match (&s.until_field_path, s.window) {
            (Some(path), offset) => dynamic_end(ctx, path, offset, now),
            (None, Some(d)) => d
                .add_to(now)
                .ok_or_else(|| "the window overflows".to_string()),
            (None, None) => Err("no batch window is configured".into()),
        };
        let closes_at = match closes_at {
            Ok(at) if at > now => at,
            Ok(at) => {
                return Ok(skip(
                    ctx,
                    step,
                    "invalid_batch_window",
                    json!({"closes_at": hark_core::time::rfc3339(at), "error": "the window ends in the past"}),
                    now,
                ))
            }
            Err(why) => return Ok(skip(ctx, step, "invalid_batch_window", json!(why), now)),
        };
        let leading = hark_core::batch::summarize(
            &[hark_core::batch::Activity {
                run_id: &ctx.run.id,
                actor: ctx.run.actor.as_deref(),
                data: &ctx.data,
                inserted_at: now,
            }],
            1,
            false,
        )
        .state;
        let run = &ctx.run;
        // Latest mode shares one batch across versions (keyed by step); pinned mode keys
        // by version. Batches never mix recipients or tenants.
        let scope = if s.version_latest {
            format!("step:{}", step.step_ref)
        } else {
            format!("version:{}:step:{}", run.workflow_version, step.step_ref)
        };
        let batch_key = format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            run.workflow_key,
            scope,
            run.recipient_id,
            run.tenant.as_deref().unwrap_or_default(),
            suffix
        );
        let join = BatchJoin {
            run_id: run.id.clone(),
            environment_id: run.environment_id.clone(),
            batch_key,
            workflow_key: run.workflow_key.clone(),
            step_ref: step.step_ref.clone(),
            settings: json!({
                "step_ref": step.step_ref,
                "render_limit": s.render_limit,
                "order_desc": s.order_desc,
                "version_latest": s.version_latest,
            }),
            closes_at,
            slide_to: (s.window_type == BatchWindowType::Sliding).then_some(closes_at),
            extension_limit: s.extension_limit,
            items_max: s.items_max_limit,
            flush_leading: s.flush_leading,
            flush_state: leading.clone(),
            actor: run.actor.clone(),
            data: ctx.data.clone(),
            next_cursor: pc as i64 + 1,
            events: vec![step_event(
                "batch_entered",
                true,
                step,
                json!({"batch_key": suffix, "window_closes_at": hark_core::time::rfc3339(closes_at)}),
                now,
            )],
            now,
        };
        let joined = self.inner.store.join_batch(job, &join).await?;
        if joined.is_some() {
            // The batch's close job is due when its window ends, at the latest.
            self.note_timer(join.closes_at);
        }
        Ok(match joined {
            Some(BatchJoined::Opened { flushed: true, .. }) => {
                ctx.set_batch(self, leading).await?;
                Flow::Continue
            }
            Some(_) | None => Flow::Done,
        })
    }

    /// A due `close_batch` job. The close and the hand-over to the continuing run are one
    /// transaction, so a crash at the closing instant repeats it or finds it done.
    pub(crate) async fn close_batch(&self, job: &ClaimedJob) -> Result<(), StoreError> {
        let now = self.inner.clock.now_ms();
        match self.inner.store.close_batch(job, now).await? {
            Some(BatchClosed::Closed { .. }) => self.wake(),
            Some(BatchClosed::Rescheduled(at)) => self.note_timer(at),
            _ => {}
        }
        Ok(())
    }
}
