//! The overseer's own `/metrics` (OpenMetrics text): the published latency
//! figures, rates, and whether each source answered.

use std::sync::atomic::AtomicU64;

use demo_common::stats::MetricsSnapshot;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    quantile: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLabels {
    /// `producer`, `producer_target` or `consumer`.
    series: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// Every metric of the overseer.
pub struct Metrics {
    registry: Registry,
    latency: Family<QuantileLabels, FloatGauge>,
    rate: Family<RateLabels, FloatGauge>,
    source_up: Family<SourceLabels, Gauge>,
    target: FloatGauge,
    polls: Counter,
    latency_writes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("overseer");
        let latency = Family::<QuantileLabels, FloatGauge>::default();
        let rate = Family::<RateLabels, FloatGauge>::default();
        let source_up = Family::<SourceLabels, Gauge>::default();
        let target = FloatGauge::default();
        let polls = Counter::default();
        let latency_writes = Counter::default();
        registry.register(
            "e2e_latency_ms",
            "Consumer end-to-end latency of the last window (NaN while unknown)",
            latency.clone(),
        );
        registry.register(
            "rate",
            "Messages per second of the last window",
            rate.clone(),
        );
        registry.register(
            "source_up",
            "1 when the source answered the last poll",
            source_up.clone(),
        );
        registry.register(
            "target_latency_ms",
            "The p99 latency target",
            target.clone(),
        );
        registry.register("polls", "Polls of both sources", polls.clone());
        registry.register(
            "latency_writes",
            "Times latency.txt was written with a new window's p99",
            latency_writes.clone(),
        );
        Self {
            registry,
            latency,
            rate,
            source_up,
            target,
            polls,
            latency_writes,
        }
    }

    /// Record one poll's outcome.
    pub fn record(&self, m: &MetricsSnapshot, wrote_latency: bool) {
        self.polls.inc();
        if wrote_latency {
            self.latency_writes.inc();
        }
        self.target.set(m.target_latency_ms);
        let q = m.latency_ms;
        for (quantile, value) in [
            ("0.5", q.map(|q| q.p50)),
            ("0.95", q.map(|q| q.p95)),
            ("0.99", q.map(|q| q.p99)),
            ("0.999", q.map(|q| q.p999)),
            ("1", q.map(|q| q.max)),
        ] {
            self.latency
                .get_or_create(&QuantileLabels { quantile })
                .set(value.unwrap_or(f64::NAN));
        }
        for (series, value) in [
            ("producer", m.producer_rate),
            ("producer_target", m.producer_target_rate),
            ("consumer", m.consumer_rate),
        ] {
            self.rate
                .get_or_create(&RateLabels { series })
                .set(value.unwrap_or(f64::NAN));
        }
        for (source, up) in [
            ("producer", m.sources.producer.up),
            ("consumer", m.sources.consumer.up),
        ] {
            self.source_up
                .get_or_create(&SourceLabels { source })
                .set(i64::from(up));
        }
    }

    /// The text for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_common::stats::{Quantiles, Sources};

    #[test]
    fn records_quantiles_rates_and_sources() {
        let m = Metrics::new();
        let mut snapshot = MetricsSnapshot {
            timestamp_ms: 1,
            latency_timestamp_ms: Some(1),
            target_latency_ms: 5.0,
            window_s: 5.0,
            latency_ms: Some(Quantiles {
                count: 3,
                p50: 1.5,
                p95: 2.0,
                p99: 3.25,
                p999: 4.0,
                max: 9.0,
            }),
            producer_target_rate: Some(2000.0),
            producer_rate: Some(1990.0),
            consumer_rate: None,
            publish_delay_p99_ms: None,
            sources: Sources::default(),
        };
        snapshot.sources.producer.up = true;
        m.record(&snapshot, true);
        let text = m.encode();
        assert!(
            text.contains("overseer_e2e_latency_ms{quantile=\"0.99\"} 3.25"),
            "{text}"
        );
        assert!(
            text.contains("overseer_rate{series=\"producer_target\"} 2000.0"),
            "{text}"
        );
        assert!(
            text.contains("overseer_rate{series=\"consumer\"} NaN"),
            "{text}"
        );
        assert!(
            text.contains("overseer_source_up{source=\"producer\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("overseer_source_up{source=\"consumer\"} 0"),
            "{text}"
        );
        assert!(text.contains("overseer_latency_writes_total 1"), "{text}");
    }
}
