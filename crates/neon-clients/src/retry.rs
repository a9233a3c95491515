//! Exponential backoff settings shared by the clients.

use std::time::Duration;

/// How many times to try and how long to wait in between: the wait before attempt `n + 1`
/// is `initial_delay × multiplierⁿ⁻¹`, at most `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Total attempts, the first included (1 means no retry).
    pub attempts: u32,
    /// Wait before the second attempt.
    pub initial_delay: Duration,
    /// Growth of the wait per attempt.
    pub multiplier: f64,
    /// Upper bound of a wait.
    pub max_delay: Duration,
}

impl RetryConfig {
    /// compute_ctl's basebackup policy: 10 attempts, 500 ms × 1.5ⁿ, at most 10 s.
    pub const BASEBACKUP: RetryConfig = RetryConfig {
        attempts: 10,
        initial_delay: Duration::from_millis(500),
        multiplier: 1.5,
        max_delay: Duration::from_secs(10),
    };

    /// compute_ctl's sync-safekeepers policy: 6 attempts, 1.1 s × 1.1ⁿ, at most 3 s.
    pub const SYNC_SAFEKEEPERS: RetryConfig = RetryConfig {
        attempts: 6,
        initial_delay: Duration::from_millis(1100),
        multiplier: 1.1,
        max_delay: Duration::from_secs(3),
    };

    /// The LSN lease renewals' policy after a failed round, as upstream: 500 ms × 1.5ⁿ, at
    /// most 60 s, never giving up.
    pub const LSN_LEASE: RetryConfig = RetryConfig {
        attempts: u32::MAX,
        initial_delay: Duration::from_millis(500),
        multiplier: 1.5,
        max_delay: Duration::from_secs(60),
    };

    /// No retry.
    pub const NONE: RetryConfig = RetryConfig {
        attempts: 1,
        initial_delay: Duration::ZERO,
        multiplier: 1.0,
        max_delay: Duration::ZERO,
    };

    /// The wait before attempt `attempt` (2 for the first retry).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(2).min(64) as i32;
        let secs = self.initial_delay.as_secs_f64() * self.multiplier.powi(exponent);
        Duration::from_secs_f64(secs.min(self.max_delay.as_secs_f64()).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let r = RetryConfig::BASEBACKUP;
        let ms: Vec<u128> = (2..=9).map(|a| r.delay_before(a).as_millis()).collect();
        assert_eq!(ms, [500, 750, 1125, 1687, 2531, 3796, 5695, 8542]);
        assert_eq!(r.delay_before(30), Duration::from_secs(10));
        let s = RetryConfig::SYNC_SAFEKEEPERS;
        assert_eq!(s.delay_before(2).as_millis(), 1100);
        assert_eq!(s.delay_before(3).as_millis(), 1210);
        assert_eq!(s.delay_before(20), Duration::from_secs(3));
        assert_eq!(RetryConfig::NONE.attempts, 1);
    }
}
