//! Delay and throttle steps.

use hark_core::conditions::{parse_timestamp, resolve_path};
use hark_core::schedule::{recipient_time_zone, DynamicWindow};
use hark_core::workflow::{DelaySettings, Step, ThrottleSettings};
use hark_store::{ClaimedJob, StoreError, ThrottleHit};
use serde_json::{json, Value};

use super::skip;
use crate::advance::{step_event, Flow};
use crate::context::RunContext;
use crate::Engine;

const DAY_MS: i64 = 86_400_000;
/// Knock delays a run for at most a year and throttles for at most 31 days.
const MAX_DELAY_MS: i64 = 365 * DAY_MS;
const MAX_THROTTLE_MS: i64 = 31 * DAY_MS;

/// Where a dynamic window ends: `path` resolves to a timestamp, duration or window rule;
/// with `offset` the value must be a timestamp and the window ends that far from it.
pub(crate) fn dynamic_end(
    ctx: &RunContext,
    path: &str,
    offset: Option<hark_core::schedule::Duration>,
    now: i64,
) -> Result<i64, String> {
    let variables = ctx.variables(now);
    let Some(value) = resolve_path(&variables, path).filter(|v| !v.is_null()) else {
        return Err(format!("`{path}` is missing"));
    };
    let end = match offset {
        Some(offset) => parse_timestamp(&value)
            .and_then(|at| offset.add_to(at))
            .ok_or_else(|| format!("`{path}` is not a timestamp"))?,
        None => DynamicWindow::from_value(&value)
            .and_then(|w| w.resolve(now, &recipient_time_zone(&ctx.recipient)))
            .ok_or_else(|| format!("`{path}` is not a timestamp, a duration or a window rule"))?,
    };
    Ok(end)
}

impl Engine {
    pub(crate) fn delay_step(
        &self,
        ctx: &RunContext,
        step: &Step,
        s: &DelaySettings,
        pc: usize,
        now: i64,
    ) -> Flow {
        if ctx
            .state
            .pointer("/settings/skip_delay")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return skip_ok(ctx, step, "skip_delay", now);
        }
        let until = match (&s.delay_until_field_path, s.delay_for) {
            (Some(path), offset) => dynamic_end(ctx, path, offset, now),
            (None, Some(d)) => d
                .add_to(now)
                .ok_or_else(|| "the delay overflows".to_string()),
            (None, None) => Err("no delay is configured".into()),
        };
        let until = match until {
            Ok(at) if at <= now => {
                return skip(
                    ctx,
                    step,
                    "delay_in_the_past",
                    json!({"until": hark_core::time::rfc3339(at)}),
                    now,
                )
            }
            Ok(at) if at - now > MAX_DELAY_MS => {
                return skip(
                    ctx,
                    step,
                    "delay_too_long",
                    json!({"until": hark_core::time::rfc3339(at), "max_days": 365}),
                    now,
                )
            }
            Ok(at) => at,
            Err(why) => return skip(ctx, step, "invalid_delay", json!(why), now),
        };
        let mut commit = ctx.commit(now);
        commit.resume_at = Some(until);
        commit.next_cursor = pc as i64 + 1;
        commit.events.push(step_event(
            "delay_started",
            true,
            step,
            json!({"until": hark_core::time::rfc3339(until)}),
            now,
        ));
        Flow::Stop(commit)
    }

    pub(crate) async fn throttle_step(
        &self,
        job: &ClaimedJob,
        ctx: &RunContext,
        step: &Step,
        s: &ThrottleSettings,
        pc: usize,
        now: i64,
    ) -> Result<Flow, StoreError> {
        let suffix = match &s.throttle_key {
            Some(source) => match self.render_key(ctx, source, now).await {
                Some(key) if key.len() < 64 => key,
                Some(_) => {
                    return Ok(skip(
                        ctx,
                        step,
                        "invalid_throttle_key",
                        json!("the key must be shorter than 64 characters"),
                        now,
                    ))
                }
                None => {
                    return Ok(skip(
                        ctx,
                        step,
                        "invalid_throttle_key",
                        json!(format!("`{source}` resolved to nothing")),
                        now,
                    ))
                }
            },
            None => String::new(),
        };
        let window_end = match (&s.window_field_path, s.window) {
            (Some(path), _) => dynamic_end(ctx, path, None, now),
            (None, Some(d)) => d
                .add_to(now)
                .ok_or_else(|| "the window overflows".to_string()),
            (None, None) => Err("no throttle window is configured".into()),
        };
        let window_end = match window_end {
            Ok(end) if end > now && end - now <= MAX_THROTTLE_MS => end,
            Ok(end) => {
                return Ok(skip(
                    ctx,
                    step,
                    "invalid_throttle_window",
                    json!({"window_end": hark_core::time::rfc3339(end), "max_days": 31}),
                    now,
                ))
            }
            Err(why) => return Ok(skip(ctx, step, "invalid_throttle_window", json!(why), now)),
        };
        let run = &ctx.run;
        let hit = ThrottleHit {
            run_id: run.id.clone(),
            environment_id: run.environment_id.clone(),
            throttle_key: format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{}",
                run.workflow_key, step.step_ref, run.recipient_id, suffix
            ),
            limit: s.limit,
            window_end,
            next_cursor: pc as i64 + 1,
            events_if_passed: vec![step_event(
                "throttle_passed",
                true,
                step,
                json!({"key": suffix, "limit": s.limit}),
                now,
            )],
            events_if_throttled: vec![
                step_event(
                    "throttled",
                    true,
                    step,
                    json!({"key": suffix, "limit": s.limit}),
                    now,
                ),
                crate::advance::event(
                    "workflow_run_completed",
                    true,
                    None,
                    json!({"reason": "throttled"}),
                    now,
                ),
            ],
            now,
        };
        Ok(match self.inner.store.hit_throttle(job, &hit).await? {
            Some(true) => Flow::Continue,
            Some(false) | None => Flow::Done,
        })
    }
}

/// A skip that is what the caller asked for (not an error).
fn skip_ok(ctx: &RunContext, step: &Step, reason: &str, now: i64) -> Flow {
    let mut commit = ctx.commit(now);
    commit.events.push(step_event(
        "step_skipped",
        true,
        step,
        json!({"reason": reason}),
        now,
    ));
    Flow::Next(commit)
}
