//! Delivering a message through its channel, one attempt per job claim. Provider calls
//! are at-least-once; they carry the message id as idempotency key so a repeat after a
//! crash can be recognised by the receiver.

use hark_channels::callbacks::provider_message_id;
use hark_channels::email::api::{split_addresses, OutboundEmail};
use hark_channels::email::EmailMessage;
use hark_channels::sms::OutboundSms;
use hark_channels::webhook::WebhookRequest;
use hark_channels::{DeliveryAttempt, Outcome};
use hark_core::new_id;
use hark_store::{ClaimedJob, DeliveryCommit, DeliveryLog, MessageRecord, StoreError};
use serde_json::{json, Value};

use crate::backoff::{retry_delay_ms, MAX_DELIVERY_ATTEMPTS};
use crate::prefetch::Prefetched;
use crate::push_chat::combined_outcome;
use crate::registry::Sender;
use crate::render::content_pairs;
use crate::Engine;

const FINAL_STATUSES: &[&str] = &["sent", "delivered", "undelivered", "bounced", "not_sent"];

fn text(content: &Value, field: &str) -> String {
    content
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Engine {
    pub(crate) async fn deliver_message(
        &self,
        job: &ClaimedJob,
        prefetched: Option<&Prefetched>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        // Absent from the read-ahead means absent from the table, unless nothing was read.
        let message = match prefetched {
            Some(prefetched) => prefetched.message(&job.ref_id),
            None => store.load_message_for_job(&job.ref_id).await?,
        };
        let Some(message) = message else {
            store.complete_job(job).await?;
            return Ok(());
        };
        if FINAL_STATUSES.contains(&message.status.as_str()) {
            store.complete_job(job).await?;
            return Ok(());
        }
        let attempts = self.attempt_delivery(&message).await;
        let outcome = combined_outcome(&attempts).unwrap_or_else(|| Outcome::Permanent {
            reason: "nothing was attempted".into(),
        });
        let now = self.inner.clock.now_ms();
        let (status, event_type, retry_at) = match &outcome {
            Outcome::Delivered => ("delivered", "message.delivered", None),
            Outcome::Sent => ("sent", "message.sent", None),
            Outcome::NotSent { .. } => ("not_sent", "message.not_sent", None),
            Outcome::Retryable { retry_after_ms, .. } if job.attempts < MAX_DELIVERY_ATTEMPTS => (
                "delivery_attempted",
                "message.delivery_attempted",
                Some(now + retry_delay_ms(job.attempts, *retry_after_ms)),
            ),
            Outcome::Retryable { .. } | Outcome::Permanent { .. } => {
                ("undelivered", "message.undelivered", None)
            }
        };
        let reason = match &outcome {
            Outcome::Retryable { reason, .. }
            | Outcome::Permanent { reason }
            | Outcome::NotSent { reason } => Value::String(reason.clone()),
            _ => Value::Null,
        };
        let logs = attempts
            .iter()
            .map(|attempt| DeliveryLog {
                id: new_id(),
                environment_id: message.environment_id.clone(),
                message_id: message.id.clone(),
                service_name: attempt.service_name.clone(),
                request: attempt.request.clone(),
                response: attempt.response.clone(),
                inserted_at: now,
            })
            .collect();
        let commit = DeliveryCommit {
            message_id: message.id.clone(),
            status: status.to_string(),
            logs,
            event_type: event_type.to_string(),
            event_data: json!({"attempt": job.attempts, "reason": reason}),
            retry_at,
            // Several requests (push tokens) have no one provider id to record.
            provider_message_id: match attempts.as_slice() {
                [single] => provider_message_id(single),
                _ => None,
            },
            now,
        };
        if !self.inner.deliveries.submit((job.clone(), commit)).await? {
            metrics::counter!("hark_commits_fenced_total").increment(1);
            tracing::info!(job = %job.id, "lease lost before the delivery result was stored");
            return Ok(());
        }
        if let Some(at) = retry_at {
            self.note_timer(at);
        }
        metrics::counter!(
            "hark_messages_total",
            "channel_type" => message.channel_type.clone(),
            "status" => status
        )
        .increment(1);
        if retry_at.is_none() {
            // From the message's creation to its final delivery outcome.
            metrics::histogram!(
                "hark_delivery_latency_seconds",
                "channel_type" => message.channel_type.clone()
            )
            .record((now - message.inserted_at).max(0) as f64 / 1000.0);
        }
        Ok(())
    }

    /// The provider requests made for the message: one for most channels, one per token
    /// or connection for push and chat.
    async fn attempt_delivery(&self, message: &MessageRecord) -> Vec<DeliveryAttempt> {
        let Some(channel) = self
            .inner
            .channels
            .for_environment(&message.channel_key, &message.environment_id)
            .cloned()
        else {
            return vec![DeliveryAttempt {
                outcome: Outcome::Permanent {
                    reason: format!("channel `{}` is no longer configured", message.channel_key),
                },
                service_name: "hark".into(),
                request: json!({}),
                response: json!({"error": "channel not configured"}),
            }];
        };
        let content = &message.content;
        let attempt = match &channel.sender {
            Sender::Smtp { sender, .. } => {
                let html = text(content, "html_body");
                let email = EmailMessage {
                    from: text(content, "from"),
                    to: text(content, "to"),
                    cc: split_addresses(&text(content, "cc")),
                    bcc: split_addresses(&text(content, "bcc")),
                    reply_to: split_addresses(&text(content, "reply_to")),
                    subject: text(content, "subject_line"),
                    html_body: (!html.is_empty()).then_some(html),
                    text_body: Some(text(content, "text_body")).filter(|t| !t.is_empty()),
                    message_id: message.id.clone(),
                };
                sender.send(&email).await
            }
            Sender::EmailApi(sender) => {
                let html = text(content, "html_body");
                let mut from = text(content, "from");
                let from_name = text(content, "from_name");
                if from.is_empty() && !from_name.is_empty() {
                    from = format!("{from_name} <{}>", sender.settings().from_address);
                }
                let email = OutboundEmail {
                    from,
                    to: split_addresses(&text(content, "to")),
                    cc: split_addresses(&text(content, "cc")),
                    bcc: split_addresses(&text(content, "bcc")),
                    reply_to: split_addresses(&text(content, "reply_to")),
                    subject: text(content, "subject_line"),
                    html_body: (!html.is_empty()).then_some(html),
                    text_body: Some(text(content, "text_body")).filter(|t| !t.is_empty()),
                    message_id: message.id.clone(),
                    json_overrides: content
                        .get("json_overrides")
                        .filter(|v| v.is_object())
                        .cloned(),
                };
                sender.send(&email).await
            }
            Sender::Sms(sender) => {
                let sms = OutboundSms {
                    to: text(content, "to"),
                    body: text(content, "body"),
                    message_id: message.id.clone(),
                    json_overrides: content
                        .get("json_overrides")
                        .filter(|v| v.is_object())
                        .cloned(),
                };
                sender.send(&sms).await
            }
            Sender::Webhook => {
                let body = content
                    .get("body")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let request = WebhookRequest {
                    method: text(content, "method"),
                    url: text(content, "url"),
                    headers: content_pairs(content, "headers"),
                    query_params: content_pairs(content, "query_params"),
                    body,
                };
                self.inner
                    .channels
                    .webhook
                    .send(&request, &message.id)
                    .await
            }
            Sender::Push(sender) => return self.deliver_push(message, &channel, sender).await,
            Sender::Chat(sender) => return self.deliver_chat(message, &channel, sender).await,
            Sender::InAppFeed => DeliveryAttempt {
                outcome: Outcome::Delivered,
                service_name: "in_app_feed".into(),
                request: json!({}),
                response: json!({}),
            },
        };
        vec![attempt]
    }
}
