//! Function steps: the steps that shape a run instead of sending a message.

mod batch;
mod data;
mod fetch;
mod timing;
mod wait;

use hark_core::conditions::resolve_path;
use hark_core::workflow::Step;
use serde_json::{json, Map, Value};

use crate::advance::{step_event, Flow};
use crate::context::RunContext;
use crate::Engine;

/// A step that could not run as configured is skipped, and the run log says why.
pub(crate) fn skip(ctx: &RunContext, step: &Step, reason: &str, detail: Value, now: i64) -> Flow {
    let mut commit = ctx.commit(now);
    commit.error = true;
    commit.events.push(step_event(
        "step_skipped",
        false,
        step,
        json!({"reason": reason, "detail": detail}),
        now,
    ));
    Flow::Next(commit)
}

/// A step that failed halts the run, as Knock does for fetch and data errors.
pub(crate) fn fail(
    ctx: &RunContext,
    step: &Step,
    events: Vec<hark_store::RunEvent>,
    error: &str,
    now: i64,
) -> Flow {
    let mut events = events;
    events.push(step_event(
        "step_failed",
        false,
        step,
        json!({"error": error}),
        now,
    ));
    Flow::Stop(ctx.finish(now, events, true))
}

/// The run state without a pending resume marker for `step_ref`.
pub(crate) fn state_without_resume(state: &Value) -> Value {
    let mut state = state.clone();
    if let Value::Object(map) = &mut state {
        map.remove("resume");
    }
    state
}

/// `data` shallow-merged with `patch`: top-level keys replaced, nested values not merged.
pub(crate) fn shallow_merge(data: &Value, patch: Map<String, Value>) -> Value {
    let mut merged = data.as_object().cloned().unwrap_or_default();
    for (k, v) in patch {
        merged.insert(k, v);
    }
    Value::Object(merged)
}

impl Engine {
    /// A batch or throttle key: Liquid when it has markup, otherwise a path into `data`.
    /// `None` when it renders empty or the data has no such value.
    pub(crate) async fn render_key(
        &self,
        ctx: &RunContext,
        source: &str,
        now: i64,
    ) -> Option<String> {
        if source.contains("{{") || source.contains("{%") {
            let mut rendered = ctx
                .render_strings(
                    &self.inner.renderer,
                    vec![("key".into(), source.to_string())],
                    now,
                )
                .await
                .ok()?;
            rendered.pop().filter(|k| !k.trim().is_empty())
        } else {
            let path = source.strip_prefix("data.").unwrap_or(source);
            match resolve_path(&ctx.data, path)? {
                Value::Null => None,
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            }
        }
    }
}
