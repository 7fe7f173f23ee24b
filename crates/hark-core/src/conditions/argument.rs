//! Telling a static argument from a dynamic one, and resolving either to a value.
//!
//! Arguments travel as strings on Knock's wire. A string argument is read, in order, as:
//!
//! 1. a `$message.<case>` status token (message status conditions);
//! 2. a Liquid-style reference `{{ recipient.plan }}`, which names a path in any namespace;
//! 3. a bare path whose first segment is one of the condition-scope namespaces
//!    (`data.threshold`, `recipient.plan`, `actor.id`, ...);
//! 4. JSON, so `"5"` is the number 5, `"true"` a boolean, `"[\"a\",\"b\"]"` a list and
//!    `"\"data.x\""` the literal text `data.x` (the escape hatch for text that would
//!    otherwise read as a path);
//! 5. otherwise, the text itself.
//!
//! Restricting bare paths to the documented namespaces keeps ordinary text with a dot in it
//! (`"v1.2"`, `"example.com"`) literal. Non-string JSON arguments are always literal.

use serde_json::Value;

use super::path::parse_path;
use super::status::StatusCase;
use super::ConditionScope;

/// The namespaces a bare dynamic argument may start with: the condition scope Knock
/// documents, plus `event` for wait-for-event match conditions.
pub const SCOPE_NAMESPACES: &[&str] = &[
    "data",
    "recipient",
    "actor",
    "tenant",
    "vars",
    "workflow",
    "run",
    "refs",
    "event",
];

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Argument<'a> {
    Absent,
    Literal(Value),
    Dynamic(&'a str),
    Status(StatusCase),
}

pub(super) fn classify(argument: Option<&Value>) -> Argument<'_> {
    match argument {
        None => Argument::Absent,
        Some(Value::String(text)) => classify_text(text),
        Some(other) => Argument::Literal(other.clone()),
    }
}

pub(super) fn classify_text(text: &str) -> Argument<'_> {
    if let Some(Some(case)) = StatusCase::parse_token(text) {
        return Argument::Status(case);
    }
    if let Some(path) = liquid_reference(text) {
        return Argument::Dynamic(path);
    }
    if is_scope_path(text) {
        return Argument::Dynamic(text);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(decoded) => Argument::Literal(decoded),
        Err(_) => Argument::Literal(Value::String(text.to_owned())),
    }
}

/// The path inside `{{ path }}`, when the braces hold nothing but a path (no filters).
fn liquid_reference(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    parse_path(inner).map(|_| inner)
}

fn is_scope_path(text: &str) -> bool {
    match text.split_once('.') {
        Some((namespace, _)) => SCOPE_NAMESPACES.contains(&namespace) && parse_path(text).is_some(),
        None => false,
    }
}

/// The argument's value: the literal itself, or what the path resolves to. `None` for an
/// absent argument or a path that leads nowhere.
pub(super) fn resolve(argument: &Argument<'_>, scope: &dyn ConditionScope) -> Option<Value> {
    match argument {
        Argument::Absent | Argument::Status(_) => None,
        Argument::Literal(value) => Some(value.clone()),
        Argument::Dynamic(path) => scope.resolve(path),
    }
}
