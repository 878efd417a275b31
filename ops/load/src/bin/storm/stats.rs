//! Latencies per endpoint and saga completion times, kept per customer and merged at the end
//! so the hot path takes no lock.

use std::collections::BTreeMap;
use std::time::Duration;

/// What one customer (or all of them, merged) measured.
#[derive(Debug, Default)]
pub struct Samples {
    /// Request latencies in microseconds by endpoint label (`POST /orders`, …).
    pub latencies: BTreeMap<&'static str, Vec<u64>>,
    /// Answers by endpoint label and status (`0` = no answer: connection error or timeout).
    pub statuses: BTreeMap<(&'static str, u16), u64>,
    /// POST → end state seen by polling, in microseconds, by flow (`order`, `booking`).
    pub sagas: BTreeMap<&'static str, Vec<u64>>,
    /// End states seen, by flow and status.
    pub ends: BTreeMap<(&'static str, String), u64>,
    /// Flows that did not reach an end state within the customer's wait.
    pub unfinished: BTreeMap<&'static str, u64>,
    /// Duplicate webhooks posted, by what the service answered.
    pub duplicates: BTreeMap<u16, u64>,
    /// Every flow placed: id, flow, when its POST was sent (for completion times read from
    /// the store).
    pub placed: Vec<(String, &'static str, chrono::DateTime<chrono::Utc>)>,
}

impl Samples {
    /// Records one request.
    pub fn request(&mut self, endpoint: &'static str, status: u16, took: Duration) {
        self.latencies
            .entry(endpoint)
            .or_default()
            .push(micros(took));
        *self.statuses.entry((endpoint, status)).or_default() += 1;
    }

    /// Records a flow that ended in `status` `took` after its POST.
    pub fn ended(&mut self, flow: &'static str, status: &str, took: Duration) {
        self.sagas.entry(flow).or_default().push(micros(took));
        *self.ends.entry((flow, status.to_owned())).or_default() += 1;
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: Samples) {
        for (k, mut v) in other.latencies {
            self.latencies.entry(k).or_default().append(&mut v);
        }
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, mut v) in other.sagas {
            self.sagas.entry(k).or_default().append(&mut v);
        }
        for (k, v) in other.ends {
            *self.ends.entry(k).or_default() += v;
        }
        for (k, v) in other.unfinished {
            *self.unfinished.entry(k).or_default() += v;
        }
        for (k, v) in other.duplicates {
            *self.duplicates.entry(k).or_default() += v;
        }
        self.placed.extend(other.placed);
    }
}

fn micros(took: Duration) -> u64 {
    u64::try_from(took.as_micros()).unwrap_or(u64::MAX)
}

/// p50, p95, p99 and max of `values` (sorted in place), in milliseconds.
pub fn quantiles(values: &mut [u64]) -> [f64; 4] {
    if values.is_empty() {
        return [0.0; 4];
    }
    values.sort_unstable();
    let at = |q: f64| {
        // Nearest rank: the smallest value with at least q of the samples at or below it.
        let rank = (q * values.len() as f64).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1] as f64 / 1000.0
    };
    [at(0.50), at(0.95), at(0.99), at(1.0)]
}

#[cfg(test)]
mod tests {
    use super::quantiles;

    #[test]
    fn nearest_rank_quantiles() {
        let mut values: Vec<u64> = (1..=100).map(|v| v * 1000).collect();
        assert_eq!(quantiles(&mut values), [50.0, 95.0, 99.0, 100.0]);
        assert_eq!(quantiles(&mut []), [0.0; 4]);
    }
}
