//! Durations, window rules and "dynamic windows": how delays, batch windows, throttle
//! windows and waits turn settings and run data into an instant.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};
use serde_json::Value;

use crate::conditions::parse_timestamp;
use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
}

/// Knock's `Duration`: `{unit, value}`. A negative value points into the past, which is
/// how a relative delay says "before".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    pub unit: DurationUnit,
    pub value: i64,
}

impl Duration {
    /// Accepts the documented units, singular or plural, and an integer (or integral
    /// number/string) value.
    pub fn from_value(value: &Value) -> Option<Self> {
        let map = value.as_object()?;
        let unit = match map.get("unit")?.as_str()?.trim_end_matches('s') {
            "second" => DurationUnit::Seconds,
            "minute" => DurationUnit::Minutes,
            "hour" => DurationUnit::Hours,
            "day" => DurationUnit::Days,
            "week" => DurationUnit::Weeks,
            "month" => DurationUnit::Months,
            _ => return None,
        };
        let value = match map.get("value")? {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))?,
            Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        Some(Self { unit, value })
    }

    /// `at` moved by this duration; months are calendar months in UTC.
    pub fn add_to(&self, at: Millis) -> Option<Millis> {
        let fixed = |per: i64| self.value.checked_mul(per).and_then(|d| at.checked_add(d));
        match self.unit {
            DurationUnit::Seconds => fixed(1_000),
            DurationUnit::Minutes => fixed(60_000),
            DurationUnit::Hours => fixed(3_600_000),
            DurationUnit::Days => fixed(86_400_000),
            DurationUnit::Weeks => fixed(7 * 86_400_000),
            DurationUnit::Months => {
                let zoned = Timestamp::from_millisecond(at)
                    .ok()?
                    .to_zoned(TimeZone::UTC);
                let months = Span::new().try_months(self.value).ok()?;
                Some(zoned.checked_add(months).ok()?.timestamp().as_millisecond())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

/// A window rule such as "weekly on Monday at 9:00", evaluated in the recipient's time
/// zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRule {
    pub frequency: Frequency,
    /// Allowed weekdays; empty means every day.
    pub days: Vec<Weekday>,
    pub hours: i8,
    pub minutes: i8,
    pub day_of_month: Option<i8>,
}

fn weekday(text: &str) -> Option<Weekday> {
    Some(match text.get(..3)?.to_ascii_lowercase().as_str() {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

impl WindowRule {
    pub fn from_value(value: &Value) -> Option<Self> {
        let map = value.as_object()?;
        let frequency = match map.get("frequency")?.as_str()? {
            "hourly" => Frequency::Hourly,
            "daily" => Frequency::Daily,
            "weekly" => Frequency::Weekly,
            "monthly" => Frequency::Monthly,
            _ => return None,
        };
        let days = match map.get("days") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) if s == "weekdays" => vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
            ],
            Some(Value::String(s)) if s == "weekends" => vec![Weekday::Saturday, Weekday::Sunday],
            Some(Value::Array(items)) => items
                .iter()
                .map(|d| d.as_str().and_then(weekday))
                .collect::<Option<Vec<_>>>()?,
            Some(_) => return None,
        };
        let small = |key: &str, max: i64| -> Option<Option<i8>> {
            match map.get(key) {
                None | Some(Value::Null) => Some(None),
                Some(v) => {
                    let n = v.as_i64()?;
                    (0..=max).contains(&n).then_some(Some(n as i8))
                }
            }
        };
        let hours = small("hours", 23)?.unwrap_or(0);
        let minutes = small("minutes", 59)?.unwrap_or(0);
        let day_of_month = small("day_of_month", 31)?.filter(|d| *d >= 1);
        Some(Self {
            frequency,
            days,
            hours,
            minutes,
            day_of_month,
        })
    }

    fn day_allowed(&self, date: Date) -> bool {
        self.days.is_empty() || self.days.contains(&date.weekday())
    }

    /// The first instant strictly after `now` that the rule allows, in `tz`.
    pub fn next_after(&self, now: Millis, tz: &TimeZone) -> Option<Millis> {
        let now_ts = Timestamp::from_millisecond(now).ok()?;
        let local = now_ts.to_zoned(tz.clone());
        let at = |date: Date, hour: i8| -> Option<Zoned> {
            date.at(hour, self.minutes, 0, 0).to_zoned(tz.clone()).ok()
        };
        let after = |z: &Zoned| z.timestamp() > now_ts && self.day_allowed(z.date());
        let found = match self.frequency {
            Frequency::Hourly => {
                let start = at(local.date(), local.hour())?;
                (0..24 * 8)
                    .filter_map(|h| start.checked_add(Span::new().hours(h)).ok())
                    .find(|z| after(z))
            }
            Frequency::Daily | Frequency::Weekly => (0..9)
                .filter_map(|d| local.date().checked_add(Span::new().days(d)).ok())
                .filter_map(|date| at(date, self.hours))
                .find(|z| after(z)),
            Frequency::Monthly => {
                let first = local.date().first_of_month();
                let wanted = self.day_of_month.unwrap_or(1);
                (0..14)
                    .filter_map(|m| first.checked_add(Span::new().months(m)).ok())
                    .filter(|month| wanted <= month.days_in_month())
                    .filter_map(|month| Date::new(month.year(), month.month(), wanted).ok())
                    .filter_map(|date| at(date, self.hours))
                    .find(|z| after(z))
            }
        }?;
        Some(found.timestamp().as_millisecond())
    }
}

/// What a dynamic window value may be: a timestamp, a duration from now, or a window rule.
#[derive(Debug, Clone, PartialEq)]
pub enum DynamicWindow {
    Until(Millis),
    For(Duration),
    Rule(WindowRule),
}

impl DynamicWindow {
    pub fn from_value(value: &Value) -> Option<Self> {
        if let Some(d) = Duration::from_value(value) {
            return Some(Self::For(d));
        }
        if let Some(rule) = WindowRule::from_value(value) {
            return Some(Self::Rule(rule));
        }
        if value.is_string() || value.is_number() {
            return parse_timestamp(value).map(Self::Until);
        }
        None
    }

    /// The instant this window ends, seen from `now`.
    pub fn resolve(&self, now: Millis, tz: &TimeZone) -> Option<Millis> {
        match self {
            Self::Until(at) => Some(*at),
            Self::For(d) => d.add_to(now),
            Self::Rule(rule) => rule.next_after(now, tz),
        }
    }
}

/// The recipient's time zone (`timezone` property, an IANA name), falling back to UTC.
pub fn recipient_time_zone(recipient: &Value) -> TimeZone {
    recipient
        .get("timezone")
        .and_then(Value::as_str)
        .and_then(|name| TimeZone::get(name).ok())
        .unwrap_or(TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;
    use serde_json::json;

    fn at(text: &str) -> Millis {
        parse_rfc3339(text).expect("valid timestamp")
    }

    #[test]
    fn durations_add_fixed_and_calendar_units() {
        let start = at("2026-01-31T10:00:00Z");
        let d = |v: Value| Duration::from_value(&v).expect("valid duration");
        assert_eq!(
            d(json!({"unit": "seconds", "value": 30})).add_to(start),
            Some(start + 30_000)
        );
        assert_eq!(
            d(json!({"unit": "day", "value": "2"})).add_to(start),
            Some(at("2026-02-02T10:00:00Z"))
        );
        assert_eq!(
            d(json!({"unit": "hours", "value": -1})).add_to(start),
            Some(at("2026-01-31T09:00:00Z"))
        );
        // Calendar months clamp to the end of a shorter month.
        assert_eq!(
            d(json!({"unit": "months", "value": 1})).add_to(start),
            Some(at("2026-02-28T10:00:00Z"))
        );
        assert_eq!(
            Duration::from_value(&json!({"unit": "fortnights", "value": 1})),
            None
        );
        assert_eq!(
            Duration::from_value(&json!({"unit": "days", "value": 1.5})),
            None
        );
    }

    #[test]
    fn window_rules_find_the_next_allowed_instant() {
        // 2026-11-23 is a Monday.
        let now = at("2026-11-23T10:00:00Z");
        let rule = |v: Value| WindowRule::from_value(&v).expect("valid rule");
        let utc = TimeZone::UTC;
        assert_eq!(
            rule(json!({"frequency": "daily", "hours": 9, "minutes": 30})).next_after(now, &utc),
            Some(at("2026-11-24T09:30:00Z"))
        );
        assert_eq!(
            rule(json!({"frequency": "daily", "hours": 11})).next_after(now, &utc),
            Some(at("2026-11-23T11:00:00Z"))
        );
        assert_eq!(
            rule(json!({"frequency": "weekly", "days": ["mon"], "hours": 9})).next_after(now, &utc),
            Some(at("2026-11-30T09:00:00Z"))
        );
        assert_eq!(
            rule(json!({"frequency": "daily", "days": "weekends", "hours": 8}))
                .next_after(now, &utc),
            Some(at("2026-11-28T08:00:00Z"))
        );
        assert_eq!(
            rule(json!({"frequency": "hourly", "minutes": 15})).next_after(now, &utc),
            Some(at("2026-11-23T10:15:00Z"))
        );
        assert_eq!(
            rule(json!({"frequency": "monthly", "day_of_month": 31, "hours": 6}))
                .next_after(now, &utc),
            Some(at("2026-12-31T06:00:00Z"))
        );
        let ny = TimeZone::get("America/New_York").expect("tz database");
        assert_eq!(
            rule(json!({"frequency": "daily", "hours": 9})).next_after(now, &ny),
            Some(at("2026-11-23T14:00:00Z"))
        );
        assert!(WindowRule::from_value(&json!({"frequency": "daily", "hours": 24})).is_none());
    }

    #[test]
    fn dynamic_windows_accept_timestamps_durations_and_rules() {
        let now = at("2026-11-23T10:00:00Z");
        let w = |v: Value| DynamicWindow::from_value(&v);
        assert_eq!(
            w(json!("2026-11-24T00:00:00Z")).and_then(|w| w.resolve(now, &TimeZone::UTC)),
            Some(at("2026-11-24T00:00:00Z"))
        );
        assert_eq!(
            w(json!({"unit": "minutes", "value": 5})).and_then(|w| w.resolve(now, &TimeZone::UTC)),
            Some(now + 300_000)
        );
        assert!(matches!(
            w(json!({"frequency": "daily"})),
            Some(DynamicWindow::Rule(_))
        ));
        assert_eq!(w(json!("not a time")), None);
        assert_eq!(w(json!({"foo": 1})), None);
        assert_eq!(w(json!(true)), None);
    }
}
