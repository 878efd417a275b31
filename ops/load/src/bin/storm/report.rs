//! The printed report: load (throughput, latency per endpoint, saga completion), then the
//! audit. Plain text, stable column order, so runs can be pasted into docs/benchmarks.md.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::audit::Audit;
use crate::stats::{Samples, quantiles};

/// Throughput and latency per endpoint, answers by status, and saga completion as polled.
pub fn load(samples: &mut Samples, elapsed: Duration, customers: usize, instances: usize) {
    let secs = elapsed.as_secs_f64().max(f64::EPSILON);
    let requests: usize = samples.latencies.values().map(Vec::len).sum();
    println!(
        "== storm: {customers} customers, {instances} instance(s), {secs:.1} s, {requests} requests, {:.0} req/s",
        requests as f64 / secs
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  statuses",
        "endpoint", "count", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (endpoint, values) in &mut samples.latencies {
        let count = values.len();
        let [p50, p95, p99, max] = quantiles(values);
        let statuses: Vec<String> = samples
            .statuses
            .iter()
            .filter(|((e, _), _)| e == endpoint)
            .map(|((_, s), n)| format!("{s}×{n}"))
            .collect();
        println!(
            "{endpoint:<34} {count:>8} {:>8.1} {p50:>8.1} {p95:>8.1} {p99:>8.1} {max:>9.1}  {}",
            count as f64 / secs,
            statuses.join(" ")
        );
    }
    println!("-- saga completion, POST → end state seen by polling");
    sagas(&mut samples.sagas, secs);
    let ends: Vec<String> = samples
        .ends
        .iter()
        .map(|((flow, status), n)| format!("{flow} {status}×{n}"))
        .collect();
    println!("   end states seen: {}", ends.join(", "));
    if !samples.unfinished.is_empty() {
        println!(
            "   not seen ending within the wait: {:?}",
            samples.unfinished
        );
    }
    if !samples.duplicates.is_empty() {
        println!("   duplicate webhooks by answer: {:?}", samples.duplicates);
    }
}

/// p50/p95/p99/max per flow of `values` (microseconds), and flows per second.
pub fn sagas(values: &mut BTreeMap<&'static str, Vec<u64>>, secs: f64) {
    for (flow, values) in values {
        let count = values.len();
        let [p50, p95, p99, max] = quantiles(values);
        println!(
            "   {flow:<24} {count:>7} ({:.1}/s)  p50 {p50:.0} ms  p95 {p95:.0} ms  p99 {p99:.0} ms  max {max:.0} ms",
            count as f64 / secs
        );
    }
}

/// Every invariant count and the facts beside them.
pub fn audit(audit: &Audit) {
    println!("== audit of the store (all must be 0)");
    for (what, n) in &audit.violations {
        let mark = if *n == 0 { "ok  " } else { "FAIL" };
        println!("   {mark} {what:<52} {n}");
    }
    for (what, n) in &audit.facts {
        println!("        {what:<52} {n}");
    }
    println!("   violations: {}", audit.total());
}
