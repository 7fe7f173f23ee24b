//! Dynamic audiences: membership defined by `segments` of user-property conditions.
//! Conditions within a segment are joined by AND, segments by OR, as Knock defines them.
//! A segment condition names its path `property` (`recipient.plan`), where workflow
//! conditions say `variable`; the operators and arguments are the workflow ones.

use serde_json::{Map, Value};

use crate::conditions::{AnyItem, Condition, ConditionGroup, JsonScope, Operator};
use crate::recipient::FieldError;
use crate::Millis;

/// A dynamic audience's segments, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Segments {
    group: ConditionGroup,
}

impl Segments {
    /// Parses Knock's `segments`: a non-empty list of `{conditions: [...]}`, each list
    /// non-empty. Errors name the field (`{field}[1].conditions[0].operator`).
    pub fn parse(value: &Value, field: &str) -> Result<Self, Vec<FieldError>> {
        let Some(segments) = value.as_array() else {
            return Err(vec![FieldError::new(field, "must be a list of segments")]);
        };
        if segments.is_empty() {
            return Err(vec![FieldError::new(
                field,
                "a dynamic audience needs at least one segment",
            )]);
        }
        let mut errors = Vec::new();
        let mut items = Vec::with_capacity(segments.len());
        for (i, segment) in segments.iter().enumerate() {
            let segment_field = format!("{field}[{i}].conditions");
            let Some(conditions) = segment.get("conditions").and_then(Value::as_array) else {
                errors.push(FieldError::new(
                    segment_field,
                    "must be a list of conditions",
                ));
                continue;
            };
            if conditions.is_empty() {
                errors.push(FieldError::new(
                    segment_field,
                    "a segment needs at least one condition",
                ));
                continue;
            }
            let mut all = Vec::with_capacity(conditions.len());
            for (j, condition) in conditions.iter().enumerate() {
                match parse_condition(condition, &format!("{segment_field}[{j}]")) {
                    Ok(c) => all.push(c),
                    Err(e) => errors.push(e),
                }
            }
            items.push(AnyItem::All(all));
        }
        if errors.is_empty() {
            Ok(Segments {
                group: ConditionGroup::Any(items),
            })
        } else {
            Err(errors)
        }
    }

    /// Whether a user with these properties (`id` included) is in the audience now.
    pub fn includes(&self, user: &Value, now: Millis) -> bool {
        let root = serde_json::json!({ "recipient": user });
        let scope = JsonScope {
            root: &root,
            audiences: &[],
        };
        self.group.evaluate(&scope, now).passed
    }
}

/// One segment condition: `property` is read as a workflow condition's `variable`.
/// Audience operators are refused: membership defined by membership could loop.
fn parse_condition(value: &Value, field: &str) -> Result<Condition, FieldError> {
    let Some(map) = value.as_object() else {
        return Err(FieldError::new(field, "must be a condition object"));
    };
    let mut renamed: Map<String, Value> = map.clone();
    match renamed.remove("property") {
        Some(property) => {
            renamed.insert("variable".into(), property);
        }
        None => {
            return Err(FieldError::new(
                format!("{field}.property"),
                "can't be blank",
            ))
        }
    }
    let condition = Condition::parse(&Value::Object(renamed), field).map_err(|e| {
        // Report the field as the request named it.
        FieldError::new(e.field.replace(".variable", ".property"), e.message)
    })?;
    if matches!(
        condition.operator,
        Operator::IsAudienceMember | Operator::IsNotAudienceMember
    ) {
        return Err(FieldError::new(
            format!("{field}.operator"),
            "audience operators can't define an audience",
        ));
    }
    if !condition.variable.starts_with("recipient.") {
        return Err(FieldError::new(
            format!("{field}.property"),
            "must be a user property path such as `recipient.plan`",
        ));
    }
    Ok(condition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn segments(value: Value) -> Segments {
        Segments::parse(&value, "segments").expect("valid segments")
    }

    #[test]
    fn conditions_and_within_a_segment_or_across_segments() {
        let s = segments(json!([
            {"conditions": [
                {"property": "recipient.plan", "operator": "equal_to", "argument": "pro"},
                {"property": "recipient.seats", "operator": "greater_than", "argument": 5},
            ]},
            {"conditions": [{"property": "recipient.vip", "operator": "equal_to", "argument": true}]},
        ]));
        let cases = [
            (json!({"id": "a", "plan": "pro", "seats": 10}), true),
            (json!({"id": "b", "plan": "pro", "seats": 2}), false),
            (json!({"id": "c", "plan": "free", "seats": 10}), false),
            (json!({"id": "d", "plan": "free", "vip": true}), true),
            (json!({"id": "e"}), false),
        ];
        for (user, expected) in cases {
            assert_eq!(s.includes(&user, 0), expected, "{user}");
        }
    }

    #[test]
    fn existence_operators_read_missing_properties() {
        let s = segments(json!([{"conditions": [
            {"property": "recipient.email", "operator": "exists"},
        ]}]));
        assert!(s.includes(&json!({"email": "a@b.c"}), 0));
        assert!(!s.includes(&json!({"name": "x"}), 0));
    }

    #[test]
    fn invalid_segments_name_the_field() {
        let cases = [
            (json!({}), "segments"),
            (json!([]), "segments"),
            (json!([{"conditions": []}]), "segments[0].conditions"),
            (json!([{"nope": 1}]), "segments[0].conditions"),
            (
                json!([{"conditions": [{"operator": "equal_to", "argument": 1}]}]),
                "segments[0].conditions[0].property",
            ),
            (
                json!([{"conditions": [{"property": "recipient.plan", "operator": "sounds_like"}]}]),
                "segments[0].conditions[0].operator",
            ),
            (
                json!([{"conditions": [{"property": "recipient.x", "operator": "is_audience_member", "argument": "a"}]}]),
                "segments[0].conditions[0].operator",
            ),
            (
                json!([{"conditions": [{"property": "data.plan", "operator": "equal_to", "argument": 1}]}]),
                "segments[0].conditions[0].property",
            ),
        ];
        for (value, field) in cases {
            let errors = Segments::parse(&value, "segments").expect_err("invalid");
            assert_eq!(errors[0].field, field, "{value}");
        }
    }
}
