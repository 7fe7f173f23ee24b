//! Settings of the function steps, parsed from Knock's `Workflow*Step` shapes.

use serde_json::{Map, Value};

use super::{Step, StepParser};
use crate::conditions::{AnyItem, Condition, ConditionGroup};
use crate::recipient::FieldError;
use crate::schedule::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct DelaySettings {
    pub delay_for: Option<Duration>,
    /// A path (`data.x`, `recipient.x`, …) to a timestamp, duration or window rule. With
    /// `delay_for` too, the delay is relative to that timestamp.
    pub delay_until_field_path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchWindowType {
    Fixed,
    Sliding,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    /// A data path, or a Liquid template when it contains `{{`.
    pub batch_key: Option<String>,
    pub window: Option<Duration>,
    pub until_field_path: Option<String>,
    pub window_type: BatchWindowType,
    pub extension_limit: Option<Duration>,
    pub items_max_limit: Option<i64>,
    pub render_limit: i64,
    /// `desc`: render the last activities instead of the first.
    pub order_desc: bool,
    pub flush_leading: bool,
    /// `latest`: the batch spans workflow versions and continues on the newest one.
    pub version_latest: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleSettings {
    pub throttle_key: Option<String>,
    pub limit: i64,
    pub window: Option<Duration>,
    pub window_field_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FetchSettings {
    /// The request template (`method`, `url`, `headers`, `query_params`, `body`), each a
    /// Liquid template.
    pub template: Map<String, Value>,
    /// Where in `data` the response goes; the top level when absent.
    pub response_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TriggerWorkflowSettings {
    /// Each field is a Liquid template; absent ones take Knock's defaults.
    pub workflow_key: String,
    pub recipients: Option<String>,
    pub actor: Option<String>,
    pub tenant: Option<String>,
    pub data: Option<String>,
    pub cancellation_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpdateDataSettings {
    /// A string (JSON or Liquid rendering to a JSON object) or an object whose string
    /// values are Liquid templates.
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitEvent {
    /// A lifecycle event of a message from workflow `source_key` for the same recipient.
    Message {
        event_key: String,
        source_key: String,
    },
    /// `started` or `completed` of another workflow's run for the same recipient.
    Workflow {
        event_key: String,
        source_key: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaitSettings {
    pub event: WaitEvent,
    /// Groups are alternatives; conditions within a group must all hold.
    pub match_conditions: Option<ConditionGroup>,
    pub expires_after: Duration,
    pub continue_on_match: bool,
    pub continue_on_timeout: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub name: String,
    /// `None` for the default branch, which always matches.
    pub conditions: Option<ConditionGroup>,
    pub steps: Vec<Step>,
    pub terminates: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CohortBranch {
    pub name: String,
    /// Tenths of a percent, so that 33.3 % is exact.
    pub per_mille: u32,
    pub steps: Vec<Step>,
    pub terminates: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CohortSettings {
    /// A path or Liquid template; the recipient id when absent.
    pub cohort_key: Option<String>,
    pub branches: Vec<CohortBranch>,
}

const MESSAGE_EVENTS: &[&str] = &[
    "created",
    "queued",
    "sent",
    "not_sent",
    "delivered",
    "delivery_attempted",
    "undelivered",
    "bounced",
    "read",
    "unread",
    "seen",
    "unseen",
    "archived",
    "unarchived",
    "interacted",
    "link_clicked",
];

fn settings<'a>(
    step: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a Map<String, Value>, FieldError> {
    step.get("settings")
        .and_then(Value::as_object)
        .ok_or_else(|| FieldError::new(format!("{field}.settings"), "must be an object"))
}

fn opt_string(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, FieldError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(
            format!("{field}.{key}"),
            "must be a string",
        )),
    }
}

fn opt_duration(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<Duration>, FieldError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Duration::from_value(v).map(Some).ok_or_else(|| {
            FieldError::new(
                format!("{field}.{key}"),
                "must be a duration like {\"unit\": \"minutes\", \"value\": 5}",
            )
        }),
    }
}

fn opt_int(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, FieldError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(FieldError::new(
                format!("{field}.{key}"),
                format!(
                    "must be an integer between {} and {}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

fn one_of<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, FieldError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.as_str())),
        Some(_) => Err(FieldError::new(
            format!("{field}.{key}"),
            format!("must be one of {}", allowed.join(", ")),
        )),
    }
}

pub(crate) fn check_method(value: Option<&Value>, field: &str) -> Result<(), FieldError> {
    let method = value
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be one of get, post, put, delete, patch",
        ))
    }
}

pub(crate) fn delay(step: &Map<String, Value>, field: &str) -> Result<DelaySettings, FieldError> {
    let s = settings(step, field)?;
    let field = format!("{field}.settings");
    let delay_for = opt_duration(s, "delay_for", &field)?;
    let delay_until_field_path = opt_string(s, "delay_until_field_path", &field)?;
    if delay_for.is_none() && delay_until_field_path.is_none() {
        return Err(FieldError::new(
            format!("{field}.delay_for"),
            "a delay needs `delay_for`, `delay_until_field_path` or both",
        ));
    }
    Ok(DelaySettings {
        delay_for,
        delay_until_field_path,
    })
}

pub(crate) fn batch(step: &Map<String, Value>, field: &str) -> Result<BatchSettings, FieldError> {
    let s = settings(step, field)?;
    let field = format!("{field}.settings");
    let window = opt_duration(s, "batch_window", &field)?;
    let until_field_path = opt_string(s, "batch_until_field_path", &field)?;
    if window.is_none() && until_field_path.is_none() {
        return Err(FieldError::new(
            format!("{field}.batch_window"),
            "a batch needs `batch_window`, `batch_until_field_path` or both",
        ));
    }
    let window_type = match one_of(s, "batch_window_type", &field, &["fixed", "sliding"])? {
        Some("sliding") => BatchWindowType::Sliding,
        _ => BatchWindowType::Fixed,
    };
    let extension_limit = opt_duration(s, "batch_window_extension_limit", &field)?;
    if window_type == BatchWindowType::Sliding && extension_limit.is_none() {
        return Err(FieldError::new(
            format!("{field}.batch_window_extension_limit"),
            "a sliding window needs an extension limit",
        ));
    }
    Ok(BatchSettings {
        batch_key: opt_string(s, "batch_key", &field)?,
        window,
        until_field_path,
        window_type,
        extension_limit,
        items_max_limit: opt_int(s, "batch_items_max_limit", &field, 2..=1000)?,
        render_limit: opt_int(s, "batch_items_render_limit", &field, 1..=100)?.unwrap_or(10),
        order_desc: one_of(s, "batch_order", &field, &["asc", "desc"])? == Some("desc"),
        flush_leading: one_of(
            s,
            "batch_execution_mode",
            &field,
            &["accumulate", "flush_leading"],
        )? == Some("flush_leading"),
        // Configs that omit the mode hydrate as pinned, per the API reference.
        version_latest: one_of(s, "workflow_version_mode", &field, &["pinned", "latest"])?
            == Some("latest"),
    })
}

pub(crate) fn throttle(
    step: &Map<String, Value>,
    field: &str,
) -> Result<ThrottleSettings, FieldError> {
    let s = settings(step, field)?;
    let field = format!("{field}.settings");
    let window = opt_duration(s, "throttle_window", &field)?;
    let window_field_path = opt_string(s, "throttle_window_field_path", &field)?;
    if window.is_none() && window_field_path.is_none() {
        return Err(FieldError::new(
            format!("{field}.throttle_window"),
            "a throttle needs `throttle_window` or `throttle_window_field_path`",
        ));
    }
    Ok(ThrottleSettings {
        throttle_key: opt_string(s, "throttle_key", &field)?,
        limit: opt_int(s, "throttle_limit", &field, 1..=1_000_000)?.unwrap_or(1),
        window,
        window_field_path,
    })
}

pub(crate) fn fetch(step: &Map<String, Value>, field: &str) -> Result<FetchSettings, FieldError> {
    let s = settings(step, field)?;
    let field = format!("{field}.settings");
    if s.get("url")
        .and_then(Value::as_str)
        .is_none_or(|u| u.trim().is_empty())
    {
        return Err(FieldError::new(format!("{field}.url"), "can't be blank"));
    }
    check_method(s.get("method"), &format!("{field}.method"))?;
    for key in ["headers", "query_params"] {
        match s.get(key) {
            None | Some(Value::Null | Value::String(_) | Value::Array(_) | Value::Object(_)) => {}
            Some(_) => {
                return Err(FieldError::new(
                    format!("{field}.{key}"),
                    "must be a template string or a list of {key, value}",
                ))
            }
        }
    }
    opt_string(s, "body", &field)?;
    Ok(FetchSettings {
        template: s.clone(),
        response_path: opt_string(s, "response_path", &field)?,
    })
}

pub(crate) fn trigger_workflow(
    step: &Map<String, Value>,
    field: &str,
) -> Result<TriggerWorkflowSettings, FieldError> {
    let s = settings(step, field)?;
    let field = format!("{field}.settings");
    let Some(workflow_key) = opt_string(s, "workflow_key", &field)? else {
        return Err(FieldError::new(
            format!("{field}.workflow_key"),
            "can't be blank",
        ));
    };
    Ok(TriggerWorkflowSettings {
        workflow_key,
        recipients: opt_string(s, "recipients", &field)?,
        actor: opt_string(s, "actor", &field)?,
        tenant: opt_string(s, "tenant", &field)?,
        data: opt_string(s, "data", &field)?,
        cancellation_key: opt_string(s, "cancellation_key", &field)?,
    })
}

pub(crate) fn update_data(
    step: &Map<String, Value>,
    field: &str,
) -> Result<UpdateDataSettings, FieldError> {
    let s = settings(step, field)?;
    match s.get("data") {
        Some(data @ (Value::String(_) | Value::Object(_))) => {
            Ok(UpdateDataSettings { data: data.clone() })
        }
        _ => Err(FieldError::new(
            format!("{field}.settings.data"),
            "must be a JSON object or a template that renders one",
        )),
    }
}

fn condition_list(value: &Value, field: &str) -> Result<Vec<Condition>, FieldError> {
    let wrapped = serde_json::json!({ "all": value });
    match ConditionGroup::parse(&wrapped, field)? {
        ConditionGroup::All(conditions) => Ok(conditions),
        ConditionGroup::Any(_) => Err(FieldError::new(field, "must be a list of conditions")),
    }
}

pub(crate) fn wait_for_event(
    step: &Map<String, Value>,
    field: &str,
) -> Result<WaitSettings, FieldError> {
    let s = settings(step, field)?;
    let field = format!("{field}.settings");
    let Some(event) = s.get("event").and_then(Value::as_object) else {
        return Err(FieldError::new(
            format!("{field}.event"),
            "must be an object",
        ));
    };
    let event_field = format!("{field}.event");
    let source_key = || {
        opt_string(event, "source_key", &event_field)?
            .ok_or_else(|| FieldError::new(format!("{event_field}.source_key"), "can't be blank"))
    };
    let event = match event.get("event_type").and_then(Value::as_str) {
        Some("message") => {
            let event_key =
                one_of(event, "event_key", &event_field, MESSAGE_EVENTS)?.ok_or_else(|| {
                    FieldError::new(format!("{event_field}.event_key"), "can't be blank")
                })?;
            if let Some(source_type) = one_of(
                event,
                "source_type",
                &event_field,
                &["workflow", "broadcast", "guide"],
            )? {
                if source_type != "workflow" {
                    return Err(FieldError::new(
                        format!("{event_field}.source_type"),
                        "only workflow message sources are supported by this server",
                    ));
                }
            }
            WaitEvent::Message {
                event_key: event_key.to_string(),
                source_key: source_key()?,
            }
        }
        Some("workflow") => {
            let event_key = one_of(event, "event_key", &event_field, &["started", "completed"])?
                .ok_or_else(|| {
                    FieldError::new(format!("{event_field}.event_key"), "can't be blank")
                })?;
            WaitEvent::Workflow {
                event_key: event_key.to_string(),
                source_key: source_key()?,
            }
        }
        Some(other @ ("integration_source" | "source" | "audience" | "recipient")) => {
            return Err(FieldError::new(
                format!("{event_field}.event_type"),
                format!("waiting for `{other}` events is not supported by this server yet"),
            ))
        }
        _ => {
            return Err(FieldError::new(
                format!("{event_field}.event_type"),
                "must be one of message, workflow",
            ))
        }
    };
    let match_conditions = match s.get("match_conditions") {
        None | Some(Value::Null) => None,
        Some(Value::Array(groups)) => {
            let mut alternatives = Vec::new();
            for (i, group) in groups.iter().enumerate() {
                let group_field = format!("{field}.match_conditions[{i}]");
                let conditions = group.get("conditions").ok_or_else(|| {
                    FieldError::new(format!("{group_field}.conditions"), "can't be blank")
                })?;
                alternatives.push(AnyItem::All(condition_list(
                    conditions,
                    &format!("{group_field}.conditions"),
                )?));
            }
            (!alternatives.is_empty()).then_some(ConditionGroup::Any(alternatives))
        }
        Some(_) => {
            return Err(FieldError::new(
                format!("{field}.match_conditions"),
                "must be a list of condition groups",
            ))
        }
    };
    if match_conditions.is_none() {
        return Err(FieldError::new(
            format!("{field}.match_conditions"),
            "message and workflow events need at least one match condition",
        ));
    }
    // The dashboard's default wait is 15 minutes; Knock allows at most 30 days.
    let expires_after = opt_duration(s, "expires_after", &field)?.unwrap_or(Duration {
        unit: crate::schedule::DurationUnit::Minutes,
        value: 15,
    });
    let continue_on = |key: &str, default: bool| -> Result<bool, FieldError> {
        Ok(match one_of(s, key, &field, &["continue", "halt"])? {
            Some(action) => action == "continue",
            None => default,
        })
    };
    Ok(WaitSettings {
        event,
        match_conditions,
        expires_after,
        continue_on_match: continue_on("on_match", true)?,
        continue_on_timeout: continue_on("on_timeout", false)?,
    })
}

fn terminates(map: &Map<String, Value>, field: &str) -> Result<bool, FieldError> {
    match map.get("terminates") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(FieldError::new(
            format!("{field}.terminates"),
            "must be a boolean",
        )),
    }
}

pub(crate) fn branches(
    parser: &mut StepParser<'_>,
    step: &Map<String, Value>,
    field: &str,
    depth: usize,
) -> Result<Vec<Branch>, FieldError> {
    let Some(Value::Array(items)) = step.get("branches") else {
        return Err(FieldError::new(
            format!("{field}.branches"),
            "must be a list of branches",
        ));
    };
    if items.is_empty() || items.len() > 10 {
        return Err(FieldError::new(
            format!("{field}.branches"),
            "must have between 1 and 10 branches, the default included",
        ));
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("{field}.branches[{i}]");
        let Some(branch) = item.as_object() else {
            return Err(FieldError::new(field, "must be an object"));
        };
        let conditions = match branch.get("conditions") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) if map.is_empty() => None,
            Some(v) => Some(ConditionGroup::parse(v, &format!("{field}.conditions"))?),
        };
        if conditions.is_none() && i + 1 != items.len() {
            return Err(FieldError::new(
                format!("{field}.conditions"),
                "only the last (default) branch may be without conditions",
            ));
        }
        out.push(Branch {
            name: branch
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            conditions,
            steps: parser.steps(
                branch.get("steps").or(Some(&Value::Array(Vec::new()))),
                &format!("{field}.steps"),
                depth + 1,
            ),
            terminates: terminates(branch, &field)?,
        });
    }
    Ok(out)
}

/// A percentage with at most one decimal, as tenths of a percent.
fn per_mille(value: Option<&Value>) -> Option<u32> {
    let number = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    let tenths = number * 10.0;
    if !(0.0..=1000.0).contains(&tenths) || (tenths - tenths.round()).abs() > 1e-6 {
        return None;
    }
    Some(tenths.round() as u32)
}

pub(crate) fn cohorts(
    parser: &mut StepParser<'_>,
    step: &Map<String, Value>,
    field: &str,
    depth: usize,
) -> Result<CohortSettings, FieldError> {
    let Some(Value::Array(items)) = step.get("cohort_branches") else {
        return Err(FieldError::new(
            format!("{field}.cohort_branches"),
            "must be a list of cohorts",
        ));
    };
    if !(2..=10).contains(&items.len()) {
        return Err(FieldError::new(
            format!("{field}.cohort_branches"),
            "must have between 2 and 10 cohorts",
        ));
    }
    let mut branches = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("{field}.cohort_branches[{i}]");
        let Some(branch) = item.as_object() else {
            return Err(FieldError::new(field, "must be an object"));
        };
        let per_mille = per_mille(branch.get("percentage")).ok_or_else(|| {
            FieldError::new(
                format!("{field}.percentage"),
                "must be a number between 0 and 100 with at most one decimal",
            )
        })?;
        branches.push(CohortBranch {
            name: branch
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            per_mille,
            steps: parser.steps(
                branch.get("steps").or(Some(&Value::Array(Vec::new()))),
                &format!("{field}.steps"),
                depth + 1,
            ),
            terminates: terminates(branch, &field)?,
        });
    }
    if branches.iter().map(|b| b.per_mille).sum::<u32>() != 1000 {
        return Err(FieldError::new(
            format!("{field}.cohort_branches"),
            "percentages must sum to 100",
        ));
    }
    Ok(CohortSettings {
        cohort_key: opt_string(step, "cohort_key", field)?,
        branches,
    })
}
