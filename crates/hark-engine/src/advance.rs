//! Advancing a recipient run: walk the pinned workflow's steps from the run's cursor,
//! committing each step's outcome (and its message) atomically with the cursor.

use hark_core::new_id;
use std::sync::Arc;

use hark_core::recipient::FieldError;
use hark_core::workflow::{ChannelType, Step, WorkflowDefinition};
use hark_store::{
    ClaimedJob, NewMessage, RecipientRun, RunEvent, RunStatus, StepCommit, StoreError,
};
use serde_json::{json, Map, Value};

use crate::registry::Sender;
use crate::render::{render_step, template_variables};
use crate::Engine;

/// Parsed workflow versions kept at most; the cache starts over when full.
const MAX_CACHED_WORKFLOWS: usize = 1024;

fn event(name: &str, ok: bool, step: Option<&Step>, data: Value, now: i64) -> RunEvent {
    RunEvent {
        id: new_id(),
        event: name.to_string(),
        status: if ok { "ok" } else { "error" }.to_string(),
        step_ref: step.map(|s| s.step_ref().to_string()),
        step_type: step.map(|s| s.step_type().to_string()),
        attempt: 1,
        data,
        inserted_at: now,
    }
}

/// A user as templates and recipient snapshots see it: properties flattened with `id`.
fn user_value(id: &str, properties: Option<&Map<String, Value>>) -> Value {
    let mut map = properties.cloned().unwrap_or_default();
    map.insert("id".into(), Value::String(id.to_string()));
    map.insert("__typename".into(), Value::String("User".into()));
    Value::Object(map)
}

impl Engine {
    /// The parsed workflow version a run is pinned to. Versions never change once
    /// committed, so each is loaded and parsed once per process.
    async fn pinned_workflow(
        &self,
        run: &RecipientRun,
    ) -> Result<Result<Arc<WorkflowDefinition>, Vec<FieldError>>, StoreError> {
        let key = (
            run.environment_id.clone(),
            run.workflow_key.clone(),
            run.workflow_version,
        );
        if let Some(found) = self
            .inner
            .workflows
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).cloned())
        {
            return Ok(Ok(found));
        }
        let definition = self
            .inner
            .store
            .workflow_version(&run.environment_id, &run.workflow_key, run.workflow_version)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                operation: "load pinned workflow",
                detail: format!(
                    "workflow {} version {} is missing",
                    run.workflow_key, run.workflow_version
                ),
            })?;
        let channels = self.inner.channels.clone();
        match WorkflowDefinition::parse(&definition, &|k| channels.type_of(k)) {
            Ok(parsed) => {
                let parsed = Arc::new(parsed);
                if let Ok(mut cache) = self.inner.workflows.lock() {
                    if cache.len() >= MAX_CACHED_WORKFLOWS {
                        cache.clear();
                    }
                    cache.insert(key, parsed.clone());
                }
                Ok(Ok(parsed))
            }
            Err(errors) => Ok(Err(errors)),
        }
    }

    pub(crate) async fn advance_run(&self, job: &ClaimedJob) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let Some(run) = store.load_run_for_job(&job.ref_id).await? else {
            store.complete_job(job).await?;
            return Ok(());
        };
        if matches!(run.status, RunStatus::Completed | RunStatus::Cancelled) {
            store.complete_job(job).await?;
            return Ok(());
        }
        let now = self.inner.clock.now_ms();
        let workflow = match self.pinned_workflow(&run).await? {
            Ok(w) => w,
            Err(errors) => {
                // The version was valid when committed; a channel removed from the config
                // since then makes it unrunnable. Record why and finish the run.
                let commit = StepCommit {
                    run_id: run.id.clone(),
                    next_cursor: run.step_cursor,
                    message: None,
                    enqueue_delivery: false,
                    events: vec![event(
                        "workflow_run_failed",
                        false,
                        None,
                        json!({"errors": errors}),
                        now,
                    )],
                    finished: Some(RunStatus::Completed),
                    error: true,
                    now,
                };
                self.inner.steps.submit((job.clone(), commit)).await?;
                return Ok(());
            }
        };

        let recipient_user = store
            .get_user(&run.environment_id, &run.recipient_id)
            .await?;
        let recipient = user_value(
            &run.recipient_id,
            recipient_user.as_ref().map(|u| &u.properties),
        );
        let actor = match &run.actor {
            Some(actor_id) => {
                let user = store.get_user(&run.environment_id, actor_id).await?;
                user_value(actor_id, user.as_ref().map(|u| &u.properties))
            }
            None => Value::Null,
        };

        let total = workflow.steps.len() as i64;
        if run.step_cursor >= total {
            let commit = StepCommit {
                run_id: run.id.clone(),
                next_cursor: run.step_cursor,
                message: None,
                enqueue_delivery: false,
                events: vec![event("workflow_run_completed", true, None, json!({}), now)],
                finished: Some(RunStatus::Completed),
                error: false,
                now,
            };
            self.inner.steps.submit((job.clone(), commit)).await?;
            return Ok(());
        }

        for index in run.step_cursor..total {
            let Some(step) = workflow.steps.get(index as usize) else {
                break;
            };
            let now = self.inner.clock.now_ms();
            let mut commit = match step {
                Step::Channel(_) => {
                    self.channel_step(&run, step, &workflow.categories, &recipient, &actor, now)
                        .await
                }
            };
            commit.next_cursor = index + 1;
            if index + 1 == total {
                commit.finished = Some(RunStatus::Completed);
                commit
                    .events
                    .push(event("workflow_run_completed", true, None, json!({}), now));
            }
            if !self.inner.steps.submit((job.clone(), commit)).await? {
                tracing::info!(job = %job.id, "lease lost; another worker owns this run now");
                return Ok(());
            }
        }
        Ok(())
    }

    /// Decides and renders one channel step. Never fails: problems become run events.
    async fn channel_step(
        &self,
        run: &RecipientRun,
        step: &Step,
        categories: &[String],
        recipient: &Value,
        actor: &Value,
        now: i64,
    ) -> StepCommit {
        let Step::Channel(channel_step) = step;
        let mut commit = StepCommit {
            run_id: run.id.clone(),
            next_cursor: 0,
            message: None,
            enqueue_delivery: false,
            events: Vec::new(),
            finished: None,
            error: false,
            now,
        };
        let Some(channel) = self
            .inner
            .channels
            .by_key(&channel_step.channel_key)
            .cloned()
        else {
            commit.events.push(event(
                "step_skipped",
                false,
                Some(step),
                json!({"reason": "channel_not_configured", "channel_key": channel_step.channel_key}),
                now,
            ));
            commit.error = true;
            return commit;
        };
        let email = recipient
            .get("email")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty());
        if channel.channel_type == ChannelType::Email && email.is_none() {
            commit.events.push(event(
                "step_skipped",
                true,
                Some(step),
                json!({"reason": "recipient_missing_email", "channel_type": "email"}),
                now,
            ));
            return commit;
        }
        let from_address = match &channel.sender {
            Sender::Smtp { from_address, .. } => Some(from_address.clone()),
            _ => None,
        };
        let variables = template_variables(run, recipient, actor, categories, now);
        let renderer = self.inner.renderer.clone();
        let step_owned = channel_step.clone();
        let channel_type = channel.channel_type;
        let email_owned = email.map(str::to_string);
        // Liquid is synchronous and user-controlled: keep it off the async workers.
        let rendered = tokio::task::spawn_blocking(move || {
            render_step(
                &renderer,
                &step_owned,
                channel_type,
                &variables,
                email_owned.as_deref(),
                from_address.as_deref(),
            )
        })
        .await;
        let content = match rendered {
            Ok(Ok(content)) => content,
            Ok(Err(e)) => {
                commit.events.push(event(
                    "message_render_failed",
                    false,
                    Some(step),
                    json!({"error": e.to_string()}),
                    now,
                ));
                commit.error = true;
                return commit;
            }
            Err(e) => {
                commit.events.push(event(
                    "message_render_failed",
                    false,
                    Some(step),
                    json!({"error": format!("renderer crashed: {e}")}),
                    now,
                ));
                commit.error = true;
                return commit;
            }
        };
        let in_app = channel.channel_type == ChannelType::InAppFeed;
        let message_id = new_id();
        commit.message = Some(NewMessage {
            id: message_id.clone(),
            environment_id: run.environment_id.clone(),
            recipient_run_id: run.id.clone(),
            workflow_run_id: run.workflow_run_id.clone(),
            step_ref: channel_step.step_ref.clone(),
            workflow_key: run.workflow_key.clone(),
            workflow_version: run.workflow_version,
            categories: categories.to_vec(),
            channel_key: channel.key.clone(),
            channel_type: channel.channel_type.as_str().to_string(),
            recipient_id: run.recipient_id.clone(),
            actors: run.actor.iter().cloned().collect(),
            tenant: run.tenant.clone(),
            // Knock: in-app messages are delivered the moment they exist.
            status: if in_app { "delivered" } else { "queued" }.to_string(),
            content,
            data: run.data.clone(),
            now,
        });
        commit.enqueue_delivery = !in_app;
        commit.events.push(event(
            "message_enqueued",
            true,
            Some(step),
            json!({"channel_type": channel.channel_type.as_str(), "channel_key": channel.key, "message_id": message_id}),
            now,
        ));
        commit
    }
}
