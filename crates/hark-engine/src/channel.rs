//! Channel steps: render the step's template for its channel and create one message.

use hark_core::new_id;
use hark_core::workflow::{ChannelStep, ChannelType, Step};
use hark_store::{DocumentKind, NewMessage, Owner, StepCommit, StoreError};
use serde_json::{json, Value};

use crate::advance::step_event;
use crate::channel_data::{chat_connections, push_tokens};
use crate::context::RunContext;
use crate::layout::{layout_key, DEFAULT_LAYOUT_KEY};
use crate::registry::{Channel, Sender};
use crate::render::{render_step, StepRenderError};
use crate::tracking;
use crate::Engine;

impl Engine {
    /// Decides and renders one channel step. Never fails: problems become run events.
    pub(crate) async fn channel_step(
        &self,
        ctx: &RunContext,
        step: &Step,
        channel_step: &ChannelStep,
        now: i64,
    ) -> Result<StepCommit, StoreError> {
        let run = &ctx.run;
        let categories = &ctx.workflow.categories;
        let mut commit = ctx.commit(now);
        let Some(channel) = self
            .inner
            .channels
            .for_environment(&channel_step.channel_key, &run.environment_id)
            .cloned()
        else {
            commit.events.push(step_event(
                "step_skipped",
                false,
                step,
                json!({"reason": "channel_not_configured", "channel_key": channel_step.channel_key}),
                now,
            ));
            commit.error = true;
            return Ok(commit);
        };
        let decision = ctx
            .preference_decision(self, channel.channel_type.as_str(), &channel.id, now)
            .await?;
        if !decision.allowed {
            commit.events.push(step_event(
                "step_skipped",
                true,
                step,
                json!({"reason": "recipient_preferences", "preferences": decision}),
                now,
            ));
            return Ok(commit);
        }
        let email = ctx
            .recipient
            .get("email")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty());
        let step_setting = |key: &str| {
            channel_step
                .template
                .get("settings")
                .and_then(|s| s.get(key))
                .and_then(Value::as_str)
                .is_some_and(|v| !v.trim().is_empty())
        };
        let has_phone = ctx
            .recipient
            .get("phone_number")
            .and_then(Value::as_str)
            .is_some_and(|p| !p.trim().is_empty());
        if channel.channel_type == ChannelType::Sms && !has_phone && !step_setting("to_number") {
            commit.events.push(step_event(
                "step_skipped",
                true,
                step,
                json!({"reason": "recipient_missing_phone_number", "channel_type": "sms"}),
                now,
            ));
            return Ok(commit);
        }
        if channel.channel_type == ChannelType::Email
            && email.is_none()
            && !step_setting("to_address")
        {
            commit.events.push(step_event(
                "step_skipped",
                true,
                step,
                json!({"reason": "recipient_missing_email", "channel_type": "email"}),
                now,
            ));
            return Ok(commit);
        }
        // Push and chat go where the recipient's channel data says; without any, Knock
        // skips the step and creates no message.
        let mut target = None;
        if matches!(channel.channel_type, ChannelType::Push | ChannelType::Chat) {
            match self.channel_target(ctx, &channel).await {
                Ok(Some(found)) => target = Some(found),
                Ok(None) => {
                    commit.events.push(step_event(
                        "step_skipped",
                        true,
                        step,
                        json!({"reason": "recipient_missing_channel_data", "channel_type": channel.channel_type.as_str(), "channel_id": channel.id}),
                        now,
                    ));
                    return Ok(commit);
                }
                Err(e) => {
                    commit.events.push(step_event(
                        "message_render_failed",
                        false,
                        step,
                        json!({"error": format!("could not read channel data: {e}")}),
                        now,
                    ));
                    commit.error = true;
                    return Ok(commit);
                }
            }
        }
        let from_address = match &channel.sender {
            Sender::Smtp { from_address, .. } => Some(from_address.clone()),
            Sender::EmailApi(sender) => Some(sender.settings().from_address.clone()),
            _ => None,
        };
        // The layout is read when the step runs, so a layout edited after the workflow
        // was committed applies to later messages, as in Knock.
        let mut layout = None;
        if channel.channel_type == ChannelType::Email {
            if let Some(key) = layout_key(&channel_step.template) {
                let found = self
                    .inner
                    .store
                    .get_email_layout(&run.environment_id, key)
                    .await;
                let error = match found {
                    Ok(Some(found)) => {
                        layout = Some(found);
                        None
                    }
                    // Knock's built-in layout: without a stored one, send the body as is.
                    Ok(None) if key == DEFAULT_LAYOUT_KEY => None,
                    Ok(None) => Some(format!("email layout `{key}` does not exist")),
                    Err(e) => Some(format!("could not read email layout `{key}`: {e}")),
                };
                if let Some(error) = error {
                    commit.events.push(step_event(
                        "message_render_failed",
                        false,
                        step,
                        json!({"error": error}),
                        now,
                    ));
                    commit.error = true;
                    return Ok(commit);
                }
            }
        }
        let variables = ctx.variables(now);
        // The id is known before rendering: tracking URLs carry it.
        let message_id = new_id();
        let tracking = self.inner.config.tracking.clone().map(|tracking| {
            let switches = channel.tracking.for_step(&channel_step.template);
            let environment_id = run.environment_id.clone();
            (tracking, switches, message_id.clone(), environment_id)
        });
        let renderer = self.inner.renderer.clone();
        let step_owned = channel_step.clone();
        let channel_type = channel.channel_type;
        let email_owned = email.map(str::to_string);
        // Liquid is synchronous and user-controlled: keep it off the async workers.
        let rendered = tokio::task::spawn_blocking(move || {
            let mut content = render_step(
                &renderer,
                &step_owned,
                channel_type,
                &variables,
                email_owned.as_deref(),
                from_address.as_deref(),
                layout.as_ref(),
            )?;
            if let Some((tracking, switches, message_id, environment_id)) = tracking {
                if switches.links || switches.opens {
                    tracking::apply(
                        &mut content,
                        channel_type,
                        switches,
                        &tracking,
                        &message_id,
                        &environment_id,
                    );
                }
            }
            Ok::<_, StepRenderError>(content)
        })
        .await;
        let content = match rendered {
            Ok(Ok(mut content)) => {
                // Knock's content names one token or connection; delivery reads the
                // current channel data and sends to all of them.
                match target {
                    Some(Value::String(token)) => content["token"] = Value::String(token),
                    Some(connection) => content["connection"] = redact_connection(connection),
                    None => {}
                }
                content
            }
            Ok(Err(e)) => {
                commit.events.push(step_event(
                    "message_render_failed",
                    false,
                    step,
                    json!({"error": e.to_string()}),
                    now,
                ));
                commit.error = true;
                return Ok(commit);
            }
            Err(e) => {
                commit.events.push(step_event(
                    "message_render_failed",
                    false,
                    step,
                    json!({"error": format!("renderer crashed: {e}")}),
                    now,
                ));
                commit.error = true;
                return Ok(commit);
            }
        };
        let in_app = channel.channel_type == ChannelType::InAppFeed;
        let sandbox = ctx
            .state
            .pointer("/settings/sandbox_mode")
            .and_then(Value::as_bool)
            .unwrap_or(false);
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
            recipient_collection: run.recipient_collection.clone(),
            actors: ctx.actors(),
            tenant: run.tenant.clone(),
            // Knock: in-app messages are delivered the moment they exist; a sandboxed run
            // creates messages that are never sent.
            status: if sandbox && !in_app {
                "not_sent"
            } else if in_app {
                "delivered"
            } else {
                "queued"
            }
            .to_string(),
            content,
            data: ctx.data.clone(),
            batch: ctx.message_batch(),
            now,
        });
        commit.enqueue_delivery = !in_app && !sandbox;
        commit.events.push(step_event(
            "message_enqueued",
            true,
            step,
            json!({"channel_type": channel.channel_type.as_str(), "channel_key": channel.key, "message_id": message_id}),
            now,
        ));
        Ok(commit)
    }
}

impl Engine {
    /// The first push token or chat connection of the recipient's channel data for
    /// `channel`, or `None` when there is none.
    async fn channel_target(
        &self,
        ctx: &RunContext,
        channel: &Channel,
    ) -> Result<Option<Value>, StoreError> {
        let doc = self
            .inner
            .store
            .get_document(
                &ctx.run.environment_id,
                &Owner::recipient(
                    ctx.run.recipient_collection.as_deref(),
                    &ctx.run.recipient_id,
                ),
                DocumentKind::ChannelData,
                &channel.id,
            )
            .await?;
        let Some(doc) = doc else { return Ok(None) };
        Ok(match channel.channel_type {
            ChannelType::Push => push_tokens(&doc.data).into_iter().next().map(Value::String),
            _ => chat_connections(&doc.data).into_iter().next(),
        })
    }
}

/// A chat connection as shown in message content: the credentials in it (a bot token, a
/// webhook URL, whose path is the secret) are left out, since delivery reads them from
/// the channel data anyway.
fn redact_connection(mut connection: Value) -> Value {
    if let Some(map) = connection.as_object_mut() {
        if map.get("access_token").is_some_and(|t| !t.is_null()) {
            map.insert("access_token".into(), json!(hark_channels::REDACTED));
        }
        if let Some(hook) = map
            .get_mut("incoming_webhook")
            .and_then(Value::as_object_mut)
        {
            if hook.contains_key("url") {
                hook.insert("url".into(), json!(hark_channels::REDACTED));
            }
        }
    }
    connection
}
