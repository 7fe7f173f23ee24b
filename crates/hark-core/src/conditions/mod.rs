//! Workflow conditions: Knock's `variable` / `operator` / `argument` checks and the
//! `all` / `any` groups that combine them, as used by step conditions and branches.
//!
//! Everything here is pure: variables come from a [`ConditionScope`] and "now" is passed in,
//! so evaluation is deterministic and the engine decides where the data lives.

mod argument;
mod evaluate;
mod operators;
mod parse;
mod path;
mod status;
mod timestamps;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use serde::Serialize;
use serde_json::Value;

use crate::Millis;

pub use argument::SCOPE_NAMESPACES;
pub use path::resolve_path;
pub use timestamps::parse_timestamp;

/// A condition operator (Knock's `Condition.operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    EqualTo,
    NotEqualTo,
    GreaterThan,
    LessThan,
    GreaterThanOrEqualTo,
    LessThanOrEqualTo,
    Contains,
    NotContains,
    Empty,
    NotEmpty,
    Exists,
    NotExists,
    ContainsAll,
    NotContainsAll,
    IsTimestamp,
    IsNotTimestamp,
    IsTimestampOnOrAfter,
    IsTimestampBefore,
    IsTimestampOnOrAfterDate,
    IsTimestampBeforeDate,
    IsTimestampBetween,
    IsBetween,
    IsAudienceMember,
    IsNotAudienceMember,
    IsTimestampBeforeNow,
    IsTimestampOnOrAfterNow,
}

impl Operator {
    /// Every operator, in wire-enum order.
    pub const ALL: [Operator; 26] = [
        Operator::EqualTo,
        Operator::NotEqualTo,
        Operator::GreaterThan,
        Operator::LessThan,
        Operator::GreaterThanOrEqualTo,
        Operator::LessThanOrEqualTo,
        Operator::Contains,
        Operator::NotContains,
        Operator::Empty,
        Operator::NotEmpty,
        Operator::Exists,
        Operator::NotExists,
        Operator::ContainsAll,
        Operator::NotContainsAll,
        Operator::IsTimestamp,
        Operator::IsNotTimestamp,
        Operator::IsTimestampOnOrAfter,
        Operator::IsTimestampBefore,
        Operator::IsTimestampOnOrAfterDate,
        Operator::IsTimestampBeforeDate,
        Operator::IsTimestampBetween,
        Operator::IsBetween,
        Operator::IsAudienceMember,
        Operator::IsNotAudienceMember,
        Operator::IsTimestampBeforeNow,
        Operator::IsTimestampOnOrAfterNow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::EqualTo => "equal_to",
            Operator::NotEqualTo => "not_equal_to",
            Operator::GreaterThan => "greater_than",
            Operator::LessThan => "less_than",
            Operator::GreaterThanOrEqualTo => "greater_than_or_equal_to",
            Operator::LessThanOrEqualTo => "less_than_or_equal_to",
            Operator::Contains => "contains",
            Operator::NotContains => "not_contains",
            Operator::Empty => "empty",
            Operator::NotEmpty => "not_empty",
            Operator::Exists => "exists",
            Operator::NotExists => "not_exists",
            Operator::ContainsAll => "contains_all",
            Operator::NotContainsAll => "not_contains_all",
            Operator::IsTimestamp => "is_timestamp",
            Operator::IsNotTimestamp => "is_not_timestamp",
            Operator::IsTimestampOnOrAfter => "is_timestamp_on_or_after",
            Operator::IsTimestampBefore => "is_timestamp_before",
            Operator::IsTimestampOnOrAfterDate => "is_timestamp_on_or_after_date",
            Operator::IsTimestampBeforeDate => "is_timestamp_before_date",
            Operator::IsTimestampBetween => "is_timestamp_between",
            Operator::IsBetween => "is_between",
            Operator::IsAudienceMember => "is_audience_member",
            Operator::IsNotAudienceMember => "is_not_audience_member",
            Operator::IsTimestampBeforeNow => "is_timestamp_before_now",
            Operator::IsTimestampOnOrAfterNow => "is_timestamp_on_or_after_now",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Operator::ALL.into_iter().find(|op| op.as_str() == text)
    }

    /// Whether the operator compares against an argument at all. The others look only at
    /// the variable (and the clock) and ignore any argument they are given.
    pub fn takes_argument(self) -> bool {
        !matches!(
            self,
            Operator::Empty
                | Operator::NotEmpty
                | Operator::Exists
                | Operator::NotExists
                | Operator::IsTimestamp
                | Operator::IsNotTimestamp
                | Operator::IsTimestampBeforeNow
                | Operator::IsTimestampOnOrAfterNow
        )
    }
}

/// One check: `variable` `operator` `argument`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// A path into the scope, such as `data.order.total` or `refs.email_1.delivery_status`.
    pub variable: String,
    pub operator: Operator,
    /// The argument as written: a JSON value, or a string that is decoded or resolved when
    /// the condition is evaluated.
    pub argument: Option<Value>,
}

/// An entry of an `any` group: a single condition or a nested `all` group.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyItem {
    Condition(Condition),
    All(Vec<Condition>),
}

/// `{"all": [...]}` (every condition must pass) or `{"any": [...]}` (at least one entry
/// must pass).
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionGroup {
    All(Vec<Condition>),
    Any(Vec<AnyItem>),
}

/// Where variables come from.
pub trait ConditionScope {
    /// Resolves a dotted path such as `data.order.total`, `recipient.email`,
    /// `data.items[0].name` or `refs.email_step.delivery_status`; `None` when nothing is
    /// there.
    ///
    /// For message status conditions, `refs.<step_ref>.delivery_status` should hold the
    /// highest delivery status name of the step's messages (`"sent"`, `"delivered"`, ...,
    /// or `"skipped"` when the step was skipped), and `refs.<step_ref>.engagement_status`
    /// the list of engagement status names the message has reached (`["seen", "read"]`).
    /// Leave them missing when there is no message to judge: every status condition then
    /// fails.
    fn resolve(&self, path: &str) -> Option<Value>;

    /// Whether the scope's recipient is in the audience `audience_key`; `None` when that is
    /// unknown, which conditions treat as "not a member".
    fn is_audience_member(&self, audience_key: &str) -> Option<bool>;
}

/// A scope over one JSON object whose top-level keys are the namespaces (`data`,
/// `recipient`, `actor`, `tenant`, `vars`, `workflow`, `run`, `refs`, ...), with audience
/// membership taken from a list of audience keys.
#[derive(Debug, Clone, Copy)]
pub struct JsonScope<'a> {
    pub root: &'a Value,
    pub audiences: &'a [String],
}

impl ConditionScope for JsonScope<'_> {
    fn resolve(&self, path: &str) -> Option<Value> {
        resolve_path(self.root, path)
    }

    fn is_audience_member(&self, audience_key: &str) -> Option<bool> {
        Some(self.audiences.iter().any(|key| key == audience_key))
    }
}

/// One condition's inputs and outcome, as the run log records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionResult {
    pub variable: String,
    pub operator: &'static str,
    /// The argument as written in the workflow.
    pub argument: Option<Value>,
    /// What the variable resolved to; null when it is missing. For audience operators,
    /// the membership that was looked up (null when unknown).
    pub resolved_variable: Value,
    /// What the argument was compared as: the decoded literal, the value behind a dynamic
    /// path (null when missing), or the instant a relative time stands for. `None` when the
    /// operator takes no argument or none was given.
    pub resolved_argument: Option<Value>,
    pub passed: bool,
}

/// The outcome of a group, with every condition's result in written order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub passed: bool,
    pub results: Vec<ConditionResult>,
}

impl Condition {
    pub fn evaluate(&self, scope: &dyn ConditionScope, now: Millis) -> ConditionResult {
        let outcome = evaluate::evaluate(self, scope, now);
        ConditionResult {
            variable: self.variable.clone(),
            operator: self.operator.as_str(),
            argument: self.argument.clone(),
            resolved_variable: outcome.variable,
            resolved_argument: outcome.argument,
            passed: outcome.passed,
        }
    }
}

impl ConditionGroup {
    /// Evaluates every condition, without stopping early, so the run log can show each
    /// result; `passed` follows the group's all/any logic. Empty groups pass.
    pub fn evaluate(&self, scope: &dyn ConditionScope, now: Millis) -> Evaluation {
        match self {
            ConditionGroup::All(conditions) => {
                let results = evaluate_all(conditions, scope, now);
                Evaluation {
                    passed: results.iter().all(|r| r.passed),
                    results,
                }
            }
            ConditionGroup::Any(items) => {
                let mut passed = items.is_empty();
                let mut results = Vec::new();
                for item in items {
                    let item_results = match item {
                        AnyItem::Condition(condition) => vec![condition.evaluate(scope, now)],
                        AnyItem::All(conditions) => evaluate_all(conditions, scope, now),
                    };
                    passed |= item_results.iter().all(|r| r.passed);
                    results.extend(item_results);
                }
                Evaluation { passed, results }
            }
        }
    }
}

fn evaluate_all(
    conditions: &[Condition],
    scope: &dyn ConditionScope,
    now: Millis,
) -> Vec<ConditionResult> {
    conditions
        .iter()
        .map(|condition| condition.evaluate(scope, now))
        .collect()
}
