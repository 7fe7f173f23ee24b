//! Turns a channel step's template into a message's content.

use hark_core::workflow::{ChannelStep, ChannelType};
use hark_store::EmailLayout;
use hark_template::{html_to_text, markdown_to_html, RenderContext, Renderer, TemplateError};
use serde_json::{json, Map, Value};

use crate::layout::{wrap, Body};

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

    /// A step-level override from the template's `settings` (Knock's template settings:
    /// `from_address`, `to_address`, `to_number`…), rendered; blank means not set.
    fn setting(&self, name: &str) -> Result<Option<String>, StepRenderError> {
        let Some(source) = self
            .template
            .get("settings")
            .and_then(|s| s.get(name))
            .and_then(Value::as_str)
        else {
            return Ok(None);
        };
        let rendered = self.render(&format!("settings.{name}"), source)?;
        let trimmed = rendered.trim();
        Ok((!trimmed.is_empty()).then(|| trimmed.to_string()))
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

/// Renders the step for its channel type. `recipient_email`, `from_address` and `layout`
/// (the step's email layout, already looked up) only matter for email; SMS reads the
/// recipient's `phone_number` from `variables`.
pub fn render_step(
    renderer: &Renderer,
    step: &ChannelStep,
    channel_type: ChannelType,
    variables: &Value,
    recipient_email: Option<&str>,
    from_address: Option<&str>,
    layout: Option<&EmailLayout>,
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
            let text_source = step.template.get("text_body").and_then(Value::as_str);
            let text = match fields.optional("text_body")? {
                Some(t) => t,
                None => html.as_deref().map(html_to_text).unwrap_or_default(),
            };
            let html = html.unwrap_or_default();
            let (html, text) = match layout {
                Some(layout) => {
                    let html_source = step.template.get("html_body").and_then(Value::as_str);
                    let pre_content = step
                        .template
                        .get("settings")
                        .and_then(|s| s.get("pre_content"))
                        .and_then(Value::as_str);
                    wrap(
                        renderer,
                        layout,
                        variables,
                        pre_content,
                        Body {
                            source: html_source,
                            rendered: &html,
                        },
                        Body {
                            source: text_source,
                            rendered: &text,
                        },
                    )?
                }
                None => (html, text),
            };
            let setting = |name: &str| fields.setting(name);
            let from_address =
                setting("from_address")?.or_else(|| from_address.map(str::to_string));
            let from_name = setting("from_name")?;
            let (from, pending_name) = match (from_name, from_address) {
                (Some(name), Some(address)) => (Some(format!("{name} <{address}>")), None),
                // The channel's sender is only known at delivery; keep the name for then.
                (name, None) => (None, name),
                (None, address) => (address, None),
            };
            let to = setting("to_address")?.or_else(|| recipient_email.map(str::to_string));
            let mut content = json!({
                "__typename": "MessageEmailContent",
                "subject_line": subject,
                "html_body": html,
                "text_body": text,
                "from": from.unwrap_or_default(),
                "to": to.unwrap_or_default(),
                "cc": setting("cc_address")?,
                "bcc": setting("bcc_address")?,
                "reply_to": setting("reply_to_address")?,
            });
            if let Some(name) = pending_name {
                content["from_name"] = Value::String(name);
            }
            if let Some(overrides) = json_overrides(&fields)? {
                content["json_overrides"] = overrides;
            }
            Ok(content)
        }
        ChannelType::Sms => {
            let body = fields.optional("text_body")?.unwrap_or_default();
            let recipient_phone = variables["recipient"]["phone_number"]
                .as_str()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            let Some(to) = fields.setting("to_number")?.or(recipient_phone) else {
                return Err(StepRenderError::Invalid(
                    "recipient has no phone_number and the step sets no to_number".into(),
                ));
            };
            let mut content = json!({
                "__typename": "MessageSmsContent",
                "body": body,
                "to": to,
            });
            if let Some(overrides) = json_overrides(&fields)? {
                content["json_overrides"] = overrides;
            }
            Ok(content)
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
        ChannelType::Push => render_push(&fields, variables),
        ChannelType::Chat => render_chat(&fields),
    }
}

/// Knock's `MessagePushContent`. `token` is filled in by the channel step from the
/// recipient's channel data; `delivery_type` and `payload_overrides` are Hark's own.
fn render_push(fields: &Fields<'_>, variables: &Value) -> Result<Value, StepRenderError> {
    let title = fields.optional("title")?.unwrap_or_default();
    let body = fields.optional("text_body")?.unwrap_or_default();
    let delivery_type = match fields.setting("delivery_type")?.as_deref() {
        None | Some("content") => "content",
        Some("silent") => "silent",
        Some(other) => {
            return Err(StepRenderError::Invalid(format!(
                "settings.delivery_type must be content or silent, not `{other}`"
            )))
        }
    };
    // Custom data: the template's `data` (a JSON object, or Liquid rendering to one);
    // Knock passes the trigger data otherwise.
    let data = match fields.template.get("data") {
        None | Some(Value::Null) => variables.get("data").cloned().unwrap_or(json!({})),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(Value::String(source)) => {
            let text = fields.render("data", source)?;
            match serde_json::from_str::<Value>(&text) {
                Ok(object @ Value::Object(_)) => object,
                _ => {
                    return Err(StepRenderError::Invalid(
                        "data must render to a JSON object".into(),
                    ))
                }
            }
        }
        Some(_) => return Err(StepRenderError::Invalid("data must be an object".into())),
    };
    let data = if data.is_object() { data } else { json!({}) };
    let mut overrides = None;
    for name in ["payload_overrides", "json_overrides"] {
        if let Some(text) = fields.setting(name)? {
            match serde_json::from_str::<Value>(&text) {
                Ok(object @ Value::Object(_)) => overrides = Some(object),
                _ => {
                    return Err(StepRenderError::Invalid(format!(
                        "settings.{name} must render to a JSON object"
                    )))
                }
            }
        }
    }
    Ok(json!({
        "__typename": "MessagePushContent",
        "token": "",
        "title": title,
        "body": body,
        "data": data,
        "delivery_type": delivery_type,
        "payload_overrides": overrides,
    }))
}

/// Knock's `MessageChatContent`: the markdown body as a block and its text as the
/// summary, or a provider JSON body (Slack Block Kit, an Adaptive Card, Discord embeds)
/// from `json_body`. `connection` is filled in by the channel step.
fn render_chat(fields: &Fields<'_>) -> Result<Value, StepRenderError> {
    let markdown = fields.optional("markdown_body")?;
    let json_content = match fields.template.get("json_body") {
        None | Some(Value::Null) => None,
        Some(Value::String(source)) => {
            let text = fields.render("json_body", source)?;
            match serde_json::from_str::<Value>(&text) {
                Ok(value @ (Value::Object(_) | Value::Array(_))) => Some(value),
                _ => {
                    return Err(StepRenderError::Invalid(
                        "json_body must render to a JSON object or array".into(),
                    ))
                }
            }
        }
        Some(value @ (Value::Object(_) | Value::Array(_))) => Some(value.clone()),
        Some(_) => {
            return Err(StepRenderError::Invalid(
                "json_body must be a JSON object or array".into(),
            ))
        }
    };
    let summary = fields
        .optional("summary")?
        .or_else(|| markdown.clone())
        .unwrap_or_default();
    let blocks = markdown.map(|m| {
        json!([{"type": "markdown", "name": "body", "content": m, "rendered": markdown_to_html(&m)}])
    });
    Ok(json!({
        "__typename": "MessageChatContent",
        "connection": {},
        "template": {"summary": summary, "blocks": blocks, "json_content": json_content},
        "metadata": null,
    }))
}

/// Knock's provider JSON overrides: a Liquid template in the step's settings that must
/// yield an object.
fn json_overrides(fields: &Fields<'_>) -> Result<Option<Value>, StepRenderError> {
    let Some(text) = fields.setting("json_overrides")? else {
        return Ok(None);
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => Ok(Some(object)),
        _ => Err(StepRenderError::Invalid(
            "settings.json_overrides must render to a JSON object".into(),
        )),
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
