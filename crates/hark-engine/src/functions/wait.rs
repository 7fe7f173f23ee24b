//! Wait-for-event steps: the run pauses until a matching message or workflow event of its
//! recipient arrives, or the wait expires.

use hark_core::conditions::JsonScope;
use hark_core::new_id;
use hark_core::time::rfc3339;
use hark_core::workflow::{Step, WaitEvent, WaitSettings};
use hark_store::{NewWait, RunStatus, StoreError, WaitCandidate};
use serde_json::{json, Value};

use super::state_without_resume;
use crate::advance::{event, step_event, Flow};
use crate::context::RunContext;
use crate::Engine;

/// Knock waits at most 30 days.
const MAX_WAIT_MS: i64 = 30 * 86_400_000;

impl Engine {
    pub(crate) async fn wait_step(
        &self,
        ctx: &RunContext,
        step: &Step,
        s: &WaitSettings,
        pc: usize,
        now: i64,
    ) -> Result<Flow, StoreError> {
        let resume = ctx
            .state
            .get("resume")
            .filter(|r| r.get("step_ref").and_then(Value::as_str) == Some(&step.step_ref));
        let Some(resume) = resume else {
            return Ok(self.start_wait(ctx, step, s, pc, now));
        };
        let wait_id = resume
            .get("wait_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let expires_at = resume
            .get("expires_at")
            .and_then(Value::as_i64)
            .unwrap_or(now);
        let candidates = self.inner.store.wait_candidates(&wait_id).await?;
        let mut evaluations = Vec::new();
        let mut matched = None;
        for candidate in &candidates {
            let payload = self.event_payload(ctx, s, candidate).await?;
            let passed = match &s.match_conditions {
                None => true,
                Some(group) => {
                    let mut root = ctx.condition_root(self, group, now).await?;
                    if let Value::Object(map) = &mut root {
                        map.insert("event".into(), payload.clone());
                    }
                    let evaluation = group.evaluate(
                        &JsonScope {
                            root: &root,
                            audiences: ctx.audiences_for(self, group).await?,
                        },
                        now,
                    );
                    let passed = evaluation.passed;
                    evaluations.push(json!({"event": payload, "conditions": evaluation}));
                    passed
                }
            };
            if passed {
                matched = Some(payload);
                break;
            }
        }
        let mut commit = ctx.commit(now);
        if !evaluations.is_empty() {
            commit.events.push(step_event(
                "wait_conditions_evaluated",
                true,
                step,
                json!({"evaluations": evaluations}),
                now,
            ));
        }
        let (outcome, signal, continues) = match matched {
            Some(payload) => ("wait_matched", payload, s.continue_on_match),
            None if now >= expires_at => ("wait_expired", json!({}), s.continue_on_timeout),
            None => {
                // Nothing matched yet: drop what was evaluated and sleep until expiry.
                commit.drop_wait_events = candidates.iter().map(|c| c.id.clone()).collect();
                commit.resume_at = Some(expires_at);
                commit.next_cursor = pc as i64;
                return Ok(Flow::Stop(commit));
            }
        };
        let matched = outcome == "wait_matched";
        commit.close_wait = Some((wait_id, if matched { "matched" } else { "expired" }.into()));
        let mut state = state_without_resume(&ctx.state);
        if let Value::Object(map) = &mut state {
            let refs = map.entry("refs").or_insert_with(|| json!({}));
            if let Value::Object(refs) = refs {
                refs.insert(
                    step.step_ref.clone(),
                    json!({"matched": matched, "signal_variables": signal}),
                );
            }
        }
        commit.state = Some(state);
        commit.events.push(step_event(
            outcome,
            true,
            step,
            json!({"continues": continues, "event": signal}),
            now,
        ));
        if continues {
            return Ok(Flow::Next(commit));
        }
        commit.finished = Some(RunStatus::Cancelled);
        commit.next_cursor = pc as i64;
        commit.events.push(event(
            "workflow_run_halted",
            true,
            None,
            json!({"reason": outcome}),
            now,
        ));
        Ok(Flow::Stop(commit))
    }

    fn start_wait(
        &self,
        ctx: &RunContext,
        step: &Step,
        s: &WaitSettings,
        pc: usize,
        now: i64,
    ) -> Flow {
        let expires_at = s
            .expires_after
            .add_to(now)
            .unwrap_or(now)
            .clamp(now, now + MAX_WAIT_MS);
        let (event_type, event_key, source_key) = match &s.event {
            WaitEvent::Message {
                event_key,
                source_key,
            } => ("message", event_key, source_key),
            WaitEvent::Workflow {
                event_key,
                source_key,
            } => ("workflow", event_key, source_key),
        };
        let wait_id = new_id();
        let mut state = ctx.state.clone();
        if let Value::Object(map) = &mut state {
            map.insert(
                "resume".into(),
                json!({"step_ref": step.step_ref, "wait_id": wait_id, "expires_at": expires_at}),
            );
        }
        let mut commit = ctx.commit(now);
        commit.new_wait = Some(NewWait {
            id: wait_id,
            environment_id: ctx.run.environment_id.clone(),
            recipient_id: ctx.run.recipient_id.clone(),
            event_type: event_type.into(),
            event_key: event_key.clone(),
            source_key: source_key.clone(),
            expires_at,
        });
        commit.state = Some(state);
        commit.resume_at = Some(expires_at);
        commit.next_cursor = pc as i64;
        commit.events.push(step_event(
            "wait_started",
            true,
            step,
            json!({"event_type": event_type, "event_key": event_key, "source_key": source_key, "expires_at": rfc3339(expires_at)}),
            now,
        ));
        Flow::Stop(commit)
    }

    /// The awaited event as match conditions see it under `event.*`.
    async fn event_payload(
        &self,
        ctx: &RunContext,
        s: &WaitSettings,
        candidate: &WaitCandidate,
    ) -> Result<Value, StoreError> {
        let mut payload = candidate.payload.clone();
        if let Value::Object(map) = &mut payload {
            map.insert("recipient".into(), json!(ctx.run.recipient_id));
            map.insert("inserted_at".into(), json!(rfc3339(candidate.inserted_at)));
        }
        if let WaitEvent::Message { source_key, .. } = &s.event {
            let message_id = candidate
                .payload
                .get("message_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(m) = self.inner.store.load_message_for_job(message_id).await? {
                if let Value::Object(map) = &mut payload {
                    map.insert("step_ref".into(), json!(m.step_ref));
                    map.insert("channel_type".into(), json!(m.channel_type));
                    map.insert("channel_id".into(), json!(m.channel_key));
                    map.insert("tenant_id".into(), json!(m.tenant));
                    map.insert(
                        "source".into(),
                        json!({"type": "workflow", "key": source_key}),
                    );
                    map.insert("data".into(), m.data.clone());
                }
            }
        }
        Ok(payload)
    }
}
