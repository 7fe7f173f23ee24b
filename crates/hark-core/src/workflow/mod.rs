//! The workflow definition model: what the Management API stores and what a run executes.

mod program;
mod steps;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::conditions::ConditionGroup;
use crate::recipient::FieldError;

pub use program::{cohort_index, BranchArm, CohortArm, Node};
pub use steps::*;

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

/// One step of a workflow: its ref, the conditions that gate it, and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub step_ref: String,
    pub conditions: Option<ConditionGroup>,
    pub kind: StepKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Channel(ChannelStep),
    Delay(DelaySettings),
    Batch(BatchSettings),
    Throttle(ThrottleSettings),
    Branch(Vec<Branch>),
    HttpFetch(FetchSettings),
    TriggerWorkflow(TriggerWorkflowSettings),
    UpdateData(UpdateDataSettings),
    WaitForEvent(WaitSettings),
    RandomCohort(CohortSettings),
}

impl Step {
    pub fn step_ref(&self) -> &str {
        &self.step_ref
    }

    /// Knock's step `type`.
    pub fn step_type(&self) -> &'static str {
        match &self.kind {
            StepKind::Channel(_) => "channel",
            StepKind::Delay(_) => "delay",
            StepKind::Batch(_) => "batch",
            StepKind::Throttle(_) => "throttle",
            StepKind::Branch(_) => "branch",
            StepKind::HttpFetch(_) => "http_fetch",
            StepKind::TriggerWorkflow(_) => "trigger_workflow",
            StepKind::UpdateData(_) => "update_data",
            StepKind::WaitForEvent(_) => "wait_for_event",
            StepKind::RandomCohort(_) => "random_cohort",
        }
    }
}

/// How often one recipient may run a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TriggerFrequency {
    #[default]
    EveryTrigger,
    OncePerRecipient,
    OncePerRecipientPerTenant,
}

/// A validated workflow definition. `source` keeps the request as written so that the
/// Management API can hand it back unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowDefinition {
    pub name: String,
    pub categories: Vec<String>,
    pub steps: Vec<Step>,
    /// Trigger conditions: a run whose conditions fail ends before its first step.
    pub conditions: Option<ConditionGroup>,
    pub trigger_frequency: TriggerFrequency,
    pub trigger_data_json_schema: Option<Value>,
    pub override_preferences: bool,
    pub is_commercial: bool,
    /// The steps flattened into one program; a run's cursor indexes it.
    pub program: Vec<Node>,
    pub source: Map<String, Value>,
}

/// Function step types that Knock defines but this server does not execute yet. A workflow
/// that uses one is refused at validation instead of silently misbehaving at run time.
const UNSUPPORTED_STEP_TYPES: &[&str] = &[
    "update_user",
    "update_object",
    "update_tenant",
    "update_audience",
    "ai_agent",
];

/// Branches nest at most this deep, as in Knock.
const MAX_NESTING: usize = 5;

pub(crate) type ChannelTypeOf<'a> = &'a dyn Fn(&str) -> Option<ChannelType>;

/// Parsing state shared by every step of one workflow.
pub(crate) struct StepParser<'a> {
    pub channel_type_of: ChannelTypeOf<'a>,
    pub refs: HashSet<String>,
    pub errors: Vec<FieldError>,
}

impl StepParser<'_> {
    pub(crate) fn steps(&mut self, value: Option<&Value>, field: &str, depth: usize) -> Vec<Step> {
        let Some(Value::Array(items)) = value else {
            self.errors
                .push(FieldError::new(field, "must be a list of steps"));
            return Vec::new();
        };
        if depth > MAX_NESTING {
            self.errors.push(FieldError::new(
                field,
                format!("steps may nest at most {MAX_NESTING} levels deep"),
            ));
            return Vec::new();
        }
        let mut steps = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("{field}[{i}]");
            match self.step(item, &field, depth) {
                Ok(step) => {
                    if !self.refs.insert(step.step_ref.clone()) {
                        self.errors.push(FieldError::new(
                            format!("{field}.ref"),
                            "must be unique within the workflow",
                        ));
                    }
                    steps.push(step);
                }
                Err(e) => self.errors.push(e),
            }
        }
        steps
    }

    fn step(&mut self, item: &Value, field: &str, depth: usize) -> Result<Step, FieldError> {
        let Some(step) = item.as_object() else {
            return Err(FieldError::new(field, "must be an object"));
        };
        let step_ref = match step.get("ref") {
            Some(Value::String(r)) if !r.is_empty() => r.clone(),
            _ => return Err(FieldError::new(format!("{field}.ref"), "can't be blank")),
        };
        let step_type = step.get("type").and_then(Value::as_str).unwrap_or_default();
        let conditions = match step.get("conditions") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) if map.is_empty() => None,
            Some(value) => Some(ConditionGroup::parse(
                value,
                &format!("{field}.conditions"),
            )?),
        };
        let kind = match step_type {
            "channel" => StepKind::Channel(parse_channel_step(
                step,
                &step_ref,
                field,
                self.channel_type_of,
            )?),
            "delay" => StepKind::Delay(steps::delay(step, field)?),
            "batch" => StepKind::Batch(steps::batch(step, field)?),
            "throttle" => StepKind::Throttle(steps::throttle(step, field)?),
            "http_fetch" => StepKind::HttpFetch(steps::fetch(step, field)?),
            "trigger_workflow" => StepKind::TriggerWorkflow(steps::trigger_workflow(step, field)?),
            "update_data" => StepKind::UpdateData(steps::update_data(step, field)?),
            "wait_for_event" => StepKind::WaitForEvent(steps::wait_for_event(step, field)?),
            "branch" => {
                if conditions.is_some() {
                    return Err(FieldError::new(
                        format!("{field}.conditions"),
                        "a branch step can't have conditions; put them on its branches",
                    ));
                }
                StepKind::Branch(steps::branches(self, step, field, depth)?)
            }
            "random_cohort" => StepKind::RandomCohort(steps::cohorts(self, step, field, depth)?),
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
        };
        Ok(Step {
            step_ref,
            conditions,
            kind,
        })
    }
}

impl WorkflowDefinition {
    /// Parses and validates a `WorkflowRequest` body. `channel_type_of` resolves a channel key
    /// to its type, or `None` when no such channel is configured.
    pub fn parse(
        request: &Value,
        channel_type_of: &dyn Fn(&str) -> Option<ChannelType>,
    ) -> Result<Self, Vec<FieldError>> {
        let Some(source) = request.as_object() else {
            return Err(vec![FieldError::new("workflow", "must be an object")]);
        };
        let mut parser = StepParser {
            channel_type_of,
            refs: HashSet::new(),
            errors: Vec::new(),
        };
        let name = match source.get("name") {
            Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
            _ => {
                parser
                    .errors
                    .push(FieldError::new("workflow.name", "can't be blank"));
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
                        parser.errors.push(FieldError::new(
                            format!("workflow.categories[{i}]"),
                            "must be a string",
                        ));
                        None
                    }
                })
                .collect(),
            Some(_) => {
                parser
                    .errors
                    .push(FieldError::new("workflow.categories", "must be a list"));
                Vec::new()
            }
        };
        let conditions = match source.get("conditions") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) if map.is_empty() => None,
            Some(value) => match ConditionGroup::parse(value, "workflow.conditions") {
                Ok(group) => Some(group),
                Err(e) => {
                    parser.errors.push(e);
                    None
                }
            },
        };
        let trigger_frequency = match source.get("trigger_frequency").and_then(Value::as_str) {
            None | Some("every_trigger") => TriggerFrequency::EveryTrigger,
            Some("once_per_recipient") => TriggerFrequency::OncePerRecipient,
            Some("once_per_recipient_per_tenant") => TriggerFrequency::OncePerRecipientPerTenant,
            Some(_) => {
                parser.errors.push(FieldError::new(
                    "workflow.trigger_frequency",
                    "must be one of every_trigger, once_per_recipient, once_per_recipient_per_tenant",
                ));
                TriggerFrequency::EveryTrigger
            }
        };
        let trigger_data_json_schema = match source.get("trigger_data_json_schema") {
            None | Some(Value::Null) => None,
            Some(schema @ Value::Object(map)) if !map.is_empty() => Some(schema.clone()),
            Some(Value::Object(_)) => None,
            Some(_) => {
                parser.errors.push(FieldError::new(
                    "workflow.trigger_data_json_schema",
                    "must be a JSON schema object",
                ));
                None
            }
        };
        let settings = source.get("settings").and_then(Value::as_object);
        let flag = |key: &str| {
            settings
                .and_then(|s| s.get(key))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let steps = parser.steps(source.get("steps"), "workflow.steps", 0);
        if parser.errors.is_empty() {
            Ok(WorkflowDefinition {
                name,
                categories,
                program: program::compile(&steps),
                steps,
                conditions,
                trigger_frequency,
                trigger_data_json_schema,
                override_preferences: flag("override_preferences"),
                is_commercial: flag("is_commercial"),
                source: source.clone(),
            })
        } else {
            Err(parser.errors)
        }
    }

    /// The step with this ref, anywhere in the workflow.
    pub fn find_step(&self, step_ref: &str) -> Option<(usize, &Step)> {
        self.program
            .iter()
            .enumerate()
            .find_map(|(i, node)| match node {
                Node::Step(step) if step.step_ref == step_ref => Some((i, step)),
                _ => None,
            })
    }
}

fn parse_channel_step(
    step: &Map<String, Value>,
    step_ref: &str,
    field: &str,
    channel_type_of: ChannelTypeOf<'_>,
) -> Result<ChannelStep, FieldError> {
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
        steps::check_method(template.get("method"), &format!("{field}.template.method"))?;
    }
    Ok(ChannelStep {
        step_ref: step_ref.to_string(),
        channel_key,
        template,
    })
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
                {"type": "update_user", "ref": "d"},
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
    fn parses_every_function_step() {
        let def = WorkflowDefinition::parse(
            &json!({"name": "W", "trigger_frequency": "once_per_recipient",
              "conditions": {"all": [{"variable": "data.go", "operator": "equal_to", "argument": "true"}]},
              "steps": [
                {"type": "delay", "ref": "d", "settings": {"delay_for": {"unit": "minutes", "value": 5}}},
                {"type": "batch", "ref": "b", "settings": {"batch_window": {"unit": "seconds", "value": 30},
                    "batch_window_type": "sliding", "batch_window_extension_limit": {"unit": "hours", "value": 1},
                    "batch_key": "page_id", "batch_items_max_limit": 50, "batch_order": "desc",
                    "batch_execution_mode": "flush_leading"}},
                {"type": "throttle", "ref": "t", "settings": {"throttle_window": {"unit": "hours", "value": 1}, "throttle_limit": 2}},
                {"type": "http_fetch", "ref": "f", "settings": {"method": "get", "url": "https://example.com/{{ data.id }}"}},
                {"type": "update_data", "ref": "u", "settings": {"data": "{\"a\": 1}"}},
                {"type": "trigger_workflow", "ref": "tw", "settings": {"workflow_key": "child"}},
                {"type": "wait_for_event", "ref": "w", "settings": {
                    "event": {"event_type": "message", "event_key": "read", "source_type": "workflow", "source_key": "W"},
                    "match_conditions": [{"operator": "and", "conditions": [{"variable": "event.step_ref", "operator": "equal_to", "argument": "s1"}]}],
                    "expires_after": {"unit": "days", "value": 1}, "on_timeout": "continue"}},
                {"type": "random_cohort", "ref": "rc", "cohort_branches": [
                    {"name": "a", "percentage": 33.3, "steps": []},
                    {"name": "b", "percentage": "66.7", "steps": [
                        {"type": "channel", "ref": "s1", "channel_key": "in-app", "template": {"markdown_body": "x"}}]}
                ]}
            ]}),
            &channels,
        )
        .expect("valid workflow");
        assert_eq!(def.trigger_frequency, TriggerFrequency::OncePerRecipient);
        assert!(def.conditions.is_some());
        let StepKind::Batch(batch) = &def.steps[1].kind else {
            panic!("batch expected");
        };
        assert!(batch.flush_leading && batch.order_desc);
        assert_eq!(batch.window_type, BatchWindowType::Sliding);
        let StepKind::WaitForEvent(wait) = &def.steps[6].kind else {
            panic!("wait expected");
        };
        assert!(wait.continue_on_match && wait.continue_on_timeout);
        assert!(def.find_step("s1").is_some());
    }

    #[test]
    fn refuses_invalid_function_settings() {
        let cases = [
            (
                json!({"type": "delay", "ref": "d", "settings": {}}),
                "workflow.steps[0].settings.delay_for",
            ),
            (
                json!({"type": "batch", "ref": "b", "settings": {"batch_window": {"unit": "seconds", "value": 1}, "batch_window_type": "sliding"}}),
                "workflow.steps[0].settings.batch_window_extension_limit",
            ),
            (
                json!({"type": "batch", "ref": "b", "settings": {"batch_window": {"unit": "seconds", "value": 1}, "batch_items_max_limit": 1}}),
                "workflow.steps[0].settings.batch_items_max_limit",
            ),
            (
                json!({"type": "throttle", "ref": "t", "settings": {"throttle_limit": 2}}),
                "workflow.steps[0].settings.throttle_window",
            ),
            (
                json!({"type": "http_fetch", "ref": "f", "settings": {"method": "trace", "url": "u"}}),
                "workflow.steps[0].settings.method",
            ),
            (
                json!({"type": "wait_for_event", "ref": "w", "settings": {"event": {"event_type": "message", "event_key": "read", "source_key": "x"}}}),
                "workflow.steps[0].settings.match_conditions",
            ),
            (
                json!({"type": "random_cohort", "ref": "r", "cohort_branches": [{"percentage": 50}, {"percentage": 40}]}),
                "workflow.steps[0].cohort_branches",
            ),
            (
                json!({"type": "branch", "ref": "br", "branches": [{"name": "x", "steps": []}, {"name": "y", "steps": []}]}),
                "workflow.steps[0].branches[0].conditions",
            ),
        ];
        for (step, field) in cases {
            let errors =
                WorkflowDefinition::parse(&json!({"name": "W", "steps": [step]}), &channels)
                    .expect_err("invalid step");
            assert_eq!(errors[0].field, field, "{errors:?}");
        }
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
