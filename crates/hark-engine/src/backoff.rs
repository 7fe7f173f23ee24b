//! Delivery retry schedule: exponential with jitter, 8 attempts spread over ~30 minutes
//! (15 s, 30 s, 1 min, 2 min, 4 min, 8 min, 16 min between attempts).

use hark_core::Millis;
use rand::Rng;

pub const MAX_DELIVERY_ATTEMPTS: i64 = 8;
const BASE_DELAY_MS: Millis = 15_000;

/// The delay before the attempt after `attempt` (1-based), honouring a provider's
/// `Retry-After` when it asks for longer.
pub fn retry_delay_ms(attempt: i64, retry_after_ms: Option<Millis>) -> Millis {
    let exponent = (attempt.max(1) - 1).min(10) as u32;
    let base = BASE_DELAY_MS.saturating_mul(1 << exponent);
    // ±20 % jitter spreads out retries of many messages that failed together.
    let jitter = rand::thread_rng().gen_range(-(base / 5)..=(base / 5));
    let delay = base + jitter;
    match retry_after_ms {
        Some(asked) if asked > delay => asked.min(60 * 60 * 1000),
        _ => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spans_about_thirty_minutes() {
        let total: Millis = (1..MAX_DELIVERY_ATTEMPTS)
            .map(|a| 15_000 * (1 << (a - 1)))
            .sum();
        assert_eq!(total, 1_905_000);
        for attempt in 1..MAX_DELIVERY_ATTEMPTS {
            let base = 15_000 * (1 << (attempt - 1));
            let d = retry_delay_ms(attempt, None);
            assert!(
                d >= base - base / 5 && d <= base + base / 5,
                "{attempt}: {d}"
            );
        }
    }

    #[test]
    fn honours_longer_retry_after() {
        assert_eq!(retry_delay_ms(1, Some(120_000)), 120_000);
        assert!(retry_delay_ms(1, Some(1)) >= 12_000);
    }
}
