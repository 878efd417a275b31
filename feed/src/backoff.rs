//! The one exponential back-off of the service: retries of commands, events and connections.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// Exponential back-off with jitter between `base` and `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// A back-off from `base`, doubling up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The delay before try number `attempt + 1`, after `attempt` failures (1 = after the
    /// first): `base · 2^(attempt-1)`, capped at `max`, plus up to as much again of jitter
    /// (capped at `max` too), so that runners failing together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.nth(attempt, true)
    }

    /// "Full jitter": anywhere from zero up to `base · 2^(attempt-1)` (capped at `max`), for
    /// writers racing for one row, where spreading the retries matters more than their
    /// minimum wait.
    pub fn full_jitter(&self, attempt: u32) -> Duration {
        self.nth(attempt, false).mul_f64(rand::random::<f64>())
    }

    fn nth(&self, attempt: u32, jitter: bool) -> Duration {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .without_max_times();
        let builder = if jitter {
            builder.with_jitter()
        } else {
            builder
        };
        builder
            .build()
            .nth(attempt.saturating_sub(1).min(32) as usize)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_from_the_base_and_never_pass_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(200));
        for attempt in 1..=40 {
            let floor = Duration::from_millis(10)
                .saturating_mul(1 << (attempt - 1).min(10))
                .min(Duration::from_millis(200));
            let delay = backoff.delay(attempt);
            assert!(backoff.full_jitter(attempt) <= floor, "attempt {attempt}");
            assert!(delay >= floor, "attempt {attempt}: {delay:?} < {floor:?}");
            assert!(
                delay <= Duration::from_millis(200),
                "attempt {attempt}: {delay:?}"
            );
        }
    }
}
