//! The workflow definition model: what the Management API stores and what a run executes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::recipient::FieldError;

/// The channel types a channel may have (Knock's `Channel.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    Email,
    Sms,
    Push,
    Chat,
    InAppFeed,
    Http,
}

impl ChannelType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Email => "email",
            ChannelType::Sms => "sms",
            ChannelType::Push => "push",
            ChannelType::Chat => "chat",
            ChannelType::InAppFeed => "in_app_feed",
            ChannelType::Http => "http",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "email" => ChannelType::Email,
            "sms" => ChannelType::Sms,
            "push" => ChannelType::Push,
            "chat" => ChannelType::Chat,
            "in_app_feed" => ChannelType::InAppFeed,
            "http" => ChannelType::Http,
            _ => return None,
        })
    }
}

/// A channel step: render the template for the channel and create one message.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStep {
    pub step_ref: String,
    pub channel_key: String,
    pub template: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Channel(ChannelStep),
}

impl Step {
    pub fn step_ref(&self) -> &str {
        match self {
            Step::Channel(step) => &step.step_ref,
        }
    }

    pub fn step_type(&self) -> &'static str {
        match self {
            Step::Channel(_) => "channel",
        }
    }
}

/// A validated workflow definition. `source` keeps the request as written so that the
/// Management API can hand it back unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowDefinition {
    pub name: String,
    pub categories: Vec<String>,
    pub steps: Vec<Step>,
    pub source: Map<String, Value>,
}

/// Function step types that Knock defines but this server does not execute yet. A workflow
/// that uses one is refused at validation instead of silently misbehaving at run time.
const UNSUPPORTED_STEP_TYPES: &[&str] = &[
    "delay",
    "batch",
    "throttle",
    "branch",
    "http_fetch",
    "trigger_workflow",
    "update_data",
    "update_user",
    "update_object",
    "update_tenant",
    "wait_for_event",
    "random_cohort",
    "ai_agent",
];

impl WorkflowDefinition {
    /// Parses and validates a `WorkflowRequest` body. `channel_type_of` resolves a channel key
    /// to its type, or `None` when no such channel is configured.
    pub fn parse(
        request: &Value,
        channel_type_of: &dyn Fn(&str) -> Option<ChannelType>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Some(source) = request.as_object() else {
            return Err(vec![FieldError::new("workflow", "must be an object")]);
        };
        let name = match source.get("name") {
            Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
            _ => {
                errors.push(FieldError::new("workflow.name", "can't be blank"));
                String::new()
            }
        };
        let categories = match source.get("categories") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item.as_str() {
                    Some(c) => Some(c.to_string()),
                    None => {
                        errors.push(FieldError::new(
                            format!("workflow.categories[{i}]"),
                            "must be a string",
                        ));
                        None
                    }
                })
                .collect(),
            Some(_) => {
                errors.push(FieldError::new("workflow.categories", "must be a list"));
                Vec::new()
            }
        };
        let mut steps = Vec::new();
        match source.get("steps") {
            Some(Value::Array(items)) => {
                let mut refs = std::collections::HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let field = format!("workflow.steps[{i}]");
                    match parse_step(item, &field, channel_type_of) {
                        Ok(step) => {
                            if !refs.insert(step.step_ref().to_string()) {
                                errors.push(FieldError::new(
                                    format!("{field}.ref"),
                                    "must be unique within the workflow",
                                ));
                            }
                            steps.push(step);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
            _ => errors.push(FieldError::new("workflow.steps", "must be a list of steps")),
        }
        if errors.is_empty() {
            Ok(WorkflowDefinition {
                name,
                categories,
                steps,
                source: source.clone(),
            })
        } else {
            Err(errors)
        }
    }
}

fn parse_step(
    item: &Value,
    field: &str,
    channel_type_of: &dyn Fn(&str) -> Option<ChannelType>,
) -> Result<Step, FieldError> {
    let Some(step) = item.as_object() else {
        return Err(FieldError::new(field, "must be an object"));
    };
    let step_ref = match step.get("ref") {
        Some(Value::String(r)) if !r.is_empty() => r.clone(),
        _ => return Err(FieldError::new(format!("{field}.ref"), "can't be blank")),
    };
    let step_type = step.get("type").and_then(Value::as_str).unwrap_or_default();
    match step_type {
        "channel" => {}
        t if UNSUPPORTED_STEP_TYPES.contains(&t) => {
            return Err(FieldError::new(
                format!("{field}.type"),
                format!("step type `{t}` is not supported by this server yet"),
            ))
        }
        _ => {
            return Err(FieldError::new(
                format!("{field}.type"),
                "is not a known step type",
            ))
        }
    }
    let channel_key = match step.get("channel_key") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => {
            return Err(FieldError::new(
                format!("{field}.channel_key"),
                "can't be blank",
            ))
        }
    };
    let Some(channel_type) = channel_type_of(&channel_key) else {
        return Err(FieldError::new(
            format!("{field}.channel_key"),
            format!("no channel with key `{channel_key}` is configured"),
        ));
    };
    let template = match step.get("template") {
        Some(Value::Object(t)) => t.clone(),
        _ => {
            return Err(FieldError::new(
                format!("{field}.template"),
                "must be an object",
            ))
        }
    };
    let required: &[&str] = match channel_type {
        ChannelType::InAppFeed => &["markdown_body"],
        ChannelType::Email => &["subject"],
        ChannelType::Http => &["url", "method"],
        ChannelType::Sms => &["text_body"],
        ChannelType::Push => &["text_body"],
        ChannelType::Chat => &[],
    };
    for key in required {
        if !template.get(*key).is_some_and(Value::is_string) {
            return Err(FieldError::new(
                format!("{field}.template.{key}"),
                "can't be blank",
            ));
        }
    }
    if channel_type == ChannelType::Email
        && !template.get("html_body").is_some_and(Value::is_string)
        && !template.get("text_body").is_some_and(Value::is_string)
    {
        return Err(FieldError::new(
            format!("{field}.template.html_body"),
            "an email template needs `html_body` or `text_body`",
        ));
    }
    if channel_type == ChannelType::Http {
        let method = template
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
            return Err(FieldError::new(
                format!("{field}.template.method"),
                "must be one of get, post, put, delete, patch",
            ));
        }
    }
    Ok(Step::Channel(ChannelStep {
        step_ref,
        channel_key,
        template,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn channels(key: &str) -> Option<ChannelType> {
        match key {
            "in-app" => Some(ChannelType::InAppFeed),
            "mail" => Some(ChannelType::Email),
            "hook" => Some(ChannelType::Http),
            _ => None,
        }
    }

    #[test]
    fn parses_channel_steps() {
        let def = WorkflowDefinition::parse(
            &json!({"name": "W", "categories": ["a"], "steps": [
                {"type": "channel", "ref": "s1", "channel_key": "in-app", "template": {"markdown_body": "hi"}},
                {"type": "channel", "ref": "s2", "channel_key": "mail", "template": {"subject": "s", "html_body": "<p>x</p>"}},
                {"type": "channel", "ref": "s3", "channel_key": "hook", "template": {"url": "http://x", "method": "post"}}
            ]}),
            &channels,
        )
        .expect("valid workflow");
        assert_eq!(def.steps.len(), 3);
        assert_eq!(def.categories, vec!["a".to_string()]);
    }

    #[test]
    fn reports_every_invalid_step() {
        let errors = WorkflowDefinition::parse(
            &json!({"name": "", "steps": [
                {"type": "channel", "ref": "s1", "channel_key": "nope", "template": {}},
                {"type": "delay", "ref": "d"},
                {"type": "channel", "ref": "s3", "channel_key": "hook", "template": {"url": "u", "method": "TRACE"}}
            ]}),
            &channels,
        )
        .expect_err("invalid workflow");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "workflow.name",
                "workflow.steps[0].channel_key",
                "workflow.steps[1].type",
                "workflow.steps[2].template.method"
            ]
        );
    }

    #[test]
    fn refuses_duplicate_refs() {
        let errors = WorkflowDefinition::parse(
            &json!({"name": "W", "steps": [
                {"type": "channel", "ref": "s", "channel_key": "in-app", "template": {"markdown_body": "a"}},
                {"type": "channel", "ref": "s", "channel_key": "in-app", "template": {"markdown_body": "b"}}
            ]}),
            &channels,
        )
        .expect_err("duplicate refs");
        assert_eq!(errors[0].field, "workflow.steps[1].ref");
    }
}
