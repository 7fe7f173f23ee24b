//! Reading conditions from a workflow definition, with errors that name the exact field.

use serde_json::{Map, Value};

use super::argument::{classify, classify_text, Argument};
use super::operators::number_of;
use super::path::parse_path;
use super::status::StatusCase;
use super::timestamps::{
    parse_instant, parse_instant_value, parse_relative, DAY_MS, MIN_RELATIVE_MS,
};
use super::{AnyItem, Condition, ConditionGroup, Operator};
use crate::recipient::FieldError;

impl ConditionGroup {
    /// Parses `{"all": [...]}` or `{"any": [... | {"all": [...]}]}`. Errors name the field,
    /// e.g. `{field}.all[2].operator`.
    pub fn parse(value: &Value, field: &str) -> Result<Self, FieldError> {
        let Some(map) = value.as_object() else {
            return Err(FieldError::new(
                field,
                "must be an object with an `all` or `any` list",
            ));
        };
        let all = present(map, "all");
        let any = present(map, "any");
        match (all, any) {
            (Some(_), Some(_)) => Err(FieldError::new(
                field,
                "must have either `all` or `any`, not both",
            )),
            (Some(all), None) => parse_all(all, &child(field, "all")).map(ConditionGroup::All),
            (None, Some(any)) => parse_any(any, &child(field, "any")).map(ConditionGroup::Any),
            (None, None) => Err(FieldError::new(field, "must have an `all` or `any` list")),
        }
    }
}

impl Condition {
    /// Parses one `{variable, operator, argument}` object.
    pub fn parse(value: &Value, field: &str) -> Result<Self, FieldError> {
        let Some(map) = value.as_object() else {
            return Err(FieldError::new(field, "must be a condition object"));
        };

        let operator_field = child(field, "operator");
        let operator = match map.get("operator") {
            Some(Value::String(text)) => Operator::parse(text).ok_or_else(|| {
                FieldError::new(
                    &operator_field,
                    format!("`{text}` is not a condition operator"),
                )
            })?,
            None | Some(Value::Null) => {
                return Err(FieldError::new(operator_field, "can't be blank"))
            }
            Some(_) => return Err(FieldError::new(operator_field, "must be a string")),
        };

        let variable_field = child(field, "variable");
        let variable = match map.get("variable") {
            Some(Value::String(text)) => text.clone(),
            None | Some(Value::Null) => {
                return Err(FieldError::new(variable_field, "can't be blank"))
            }
            Some(_) => return Err(FieldError::new(variable_field, "must be a string")),
        };
        // Audience operators only look at the argument, so any variable text is accepted.
        let audience = matches!(
            operator,
            Operator::IsAudienceMember | Operator::IsNotAudienceMember
        );
        if !audience && parse_path(&variable).is_none() {
            return Err(FieldError::new(
                variable_field,
                "must be a path such as `data.order.total` or `recipient.email`",
            ));
        }

        let argument = map.get("argument").cloned();
        check_argument(operator, argument.as_ref(), &child(field, "argument"))?;

        Ok(Condition {
            variable,
            operator,
            argument,
        })
    }
}

fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|value| !value.is_null())
}

fn child(field: &str, name: &str) -> String {
    if field.is_empty() {
        name.to_owned()
    } else {
        format!("{field}.{name}")
    }
}

fn parse_all(value: &Value, field: &str) -> Result<Vec<Condition>, FieldError> {
    let Some(items) = value.as_array() else {
        return Err(FieldError::new(field, "must be a list of conditions"));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let item_field = format!("{field}[{index}]");
            if let Some(map) = item.as_object() {
                if present(map, "all").is_some() || present(map, "any").is_some() {
                    return Err(FieldError::new(
                        item_field,
                        "groups can only be nested one level, as an `all` inside `any`",
                    ));
                }
            }
            Condition::parse(item, &item_field)
        })
        .collect()
}

fn parse_any(value: &Value, field: &str) -> Result<Vec<AnyItem>, FieldError> {
    let Some(items) = value.as_array() else {
        return Err(FieldError::new(
            field,
            "must be a list of conditions or `all` groups",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let item_field = format!("{field}[{index}]");
            if let Some(map) = item.as_object() {
                if present(map, "any").is_some() {
                    return Err(FieldError::new(
                        item_field,
                        "an `any` group cannot hold another `any` group",
                    ));
                }
                if let Some(all) = present(map, "all") {
                    return parse_all(all, &format!("{item_field}.all")).map(AnyItem::All);
                }
            }
            Condition::parse(item, &item_field).map(AnyItem::Condition)
        })
        .collect()
}

/// Rejects arguments that could never make the condition pass, so the mistake surfaces
/// when the workflow is saved rather than as a silently skipped step. Dynamic arguments are
/// only checked at run time, when their value exists.
fn check_argument(
    operator: Operator,
    argument: Option<&Value>,
    field: &str,
) -> Result<(), FieldError> {
    if !operator.takes_argument() {
        return Ok(());
    }
    let op = operator.as_str();
    let given = argument.filter(|value| !value.is_null());

    if let Some(Value::String(text)) = given {
        if StatusCase::parse_token(text) == Some(None) {
            return Err(FieldError::new(
                field,
                format!("`{text}` is not a message status"),
            ));
        }
    }

    let required = !matches!(
        operator,
        Operator::EqualTo | Operator::NotEqualTo | Operator::Contains | Operator::NotContains
    );
    let Some(given) = given else {
        return if required {
            Err(FieldError::new(field, format!("is required for `{op}`")))
        } else {
            Ok(())
        };
    };

    match operator {
        Operator::IsTimestampBefore
        | Operator::IsTimestampOnOrAfter
        | Operator::IsTimestampBeforeDate
        | Operator::IsTimestampOnOrAfterDate => check_timestamp_bound(given, field),
        Operator::IsTimestampBetween => check_pair(given, field, op, |item, field| {
            check_between_bound(item, field, op)
        }),
        Operator::IsBetween => check_pair(given, field, op, |item, field| {
            if number_of(item).is_some() {
                Ok(())
            } else {
                Err(FieldError::new(field, "must be a number"))
            }
        }),
        Operator::IsAudienceMember | Operator::IsNotAudienceMember => match given {
            Value::String(text) if !text.trim().is_empty() => Ok(()),
            Value::Number(_) => Ok(()),
            _ => Err(FieldError::new(field, "must be an audience key")),
        },
        _ => Ok(()),
    }
}

fn check_timestamp_bound(argument: &Value, field: &str) -> Result<(), FieldError> {
    if let Value::String(text) = argument {
        if let Some(offset) = parse_relative(text) {
            return if offset.unsigned_abs() < MIN_RELATIVE_MS.unsigned_abs() {
                Err(FieldError::new(
                    field,
                    "a relative time must be at least 15 minutes",
                ))
            } else {
                Ok(())
            };
        }
    }
    match classify(Some(argument)) {
        Argument::Dynamic(_) => Ok(()),
        Argument::Literal(value) if parse_instant_value(&value).is_some() => Ok(()),
        _ => Err(FieldError::new(
            field,
            "must be an ISO 8601 timestamp, a relative time such as `7 days ago` or \
             `3 hours from now`, or a variable path",
        )),
    }
}

fn check_between_bound(item: &Value, field: &str, op: &str) -> Result<(), FieldError> {
    let Value::String(text) = item else {
        return Err(FieldError::new(field, "must be a timestamp"));
    };
    if parse_relative(text).is_some() {
        return Err(FieldError::new(
            field,
            format!("relative times are not supported by `{op}`; use a date or a variable"),
        ));
    }
    if parse_instant(text).is_some() {
        return Ok(());
    }
    match classify_text(text) {
        Argument::Dynamic(_) => Ok(()),
        Argument::Literal(Value::String(decoded)) if parse_instant(&decoded).is_some() => Ok(()),
        _ => Err(FieldError::new(field, "must be an ISO 8601 timestamp")),
    }
}

/// Checks a `[start, end]` argument, either a JSON list or a string holding one. Each end
/// is checked with `check_item` unless it is a dynamic path, and two literal ends must not
/// be reversed.
fn check_pair(
    argument: &Value,
    field: &str,
    op: &str,
    check_item: impl Fn(&Value, &str) -> Result<(), FieldError>,
) -> Result<(), FieldError> {
    let items = match classify(Some(argument)) {
        Argument::Dynamic(_) => return Ok(()),
        Argument::Literal(Value::Array(items)) if items.len() == 2 => items,
        _ => {
            return Err(FieldError::new(
                field,
                format!("`{op}` takes a list of two values, `[start, end]`"),
            ))
        }
    };
    let mut literal = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let is_dynamic = matches!(item, Value::String(text) if matches!(classify_text(text), Argument::Dynamic(_)));
        if is_dynamic {
            continue;
        }
        check_item(item, &format!("{field}[{index}]"))?;
        literal.push(item);
    }
    if let [start, end] = literal.as_slice() {
        if is_reversed(start, end) {
            return Err(FieldError::new(
                field,
                "the start must not be after the end",
            ));
        }
    }
    Ok(())
}

fn is_reversed(start: &Value, end: &Value) -> bool {
    if let (Some(start), Some(end)) = (parse_instant_value(start), parse_instant_value(end)) {
        // A bare end date covers its whole day, matching evaluation.
        let last = if end.date_only {
            end.ms.saturating_add(DAY_MS - 1)
        } else {
            end.ms
        };
        return start.ms > last;
    }
    let decoded = |value: &Value| match value {
        Value::String(text) => match classify_text(text) {
            Argument::Literal(decoded) => decoded,
            _ => value.clone(),
        },
        other => other.clone(),
    };
    super::operators::compare(&decoded(start), &decoded(end)) == Some(std::cmp::Ordering::Greater)
}
