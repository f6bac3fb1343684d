//! Latency histograms that are read and reset once per window.

use demo_common::stats::Quantiles;
use hdrhistogram::Histogram;

/// Largest latency recorded exactly: one hour in microseconds. Larger values
/// are clamped to it rather than dropped.
const MAX_US: u64 = 3_600_000_000;

/// An HdrHistogram of latencies in microseconds, 3 significant digits.
pub struct LatencyWindow {
    hist: Histogram<u64>,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyWindow {
    pub fn new() -> Self {
        Self {
            // The bounds are constants, valid by construction.
            hist: Histogram::new_with_bounds(1, MAX_US, 3)
                .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid")),
        }
    }

    /// Record one latency; out-of-range values are clamped.
    pub fn record_us(&mut self, us: u64) {
        self.hist.saturating_record(us.min(MAX_US));
    }

    /// Quantiles (ms) of everything recorded since the last call, then reset.
    pub fn take_quantiles(&mut self) -> Quantiles {
        let q = self.quantiles();
        self.hist.reset();
        q
    }

    /// Quantiles (ms) of everything recorded so far; all 0 when empty.
    pub fn quantiles(&self) -> Quantiles {
        let count = self.hist.len();
        if count == 0 {
            return Quantiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Quantiles {
            count,
            p50: ms(self.hist.value_at_quantile(0.50)),
            p95: ms(self.hist.value_at_quantile(0.95)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            p999: ms(self.hist.value_at_quantile(0.999)),
            max: ms(self.hist.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_ordered_and_reset() {
        let mut w = LatencyWindow::new();
        assert_eq!(w.quantiles(), Quantiles::default());
        for us in 1..=10_000 {
            w.record_us(us);
        }
        w.record_us(u64::MAX);
        let q = w.take_quantiles();
        assert_eq!(q.count, 10_001);
        assert!((q.p50 - 5.0).abs() < 0.01, "p50 {}", q.p50);
        assert!((q.p99 - 9.9).abs() < 0.01, "p99 {}", q.p99);
        assert!(q.p50 <= q.p95 && q.p95 <= q.p99 && q.p99 <= q.p999 && q.p999 <= q.max);
        assert!((q.max - 3_600_000.0).abs() / 3_600_000.0 < 0.001);
        assert_eq!(w.quantiles().count, 0);
    }
}
