//! Latency recording: an HDR histogram of nanoseconds per task, merged at the end.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency recorded exactly; longer ones are clamped (a minute is already a failure).
const MAX_TRACKED_NANOS: u64 = 60_000_000_000;

/// A latency distribution with 3 significant digits.
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    pub fn new() -> Latencies {
        let hist = Histogram::new_with_bounds(1, MAX_TRACKED_NANOS, 3)
            .expect("constant bounds 1..60e9 with 3 digits are valid");
        Latencies { hist }
    }

    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.hist
            .saturating_record(nanos.clamp(1, MAX_TRACKED_NANOS));
    }

    pub fn record_nanos(&mut self, nanos: u64) {
        self.hist
            .saturating_record(nanos.clamp(1, MAX_TRACKED_NANOS));
    }

    /// Adds another task's samples (same bounds, so this cannot fail).
    pub fn merge(&mut self, other: &Latencies) {
        self.hist.add(&other.hist).expect("histograms share bounds");
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The `q`-th percentile (0..=100) in microseconds.
    pub fn percentile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q / 100.0) as f64 / 1000.0
    }

    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_sample() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        for us in 1..=500u64 {
            a.record(Duration::from_micros(us));
            b.record(Duration::from_micros(500 + us));
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        let p50 = a.percentile_us(50.0);
        assert!((499.0..=501.0).contains(&p50), "{p50}");
        let p99 = a.percentile_us(99.0);
        assert!((989.0..=991.0).contains(&p99), "{p99}");
        assert!((999.0..=1001.0).contains(&a.max_us()));
    }
}
