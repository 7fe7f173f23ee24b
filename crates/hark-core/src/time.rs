//! Time as the engine sees it. Every due time, window and retry reads a [`Clock`] so tests
//! can run days of workflow time in milliseconds.

use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch. Ordered instants are stored as this integer on every
/// backend, never as text.
pub type Millis = i64;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        jiff::Timestamp::now().as_millisecond()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        Self {
            now: AtomicI64::new(start),
        }
    }

    pub fn advance(&self, by_ms: Millis) {
        self.now.fetch_add(by_ms, Ordering::SeqCst);
    }

    pub fn set(&self, to: Millis) {
        self.now.store(to, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}

/// RFC 3339 with microsecond precision and a `Z` suffix, the way Knock prints timestamps.
pub fn rfc3339(ms: Millis) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.6}"),
        Err(_) => String::from("1970-01-01T00:00:00.000000Z"),
    }
}

/// Parses an RFC 3339 timestamp into milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|ts| ts.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let ms = 1_700_000_000_123;
        let text = rfc3339(ms);
        assert_eq!(text, "2023-11-14T22:13:20.123000Z");
        assert_eq!(parse_rfc3339(&text), Some(ms));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(10);
        assert_eq!(clock.now_ms(), 10);
        clock.advance(5);
        assert_eq!(clock.now_ms(), 15);
        clock.set(1);
        assert_eq!(clock.now_ms(), 1);
    }
}
