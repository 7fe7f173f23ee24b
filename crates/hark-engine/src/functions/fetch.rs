//! Fetch steps: a templated HTTP request whose JSON answer is merged into the run's data.

use std::time::Duration;

use hark_channels::webhook::{FetchResult, WebhookRequest};
use hark_core::workflow::{ChannelStep, ChannelType, FetchSettings, Step};
use serde_json::{json, Map, Value};

use super::{fail, shallow_merge, state_without_resume};
use crate::advance::{step_event, Flow};
use crate::context::RunContext;
use crate::render::{content_pairs, render_step};
use crate::Engine;

/// Knock waits 15 seconds for a fetch and retries 5xx and timeouts twice, after 30 and
/// 60 seconds.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
const RETRY_DELAYS_MS: [i64; 2] = [30_000, 60_000];

/// `response` placed at a dotted `path` inside `data`, creating objects on the way.
fn place_at_path(data: &Value, path: &str, response: Value) -> Value {
    let mut root = data.as_object().cloned().unwrap_or_default();
    let keys: Vec<&str> = path.split('.').filter(|k| !k.is_empty()).collect();
    fn insert(map: &mut Map<String, Value>, keys: &[&str], value: Value) {
        match keys {
            [] => {}
            [last] => {
                map.insert((*last).to_string(), value);
            }
            [first, rest @ ..] => {
                let entry = map
                    .entry((*first).to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(inner) = entry {
                    insert(inner, rest, value);
                }
            }
        }
    }
    insert(&mut root, &keys, response);
    Value::Object(root)
}

impl Engine {
    pub(crate) async fn fetch_step(
        &self,
        ctx: &RunContext,
        step: &Step,
        s: &FetchSettings,
        pc: usize,
        now: i64,
    ) -> Flow {
        let previous = match ctx.state.get("resume") {
            Some(r) if r.get("step_ref").and_then(Value::as_str) == Some(&step.step_ref) => {
                r.get("attempt").and_then(Value::as_i64).unwrap_or(0)
            }
            _ => 0,
        };
        let attempt = previous + 1;
        let template = ChannelStep {
            step_ref: step.step_ref.clone(),
            channel_key: String::new(),
            template: s.template.clone(),
        };
        let variables = ctx.variables(now);
        let renderer = self.inner.renderer.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            render_step(
                &renderer,
                &template,
                ChannelType::Http,
                &variables,
                None,
                None,
                None,
            )
        })
        .await;
        let content = match rendered {
            Ok(Ok(content)) => content,
            Ok(Err(e)) => return fail(ctx, step, Vec::new(), &e.to_string(), now),
            Err(e) => {
                return fail(
                    ctx,
                    step,
                    Vec::new(),
                    &format!("renderer crashed: {e}"),
                    now,
                )
            }
        };
        let text = |field: &str| {
            content
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let request = WebhookRequest {
            method: text("method").unwrap_or_else(|| "GET".into()),
            url: text("url").unwrap_or_default(),
            headers: content_pairs(&content, "headers"),
            query_params: content_pairs(&content, "query_params"),
            body: text("body").filter(|b| !b.is_empty()),
        };
        let idempotency_key = format!("{}:{}", ctx.run.id, step.step_ref);
        let outcome = self
            .inner
            .channels
            .webhook
            .fetch(&request, &idempotency_key, FETCH_TIMEOUT)
            .await;
        let log = |ok: bool, result: &str| {
            let mut ev = step_event(
                "fetch_request",
                ok,
                step,
                json!({
                    "request": outcome.request,
                    "response": outcome.response,
                    "duration_ms": outcome.duration_ms,
                    "result": result,
                }),
                now,
            );
            ev.attempt = attempt;
            ev
        };
        match &outcome.result {
            FetchResult::Data(body) => {
                let mut commit = ctx.commit(now);
                commit.events.push(log(true, "ok"));
                let merged = match (body, &s.response_path) {
                    (None, _) => None,
                    (Some(map), None) => Some(shallow_merge(&ctx.data, map.clone())),
                    (Some(map), Some(path)) => {
                        Some(place_at_path(&ctx.data, path, Value::Object(map.clone())))
                    }
                };
                commit.data = merged;
                if previous > 0 {
                    commit.state = Some(state_without_resume(&ctx.state));
                }
                Flow::Next(commit)
            }
            FetchResult::Retryable(reason) if (attempt as usize) <= RETRY_DELAYS_MS.len() => {
                let delay = RETRY_DELAYS_MS[attempt as usize - 1];
                let mut state = ctx.state.clone();
                if let Value::Object(map) = &mut state {
                    map.insert(
                        "resume".into(),
                        json!({"step_ref": step.step_ref, "attempt": attempt}),
                    );
                }
                let mut commit = ctx.commit(now);
                commit
                    .events
                    .push(log(false, &format!("retrying: {reason}")));
                commit.state = Some(state);
                commit.resume_at = Some(now + delay);
                commit.next_cursor = pc as i64;
                Flow::Stop(commit)
            }
            FetchResult::Retryable(reason) | FetchResult::Fatal(reason) => {
                let ev = log(false, reason);
                fail(ctx, step, vec![ev], reason, now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_land_at_their_path() {
        let data = json!({"foo": {"keep": 1}, "x": 2});
        assert_eq!(
            place_at_path(&data, "foo.bar", json!({"a": 1})),
            json!({"foo": {"keep": 1, "bar": {"a": 1}}, "x": 2})
        );
        assert_eq!(
            place_at_path(&data, "x.y", json!(true)),
            json!({"foo": {"keep": 1}, "x": {"y": true}})
        );
    }
}
