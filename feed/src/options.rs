//! How a subscription runner is tuned.

use std::time::Duration;

use crate::backoff::Backoff;

/// Tuning of a runner.
#[derive(Debug, Clone)]
pub struct SubscriptionOptions {
    /// Events per transaction.
    pub batch_size: i64,
    /// Longest sleep without a wake-up before looking at the feed anyway; also how often
    /// operators' retry and skip requests are looked for.
    pub poll_interval: Duration,
    /// Tries of a failing event before it is parked for an operator.
    pub max_attempts: u32,
    /// First back-off between tries; doubles, with jitter, up to `retry_max_delay`.
    pub retry_base_delay: Duration,
    /// Longest back-off between tries.
    pub retry_max_delay: Duration,
    /// How often a runner in standby tries to take the lock.
    pub standby_interval: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(250),
            max_attempts: 5,
            retry_base_delay: Duration::from_millis(50),
            retry_max_delay: Duration::from_secs(2),
            standby_interval: Duration::from_secs(1),
        }
    }
}

impl SubscriptionOptions {
    /// The back-off between tries of a failing event, or reconnections.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.retry_base_delay, self.retry_max_delay)
    }
}
