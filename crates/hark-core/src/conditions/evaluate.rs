//! Evaluating a single condition against a scope.

use std::cmp::Ordering;

use serde_json::Value;

use super::argument::{classify, classify_text, resolve, Argument};
use super::operators::{
    compare, contains, contains_all, is_between, is_empty, loosely_equal, scalar_text,
};
use super::timestamps::{day_start, parse_instant_value, parse_relative, Instant, DAY_MS};
use super::{Condition, ConditionScope, Operator};
use crate::Millis;

pub(super) struct Outcome {
    pub passed: bool,
    pub variable: Value,
    pub argument: Option<Value>,
}

pub(super) fn evaluate(condition: &Condition, scope: &dyn ConditionScope, now: Millis) -> Outcome {
    let operator = condition.operator;
    if matches!(
        operator,
        Operator::IsAudienceMember | Operator::IsNotAudienceMember
    ) {
        return audience(condition, scope);
    }

    let variable = scope.resolve(&condition.variable);
    let logged_variable = variable.clone().unwrap_or(Value::Null);
    // Knock compares a variable that isn't there as the empty string. The presence checks
    // (`exists`, `empty`) look at `variable` itself and can still tell the two apart.
    let value = variable
        .clone()
        .unwrap_or_else(|| Value::String(String::new()));

    let (passed, argument) = match operator {
        Operator::Empty => (is_empty(variable.as_ref()), None),
        Operator::NotEmpty => (!is_empty(variable.as_ref()), None),
        Operator::Exists => (variable.as_ref().is_some_and(|v| !v.is_null()), None),
        Operator::NotExists => (variable.as_ref().is_none_or(Value::is_null), None),
        Operator::IsTimestamp => (parse_instant_value(&value).is_some(), None),
        Operator::IsNotTimestamp => (parse_instant_value(&value).is_none(), None),
        Operator::IsTimestampBeforeNow => (
            parse_instant_value(&value).is_some_and(|at| at.ms < now),
            None,
        ),
        Operator::IsTimestampOnOrAfterNow => (
            parse_instant_value(&value).is_some_and(|at| at.ms >= now),
            None,
        ),
        Operator::IsTimestampBefore
        | Operator::IsTimestampOnOrAfter
        | Operator::IsTimestampBeforeDate
        | Operator::IsTimestampOnOrAfterDate => {
            let (logged, bound) = timestamp_argument(condition.argument.as_ref(), scope, now);
            let at = parse_instant_value(&value);
            (compare_instants(operator, at, bound), logged)
        }
        Operator::IsTimestampBetween => {
            let (logged, pair) = pair_argument(condition.argument.as_ref(), scope);
            let passed = match (parse_instant_value(&value), pair) {
                (Some(at), Some((start, end))) => timestamp_between(at, &start, &end),
                _ => false,
            };
            (passed, logged)
        }
        Operator::IsBetween => {
            let (logged, pair) = pair_argument(condition.argument.as_ref(), scope);
            let passed = pair.is_some_and(|(low, high)| is_between(&value, &low, &high));
            (passed, logged)
        }
        Operator::EqualTo
        | Operator::NotEqualTo
        | Operator::GreaterThan
        | Operator::LessThan
        | Operator::GreaterThanOrEqualTo
        | Operator::LessThanOrEqualTo
        | Operator::Contains
        | Operator::NotContains
        | Operator::ContainsAll
        | Operator::NotContainsAll => {
            let argument = classify(condition.argument.as_ref());
            if let Argument::Status(case) = argument {
                return Outcome {
                    passed: case.evaluate(operator, variable.as_ref()),
                    variable: logged_variable,
                    argument: condition.argument.clone(),
                };
            }
            let resolved = resolve(&argument, scope);
            let logged = logged_argument(&argument, resolved.as_ref());
            // A dynamic argument that resolves to nothing falls back to "" like a variable;
            // an argument that was never given compares as null.
            let operand = match (&argument, resolved) {
                (Argument::Absent, _) => Value::Null,
                (_, Some(resolved)) => resolved,
                (_, None) => Value::String(String::new()),
            };
            (compare_values(operator, &value, &operand), logged)
        }
        // Audience checks never read the variable, so they were answered before it was
        // resolved.
        Operator::IsAudienceMember | Operator::IsNotAudienceMember => (false, None),
    };
    Outcome {
        passed,
        variable: logged_variable,
        argument,
    }
}

fn compare_values(operator: Operator, value: &Value, operand: &Value) -> bool {
    let ordered =
        |accept: &[Ordering]| compare(value, operand).is_some_and(|o| accept.contains(&o));
    match operator {
        Operator::EqualTo => loosely_equal(value, operand),
        Operator::NotEqualTo => !loosely_equal(value, operand),
        Operator::GreaterThan => ordered(&[Ordering::Greater]),
        Operator::GreaterThanOrEqualTo => ordered(&[Ordering::Greater, Ordering::Equal]),
        Operator::LessThan => ordered(&[Ordering::Less]),
        Operator::LessThanOrEqualTo => ordered(&[Ordering::Less, Ordering::Equal]),
        Operator::Contains => contains(value, operand),
        Operator::NotContains => !contains(value, operand),
        Operator::ContainsAll => contains_all(value, operand),
        Operator::NotContainsAll => !contains_all(value, operand),
        _ => false,
    }
}

fn logged_argument(argument: &Argument<'_>, resolved: Option<&Value>) -> Option<Value> {
    match argument {
        Argument::Absent => None,
        _ => Some(resolved.cloned().unwrap_or(Value::Null)),
    }
}

/// The bound of a timestamp comparison: a relative time measured from `now`, an absolute
/// timestamp, or a dynamic path holding one.
fn timestamp_argument(
    raw: Option<&Value>,
    scope: &dyn ConditionScope,
    now: Millis,
) -> (Option<Value>, Option<Instant>) {
    if let Some(Value::String(text)) = raw {
        if let Some(offset) = parse_relative(text) {
            let at = now.checked_add(offset);
            let logged = at.map_or(Value::Null, instant_text);
            return (
                Some(logged),
                at.map(|ms| Instant {
                    ms,
                    date_only: false,
                }),
            );
        }
    }
    let argument = classify(raw);
    let resolved = resolve(&argument, scope);
    let bound = resolved.as_ref().and_then(parse_instant_value);
    (logged_argument(&argument, resolved.as_ref()), bound)
}

fn instant_text(ms: Millis) -> Value {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(_) => Value::String(crate::time::rfc3339(ms)),
        Err(_) => Value::from(ms),
    }
}

fn compare_instants(operator: Operator, at: Option<Instant>, bound: Option<Instant>) -> bool {
    let (Some(at), Some(bound)) = (at, bound) else {
        return false;
    };
    match operator {
        Operator::IsTimestampBefore => at.ms < bound.ms,
        Operator::IsTimestampOnOrAfter => at.ms >= bound.ms,
        // The date operators compare calendar days in UTC: a run has no single time zone
        // to judge "the same day" by, and UTC matches how bare dates are read.
        Operator::IsTimestampBeforeDate | Operator::IsTimestampOnOrAfterDate => {
            let (Some(day), Some(bound_day)) = (day_start(at.ms), day_start(bound.ms)) else {
                return false;
            };
            if operator == Operator::IsTimestampBeforeDate {
                day < bound_day
            } else {
                day >= bound_day
            }
        }
        _ => false,
    }
}

/// Both ends are inclusive. An end written as a bare date covers that whole day, so
/// `["2025-01-01", "2025-12-31"]` includes the afternoon of December 31st, as anyone
/// reading the range would expect.
fn timestamp_between(at: Instant, start: &Value, end: &Value) -> bool {
    let (Some(start), Some(end)) = (parse_instant_value(start), parse_instant_value(end)) else {
        return false;
    };
    let within_end = if end.date_only {
        at.ms < end.ms.saturating_add(DAY_MS)
    } else {
        at.ms <= end.ms
    };
    start.ms <= at.ms && within_end
}

/// The `[start, end]` argument of the between operators. Each end may itself be a dynamic
/// path, and the whole argument may be a path to a two-item list.
fn pair_argument(
    raw: Option<&Value>,
    scope: &dyn ConditionScope,
) -> (Option<Value>, Option<(Value, Value)>) {
    let argument = classify(raw);
    let resolved = match &argument {
        Argument::Literal(Value::Array(items)) => Some(Value::Array(
            items
                .iter()
                .map(|item| resolve_bound(item, scope))
                .collect(),
        )),
        other => resolve(other, scope),
    };
    let pair = match &resolved {
        Some(Value::Array(items)) => match items.as_slice() {
            [start, end] => Some((start.clone(), end.clone())),
            _ => None,
        },
        _ => None,
    };
    (logged_argument(&argument, resolved.as_ref()), pair)
}

fn resolve_bound(item: &Value, scope: &dyn ConditionScope) -> Value {
    let Value::String(text) = item else {
        return item.clone();
    };
    match classify_text(text) {
        Argument::Dynamic(path) => scope.resolve(path).unwrap_or(Value::Null),
        Argument::Literal(value) => value,
        Argument::Absent | Argument::Status(_) => item.clone(),
    }
}

fn audience(condition: &Condition, scope: &dyn ConditionScope) -> Outcome {
    // The audience key is the argument. It is used as written rather than JSON-decoded,
    // since keys are identifiers and `"2024"` must stay the key "2024", not a number.
    let key = match (
        classify(condition.argument.as_ref()),
        condition.argument.as_ref(),
    ) {
        (Argument::Dynamic(path), _) => scope.resolve(path).as_ref().and_then(scalar_text),
        (Argument::Literal(Value::String(decoded)), _) => Some(decoded),
        (_, Some(Value::String(text))) => Some(text.clone()),
        (_, Some(other)) => scalar_text(other),
        (_, None) => None,
    };
    let membership = key
        .as_deref()
        .filter(|key| !key.is_empty())
        .and_then(|key| scope.is_audience_member(key));
    let member = membership == Some(true);
    Outcome {
        passed: if condition.operator == Operator::IsAudienceMember {
            member
        } else {
            !member
        },
        variable: membership.map_or(Value::Null, Value::Bool),
        argument: key.map(Value::String),
    }
}
