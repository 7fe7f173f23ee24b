//! Turns a channel step's template into a message's content.

use hark_core::time::rfc3339;
use hark_core::workflow::{ChannelStep, ChannelType};
use hark_core::Millis;
use hark_store::RecipientRun;
use hark_template::{html_to_text, markdown_to_html, RenderContext, Renderer, TemplateError};
use serde_json::{json, Map, Value};

/// What a template can see, per Knock: `recipient`, `actor`, `data`, `vars`, `tenant`,
/// `workflow`, `timestamp`.
pub fn template_variables(
    run: &RecipientRun,
    recipient: &Value,
    actor: &Value,
    categories: &[String],
    now: Millis,
) -> Value {
    json!({
        "recipient": recipient,
        "actor": actor,
        "data": run.data,
        "vars": {},
        "tenant": run.tenant.as_ref().map(|id| json!({"id": id})).unwrap_or(Value::Null),
        "workflow": {
            "key": run.workflow_key,
            "id": run.workflow_key,
            "categories": categories,
            "run_id": run.workflow_run_id,
        },
        "timestamp": rfc3339(now),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StepRenderError {
    #[error("{field}: {source}")]
    Template {
        field: String,
        #[source]
        source: TemplateError,
    },
    #[error("{0}")]
    Invalid(String),
}

struct Fields<'a> {
    renderer: &'a Renderer,
    ctx: &'a RenderContext,
    template: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn render(&self, field: &str, source: &str) -> Result<String, StepRenderError> {
        self.renderer
            .render(source, self.ctx)
            .map_err(|source| StepRenderError::Template {
                field: field.to_string(),
                source,
            })
    }

    fn optional(&self, field: &str) -> Result<Option<String>, StepRenderError> {
        match self.template.get(field).and_then(Value::as_str) {
            Some(source) => self.render(field, source).map(Some),
            None => Ok(None),
        }
    }

    /// Headers and query params come as `[{key, value}]`, or as a JSON object.
    fn pairs(&self, field: &str) -> Result<Vec<(String, String)>, StepRenderError> {
        let mut out = Vec::new();
        match self.template.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let key = item.get("key").and_then(Value::as_str).unwrap_or_default();
                    let value = item
                        .get("value")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if key.is_empty() {
                        continue;
                    }
                    let name = format!("{field}[{i}]");
                    out.push((self.render(&name, key)?, self.render(&name, value)?));
                }
            }
            Some(Value::Object(map)) => {
                for (key, value) in map {
                    let value = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    out.push((key.clone(), self.render(field, &value)?));
                }
            }
            Some(Value::String(text)) => {
                let rendered = self.render(field, text)?;
                let parsed: Value = serde_json::from_str(&rendered).map_err(|_| {
                    StepRenderError::Invalid(format!("{field} must render to a JSON object"))
                })?;
                if let Value::Object(map) = parsed {
                    for (k, v) in map {
                        out.push((k, v.as_str().map(str::to_string).unwrap_or(v.to_string())));
                    }
                }
            }
            Some(_) => {
                return Err(StepRenderError::Invalid(format!(
                    "{field} must be a list of {{key, value}}"
                )))
            }
        }
        Ok(out)
    }
}

/// Renders the step for its channel type. `recipient_email` and `from_address` only matter
/// for email.
pub fn render_step(
    renderer: &Renderer,
    step: &ChannelStep,
    channel_type: ChannelType,
    variables: &Value,
    recipient_email: Option<&str>,
    from_address: Option<&str>,
) -> Result<Value, StepRenderError> {
    let ctx = RenderContext::from_json(variables).map_err(|source| StepRenderError::Template {
        field: "context".into(),
        source,
    })?;
    let fields = Fields {
        renderer,
        ctx: &ctx,
        template: &step.template,
    };
    match channel_type {
        ChannelType::InAppFeed => {
            let source = step
                .template
                .get("markdown_body")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let markdown = fields.render("markdown_body", source)?;
            let mut blocks = vec![json!({
                "type": "markdown",
                "name": "body",
                "content": markdown,
                "rendered": markdown_to_html(&markdown),
            })];
            if let Some(Value::Array(buttons)) = step.template.get("action_buttons") {
                let mut rendered = Vec::new();
                for (i, b) in buttons.iter().enumerate() {
                    let label = b.get("label").and_then(Value::as_str).unwrap_or_default();
                    let action = b.get("action").and_then(Value::as_str).unwrap_or_default();
                    let name = format!("action_buttons[{i}]");
                    rendered.push(json!({
                        "name": b.get("name").and_then(Value::as_str).unwrap_or(if i == 0 { "primary" } else { "secondary" }),
                        "label": fields.render(&name, label)?,
                        "action": fields.render(&name, action)?,
                    }));
                }
                blocks.push(json!({"type": "button_set", "name": "actions", "buttons": rendered}));
            }
            // Knock's clients read the notification's link from a text block named
            // `action_url`.
            let action_url = fields.optional("action_url")?;
            if let Some(url) = &action_url {
                blocks.push(json!({
                    "type": "text",
                    "name": "action_url",
                    "content": url,
                    "rendered": url,
                }));
            }
            Ok(json!({
                "__typename": "MessageInAppFeedContent",
                "blocks": blocks,
                "action_url": action_url,
            }))
        }
        ChannelType::Email => {
            let subject = fields.optional("subject")?.unwrap_or_default();
            let html = fields.optional("html_body")?;
            let text = match fields.optional("text_body")? {
                Some(t) => t,
                None => html.as_deref().map(html_to_text).unwrap_or_default(),
            };
            Ok(json!({
                "__typename": "MessageEmailContent",
                "subject_line": subject,
                "html_body": html.unwrap_or_default(),
                "text_body": text,
                "from": from_address.unwrap_or_default(),
                "to": recipient_email.unwrap_or_default(),
                "cc": null,
                "bcc": null,
                "reply_to": null,
            }))
        }
        ChannelType::Http => {
            let method = step
                .template
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("post")
                .to_ascii_uppercase();
            let url = fields.optional("url")?.unwrap_or_default();
            let headers = fields.pairs("headers")?;
            let query = fields.pairs("query_params")?;
            let body = fields.optional("body")?;
            Ok(json!({
                "__typename": "MessageHttpContent",
                "method": method,
                "url": url,
                "headers": headers.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "query_params": query.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "body": body,
            }))
        }
        other => Err(StepRenderError::Invalid(format!(
            "channel type `{}` is not supported by this server yet",
            other.as_str()
        ))),
    }
}

/// Reads `[{key, value}]` pairs back out of stored HTTP content.
pub fn content_pairs(content: &Value, field: &str) -> Vec<(String, String)> {
    content
        .get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| {
                    Some((
                        i.get("key")?.as_str()?.to_string(),
                        i.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}
