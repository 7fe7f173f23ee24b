//! Absolute and relative timestamps as condition operands.

use serde_json::Value;

use crate::time::parse_rfc3339;
use crate::Millis;

pub(super) const MINUTE_MS: i64 = 60_000;
pub(super) const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// The shortest relative offset Knock accepts for a timestamp argument.
pub(super) const MIN_RELATIVE_MS: i64 = 15 * MINUTE_MS;

/// A parsed absolute timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Instant {
    pub ms: Millis,
    /// Written as a bare calendar date (`2025-12-31`). A range that ends on such a date is
    /// read as covering that whole day.
    pub date_only: bool,
}

/// Parses a timestamp value the way conditions do and returns milliseconds since the epoch.
///
/// Accepted: RFC 3339 / ISO 8601 date-times with an offset (`2025-06-15T14:30:00Z`,
/// `…+02:00`), date-times without an offset, read as UTC, and bare dates (`2025-06-15`),
/// read as midnight UTC.
///
/// Numbers are not timestamps. Knock documents ISO 8601 text as the timestamp format, and
/// treating numbers as Unix times would make `is_timestamp` true for every count or price
/// while leaving seconds and milliseconds indistinguishable.
pub fn parse_timestamp(value: &Value) -> Option<Millis> {
    match value {
        Value::String(text) => parse_instant(text).map(|instant| instant.ms),
        _ => None,
    }
}

pub(super) fn parse_instant_value(value: &Value) -> Option<Instant> {
    match value {
        Value::String(text) => parse_instant(text),
        _ => None,
    }
}

pub(super) fn parse_instant(text: &str) -> Option<Instant> {
    if let Some(ms) = parse_rfc3339(text) {
        return Some(Instant {
            ms,
            date_only: false,
        });
    }
    // Without an offset there is no recipient time zone to fall back on here, so UTC is the
    // only reading that gives the same answer on every server.
    let civil = text.parse::<jiff::civil::DateTime>().ok()?;
    let ms = civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp()
        .as_millisecond();
    Some(Instant {
        ms,
        date_only: !text.contains(['T', 't', ' ']),
    })
}

/// Parses a relative time such as `7 days ago` or `3 hours from now` into a signed offset
/// from the evaluation time. Units are minutes, hours, days and weeks, singular or plural,
/// in any letter case. A day is exactly 24 hours: Knock measures relative times from the
/// moment of evaluation, not from calendar boundaries.
pub(super) fn parse_relative(text: &str) -> Option<i64> {
    let lowered = text.to_ascii_lowercase();
    let words: Vec<&str> = lowered.split_whitespace().collect();
    let (amount, unit, sign) = match words.as_slice() {
        [amount, unit, "ago"] => (*amount, *unit, -1),
        [amount, unit, "from", "now"] => (*amount, *unit, 1),
        _ => return None,
    };
    if amount.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: i64 = amount.parse().ok()?;
    let unit_ms = match unit {
        "minute" | "minutes" => MINUTE_MS,
        "hour" | "hours" => 60 * MINUTE_MS,
        "day" | "days" => DAY_MS,
        "week" | "weeks" => 7 * DAY_MS,
        _ => return None,
    };
    amount.checked_mul(unit_ms)?.checked_mul(sign)
}

/// Midnight UTC of the day holding `ms`.
pub(super) fn day_start(ms: Millis) -> Option<Millis> {
    ms.checked_sub(ms.rem_euclid(DAY_MS))
}
