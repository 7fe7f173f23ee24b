//! How two resolved values compare: equality, ordering, containment and emptiness.
//!
//! Knock decodes static arguments as JSON, so the argument `"5"` arrives as the number 5 and
//! `"true"` as a boolean, while trigger payloads often carry the same facts as text. The
//! comparisons below therefore treat a number and its decimal text, and a boolean and its
//! text, as the same value; otherwise `data.count equal_to "5"` would depend on how the
//! caller happened to serialise `count`.

use std::cmp::Ordering;

use serde_json::Value;

use super::timestamps::parse_instant;

#[derive(Debug, Clone, Copy)]
pub(super) enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn to_f64(self) -> f64 {
        match self {
            Number::Int(value) => value as f64,
            Number::Float(value) => value,
        }
    }

    fn compare(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.to_f64().partial_cmp(&b.to_f64()),
        }
    }
}

/// A number, or text that spells one (`"42"`, `"-3.5"`, `"1e3"`).
pub(super) fn number_of(value: &Value) -> Option<Number> {
    match value {
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                Some(Number::Int(i128::from(int)))
            } else if let Some(int) = number.as_u64() {
                Some(Number::Int(i128::from(int)))
            } else {
                number.as_f64().map(Number::Float)
            }
        }
        Value::String(text) => numeric_text(text),
        _ => None,
    }
}

/// Only text written the way JSON writes numbers counts as numeric. Padding, a leading `+`
/// or leading zeros, `inf` and `NaN` keep a string a string, so codes such as the ZIP code
/// `"02134"` or `"Infinity"` are never silently compared as numbers.
fn numeric_text(text: &str) -> Option<Number> {
    let bytes = text.as_bytes();
    let mut at = usize::from(bytes.first() == Some(&b'-'));
    let digits = |from: usize| {
        bytes.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };

    let int_digits = digits(at);
    if int_digits == 0 || (int_digits > 1 && bytes.get(at) == Some(&b'0')) {
        return None;
    }
    at += int_digits;
    if bytes.get(at) == Some(&b'.') {
        let frac = digits(at + 1);
        if frac == 0 {
            return None;
        }
        at += 1 + frac;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exp = digits(at);
        if exp == 0 {
            return None;
        }
        at += exp;
    }
    if at != bytes.len() {
        return None;
    }
    if let Ok(int) = text.parse::<i128>() {
        return Some(Number::Int(int));
    }
    text.parse::<f64>()
        .ok()
        .filter(|value| value.is_finite())
        .map(Number::Float)
}

/// Equality as conditions see it: numbers by value (`1` equals `1.0` and `"1"`), booleans
/// equal to their text, text compared exactly (case-sensitive), lists and objects compared
/// item by item with the same rules.
pub(super) fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(_), Value::Number(_) | Value::String(_))
        | (Value::String(_), Value::Number(_)) => match (number_of(a), number_of(b)) {
            (Some(x), Some(y)) => x.compare(y) == Some(Ordering::Equal),
            _ => false,
        },
        (Value::Bool(flag), Value::String(text)) | (Value::String(text), Value::Bool(flag)) => {
            text == bool_text(*flag)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| loosely_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, a)| y.get(key).is_some_and(|b| loosely_equal(a, b)))
        }
        _ => false,
    }
}

/// Ordering for `greater_than` and friends; `None` when the values have no order.
///
/// Numbers and numeric text compare by value. Two timestamps compare as instants, so
/// offsets and precision don't matter. Other text compares lexicographically, which keeps
/// ISO dates and zero-padded codes ordered the way they read. Anything else (booleans,
/// null, lists, objects, text against a number) has no order and fails every comparison.
pub(super) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (number_of(a), number_of(b)) {
        return x.compare(y);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => match (parse_instant(x), parse_instant(y)) {
            (Some(x), Some(y)) => Some(x.ms.cmp(&y.ms)),
            _ => Some(x.as_str().cmp(y.as_str())),
        },
        _ => None,
    }
}

/// `contains` as Knock defines it: substring for two texts, membership for a text and a
/// list (either way round), any shared item for two lists.
///
/// A number or boolean argument against text is matched by its text, because a static
/// argument such as `"123"` is decoded into a number before it gets here. Numbers and
/// booleans get the same "is an item of the argument list" reading as text. Objects and
/// null are never searched, so they contain nothing.
pub(super) fn contains(variable: &Value, argument: &Value) -> bool {
    match (variable, argument) {
        (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
        (Value::String(text), Value::Number(_) | Value::Bool(_)) => {
            scalar_text(argument).is_some_and(|part| text.contains(part.as_str()))
        }
        (Value::Array(items), Value::Array(wanted)) => wanted
            .iter()
            .any(|w| items.iter().any(|item| loosely_equal(item, w))),
        (Value::Array(items), needle) => items.iter().any(|item| loosely_equal(item, needle)),
        (Value::String(_) | Value::Number(_) | Value::Bool(_), Value::Array(options)) => {
            options.iter().any(|option| loosely_equal(option, variable))
        }
        _ => false,
    }
}

/// `contains_all`: every argument item is in the variable list. Knock restricts this to
/// lists; a single non-list argument is treated as a one-item list since that is the only
/// sensible reading, while a non-list variable never passes.
pub(super) fn contains_all(variable: &Value, argument: &Value) -> bool {
    let Value::Array(items) = variable else {
        return false;
    };
    let has = |wanted: &Value| items.iter().any(|item| loosely_equal(item, wanted));
    match argument {
        Value::Array(wanted) => wanted.iter().all(has),
        single => has(single),
    }
}

/// `empty`: unset, null, `""` or `[]`. Knock's list doesn't mention `{}`; an object with no
/// properties is treated as empty too, since it carries no more meaning than `[]`.
pub(super) fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => text.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Bool(_) | Value::Number(_)) => false,
    }
}

/// Inclusive numeric range check for `is_between`.
pub(super) fn is_between(value: &Value, low: &Value, high: &Value) -> bool {
    let (Some(value), Some(low), Some(high)) = (number_of(value), number_of(low), number_of(high))
    else {
        return false;
    };
    matches!(low.compare(value), Some(Ordering::Less | Ordering::Equal))
        && matches!(value.compare(high), Some(Ordering::Less | Ordering::Equal))
}

/// The text a scalar stands for, used where a value has to act as a string (substring
/// checks, audience keys).
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(bool_text(*flag).to_owned()),
        _ => None,
    }
}

fn bool_text(flag: bool) -> &'static str {
    if flag {
        "true"
    } else {
        "false"
    }
}
