//! Delivery of push and chat messages: every token or connection of the recipient's
//! current channel data, one provider request (and one delivery log) each, and dead tokens
//! removed afterwards.

use hark_channels::chat::ChatMessage;
use hark_channels::push::{invalid_tokens, DeliveryType, PushMessage};
use hark_channels::{DeliveryAttempt, Outcome};
use hark_store::{DocumentKind, MessageRecord, Owner};
use serde_json::{json, Map, Value};

use crate::channel_data::{chat_connections, push_tokens, without_tokens};
use crate::push_chat::{ChatSender, PushSender};
use crate::registry::Channel;
use crate::Engine;

fn final_failure(service: &str, reason: &str) -> DeliveryAttempt {
    DeliveryAttempt {
        outcome: Outcome::Permanent {
            reason: reason.to_string(),
        },
        service_name: service.to_string(),
        request: json!({}),
        response: json!({"error": reason}),
    }
}

fn text(content: &Value, field: &str) -> String {
    content
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Engine {
    /// The recipient's channel data for `channel` as it is now (tokens may have been
    /// added or removed since the message was created).
    async fn current_channel_data(
        &self,
        message: &MessageRecord,
        channel: &Channel,
    ) -> Result<Option<Value>, DeliveryAttempt> {
        self.inner
            .store
            .get_document(
                &message.environment_id,
                &Owner::recipient(
                    message.recipient_collection.as_deref(),
                    &message.recipient_id,
                ),
                DocumentKind::ChannelData,
                &channel.id,
            )
            .await
            .map(|doc| doc.map(|d| d.data))
            // A store error is worth another attempt, like a provider outage.
            .map_err(|e| DeliveryAttempt {
                outcome: Outcome::Retryable {
                    reason: format!("could not read channel data: {e}"),
                    retry_after_ms: None,
                },
                service_name: "hark".into(),
                request: json!({}),
                response: json!({"error": "channel data unavailable"}),
            })
    }

    pub(crate) async fn deliver_push(
        &self,
        message: &MessageRecord,
        channel: &Channel,
        sender: &PushSender,
    ) -> Vec<DeliveryAttempt> {
        let data = match self.current_channel_data(message, channel).await {
            Ok(data) => data.unwrap_or(Value::Null),
            Err(attempt) => return vec![attempt],
        };
        let tokens = push_tokens(&data);
        if tokens.is_empty() {
            return vec![final_failure(
                &channel.provider,
                "the recipient has no push tokens for this channel",
            )];
        }
        let content = &message.content;
        // Knock passes its message id with the data so the app can report engagement.
        let mut custom: Map<String, Value> = content
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        custom.insert("knock_message_id".into(), json!(message.id));
        let title = text(content, "title");
        let push = PushMessage {
            title: (!title.is_empty()).then_some(title),
            body: text(content, "body"),
            data: custom,
            delivery_type: if text(content, "delivery_type") == "silent" {
                DeliveryType::Silent
            } else {
                DeliveryType::Content
            },
            payload_overrides: content
                .get("payload_overrides")
                .filter(|v| v.is_object())
                .cloned()
                .or_else(|| sender.payload_overrides.clone()),
            message_id: message.id.clone(),
        };
        let attempts = sender.send(&tokens, &push).await;
        let dead = invalid_tokens(&attempts);
        if sender.token_deregistration && !dead.is_empty() {
            self.deregister_tokens(message, channel, &dead).await;
        }
        attempts.into_iter().map(|a| a.attempt).collect()
    }

    /// Removes `dead` tokens from the recipient's channel data. Read and write are two
    /// statements: a token registered in between is kept, since only the dead ones are
    /// removed from what is read.
    async fn deregister_tokens(&self, message: &MessageRecord, channel: &Channel, dead: &[String]) {
        let owner = Owner::recipient(
            message.recipient_collection.as_deref(),
            &message.recipient_id,
        );
        let store = &self.inner.store;
        let env = &message.environment_id;
        let doc = match store
            .get_document(env, &owner, DocumentKind::ChannelData, &channel.id)
            .await
        {
            Ok(Some(doc)) => doc,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(message = %message.id, error = %e, "could not read channel data to remove dead tokens");
                return;
            }
        };
        let Some(next) = without_tokens(&doc.data, dead) else {
            return;
        };
        let now = self.inner.clock.now_ms();
        if let Err(e) = store
            .put_document(
                env,
                &owner,
                DocumentKind::ChannelData,
                &channel.id,
                &next,
                now,
            )
            .await
        {
            tracing::warn!(message = %message.id, error = %e, "could not remove dead push tokens");
        } else {
            tracing::info!(message = %message.id, removed = dead.len(), "removed dead push tokens from channel data");
        }
    }

    pub(crate) async fn deliver_chat(
        &self,
        message: &MessageRecord,
        channel: &Channel,
        sender: &ChatSender,
    ) -> Vec<DeliveryAttempt> {
        let data = match self.current_channel_data(message, channel).await {
            Ok(data) => data.unwrap_or(Value::Null),
            Err(attempt) => return vec![attempt],
        };
        let connections = chat_connections(&data);
        if connections.is_empty() {
            return vec![final_failure(
                &channel.provider,
                "the recipient has no chat connections for this channel",
            )];
        }
        let template = &message.content["template"];
        let chat = ChatMessage {
            text: template["summary"].as_str().unwrap_or_default().to_string(),
            json_body: template
                .get("json_content")
                .filter(|v| !v.is_null())
                .cloned(),
            message_id: message.id.clone(),
        };
        let mut attempts = Vec::with_capacity(connections.len());
        for connection in &connections {
            attempts.push(sender.send(&data, connection, &chat).await);
        }
        attempts
    }
}
