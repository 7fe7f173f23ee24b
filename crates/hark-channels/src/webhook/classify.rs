//! Turning an HTTP response into an outcome: what is final, what is worth another try,
//! and when the receiver asked us to come back.

use std::time::SystemTime;

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;

use crate::Outcome;

/// Outcome for a response with `status` and `headers`.
pub fn outcome_for_status(status: StatusCode, headers: &HeaderMap) -> Outcome {
    let label = status_label(status);
    if status.is_success() {
        return Outcome::Delivered;
    }
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        let retry_after_ms = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        return Outcome::Retryable {
            reason: label,
            retry_after_ms,
        };
    }
    if status.is_redirection() {
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(no Location)");
        return Outcome::Permanent {
            reason: format!("{label}: redirect to {location} not followed"),
        };
    }
    Outcome::Permanent { reason: label }
}

fn status_label(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// Parses a Retry-After value, either delay-seconds or an HTTP date, into milliseconds
/// from `now`. A date in the past means "now" (0); garbage means no hint.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<i64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(i64::try_from(seconds).ok()?.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let ms = match at.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    Some(ms)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("7", now), Some(7000));
        assert_eq!(parse_retry_after(" 120 ", now), Some(120_000));
        // RFC 9110's example date is 784111777 s after the epoch.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(10_000)
        );
        assert_eq!(
            parse_retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                now + Duration::from_secs(60)
            ),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let none = HeaderMap::new();
        assert_eq!(
            outcome_for_status(StatusCode::NO_CONTENT, &none),
            Outcome::Delivered
        );
        for code in [408, 429, 500, 502, 503] {
            let status = StatusCode::from_u16(code).expect("valid status");
            assert!(
                matches!(outcome_for_status(status, &none), Outcome::Retryable { .. }),
                "{code}"
            );
        }
        for code in [301, 302, 400, 401, 404, 410, 422] {
            let status = StatusCode::from_u16(code).expect("valid status");
            assert!(
                matches!(outcome_for_status(status, &none), Outcome::Permanent { .. }),
                "{code}"
            );
        }
    }
}
