//! Update-data and trigger-workflow steps.

use hark_core::new_id;
use hark_core::recipient::RecipientRequest;
use hark_core::workflow::{Step, TriggerWorkflowSettings, UpdateDataSettings};
use hark_store::{StoreError, TriggerWrite};
use serde_json::{json, Map, Value};

use super::{fail, shallow_merge, skip};
use crate::advance::{step_event, Flow};
use crate::context::RunContext;
use crate::Engine;

/// A rendered value as data: JSON when it parses as JSON, otherwise the text.
fn typed(rendered: String) -> Value {
    match serde_json::from_str::<Value>(rendered.trim()) {
        Ok(v) if !rendered.trim().is_empty() => v,
        _ => Value::String(rendered),
    }
}

/// Recipients as a trigger-workflow step renders them: a JSON list of ids or recipient
/// objects, one id, or a comma-separated list of ids.
fn recipient_ids(rendered: &str) -> Result<Vec<String>, String> {
    let text = rendered.trim();
    let ids: Vec<String> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                RecipientRequest::parse(item, &format!("recipients[{i}]"))
                    .map(|r| r.id().to_string())
                    .map_err(|e| format!("{}: {}", e.field, e.message))
            })
            .collect::<Result<_, _>>()?,
        Ok(Value::String(id)) => vec![id],
        Ok(Value::Number(n)) => vec![n.to_string()],
        Ok(item @ Value::Object(_)) => vec![RecipientRequest::parse(&item, "recipients")
            .map(|r| r.id().to_string())
            .map_err(|e| format!("{}: {}", e.field, e.message))?],
        _ => text
            .split(',')
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .collect(),
    };
    if ids.is_empty() {
        return Err("the recipients rendered to nothing".into());
    }
    if ids.len() > 1000 {
        return Err("at most 1000 recipients may be triggered".into());
    }
    Ok(ids)
}

impl Engine {
    pub(crate) async fn update_data_step(
        &self,
        ctx: &RunContext,
        step: &Step,
        s: &UpdateDataSettings,
        now: i64,
    ) -> Flow {
        let patch: Result<Map<String, Value>, String> = match &s.data {
            Value::String(source) => {
                match ctx
                    .render_strings(
                        &self.inner.renderer,
                        vec![("data".into(), source.clone())],
                        now,
                    )
                    .await
                {
                    Ok(mut out) => {
                        match serde_json::from_str::<Value>(&out.pop().unwrap_or_default()) {
                            Ok(Value::Object(map)) => Ok(map),
                            Ok(_) | Err(_) => Err("`data` must render to a JSON object".into()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Value::Object(pairs) => {
                let sources: Vec<(String, String)> = pairs
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect();
                match ctx
                    .render_strings(&self.inner.renderer, sources.clone(), now)
                    .await
                {
                    Ok(rendered) => {
                        let mut map = pairs.clone();
                        for ((key, _), value) in sources.into_iter().zip(rendered) {
                            map.insert(key, typed(value));
                        }
                        Ok(map)
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => Err("`data` must be an object or a template".into()),
        };
        let patch = match patch {
            Ok(p) => p,
            Err(error) => return fail(ctx, step, Vec::new(), &error, now),
        };
        let mut commit = ctx.commit(now);
        commit.events.push(step_event(
            "data_updated",
            true,
            step,
            json!({"merged": patch}),
            now,
        ));
        commit.data = Some(shallow_merge(&ctx.data, patch));
        Flow::Next(commit)
    }

    pub(crate) async fn trigger_workflow_step(
        &self,
        ctx: &RunContext,
        step: &Step,
        s: &TriggerWorkflowSettings,
        now: i64,
    ) -> Result<Flow, StoreError> {
        let field = |name: &str, value: &Option<String>, default: &str| {
            (
                name.to_string(),
                value.clone().unwrap_or_else(|| default.to_string()),
            )
        };
        let sources = vec![
            ("workflow_key".to_string(), s.workflow_key.clone()),
            field("recipients", &s.recipients, "{{ recipient.id }}"),
            field("actor", &s.actor, "{{ actor.id }}"),
            field("tenant", &s.tenant, "{{ tenant.id }}"),
            field("data", &s.data, "{{ data | json }}"),
            field(
                "cancellation_key",
                &s.cancellation_key,
                "{{ workflow.cancellation_key }}",
            ),
        ];
        let rendered = match ctx.render_strings(&self.inner.renderer, sources, now).await {
            Ok(r) => r,
            Err(e) => return Ok(fail(ctx, step, Vec::new(), &e.to_string(), now)),
        };
        let [key, recipients, actor, tenant, data, cancellation_key] = rendered.as_slice() else {
            return Ok(fail(ctx, step, Vec::new(), "rendering lost a field", now));
        };
        let recipients = match recipient_ids(recipients) {
            Ok(ids) => ids,
            Err(e) => return Ok(fail(ctx, step, Vec::new(), &e, now)),
        };
        let data = match serde_json::from_str::<Value>(data.trim()) {
            Ok(d @ Value::Object(_)) => d,
            _ if data.trim().is_empty() => json!({}),
            _ => {
                return Ok(fail(
                    ctx,
                    step,
                    Vec::new(),
                    "`data` must render to a JSON object",
                    now,
                ))
            }
        };
        let key = key.trim().to_string();
        let env = &ctx.run.environment_id;
        let Some(target) = self.inner.store.committed_workflow(env, &key).await? else {
            return Ok(skip(
                ctx,
                step,
                "workflow_missing",
                json!({"workflow_key": key}),
                now,
            ));
        };
        if !target.active {
            return Ok(skip(
                ctx,
                step,
                "workflow_inactive",
                json!({"workflow_key": key}),
                now,
            ));
        }
        let frequency = match self.pinned_workflow(env, &key, target.version).await? {
            Ok(def) => def.trigger_frequency,
            Err(errors) => {
                return Ok(skip(
                    ctx,
                    step,
                    "workflow_invalid",
                    json!({"workflow_key": key, "errors": errors}),
                    now,
                ))
            }
        };
        let nonempty = |s: &String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let workflow_run_id = new_id();
        let mut commit = ctx.commit(now);
        commit.events.push(step_event(
            "workflow_triggered",
            true,
            step,
            json!({"workflow_key": key, "workflow_run_id": workflow_run_id, "recipients": recipients}),
            now,
        ));
        commit.triggers.push(TriggerWrite {
            environment_id: env.clone(),
            workflow_key: key,
            workflow_version: target.version,
            workflow_run_id,
            actor: nonempty(actor),
            tenant: nonempty(tenant),
            data,
            cancellation_key: nonempty(cancellation_key),
            recipients,
            inline_users: Vec::new(),
            inline_objects: Vec::new(),
            inline_documents: Vec::new(),
            fan_outs: Vec::new(),
            idempotency: None,
            state: json!({}),
            frequency,
            lease: None,
            now,
        });
        Ok(Flow::Next(commit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_render_from_lists_ids_and_objects() {
        assert_eq!(recipient_ids(" u1 ").ok(), Some(vec!["u1".to_string()]));
        assert_eq!(
            recipient_ids("u1, u2").ok(),
            Some(vec!["u1".to_string(), "u2".to_string()])
        );
        assert_eq!(
            recipient_ids(r#"["a", {"id": "b", "email": "b@x.io"}]"#).ok(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert!(recipient_ids("  ").is_err());
        assert_eq!(typed("3".into()), json!(3));
        assert_eq!(typed("Jane Doe".into()), json!("Jane Doe"));
    }
}
