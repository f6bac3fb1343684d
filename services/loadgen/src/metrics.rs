//! Counters and gauges of one `loadgen` process, exposed as Prometheus text
//! on `/metrics`, and the figures of the last window behind `/stats`. The
//! counters are the source of truth for the running totals in both.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use demo_common::stats::{LoadStats, Quantiles, Role};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::link::Link;

/// Labels of a latency quantile gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    /// `e2e`, `publish` or `publish_delay`.
    kind: &'static str,
    /// `0.5`, `0.95`, `0.99`, `0.999` or `1` (max).
    quantile: &'static str,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Producer: messages handed to the client.
    pub sent: Counter,
    /// Producer: acknowledged; consumer: received (valid or not).
    pub messages: Counter,
    /// Payload bytes of `messages`.
    pub bytes: Counter,
    /// Producer: failed deliveries; consumer: consume errors.
    pub errors: Counter,
    /// Consumer: records without a valid send-time header.
    pub invalid: Counter,
    /// Messages per second over the last window.
    pub rate: Gauge<f64, AtomicU64>,
    /// Producer: the adaptive target rate.
    pub target_rate: Gauge<f64, AtomicU64>,
    /// Producer: sent minus acknowledged minus failed.
    pub backlog: Gauge,
    /// 1 while a broker connection works.
    pub connected: Gauge,
    latency: Family<QuantileLabels, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    /// Metrics for `role`, all names prefixed `loadgen_` and labelled with
    /// the role.
    pub fn new(role: Role) -> Self {
        let role_label = match role {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        };
        let mut registry = Registry::with_prefix_and_labels(
            "loadgen",
            [("role".into(), role_label.into())].into_iter(),
        );
        let m = Self {
            registry: Registry::default(),
            sent: Counter::default(),
            messages: Counter::default(),
            bytes: Counter::default(),
            errors: Counter::default(),
            invalid: Counter::default(),
            rate: Gauge::default(),
            target_rate: Gauge::default(),
            backlog: Gauge::default(),
            connected: Gauge::default(),
            latency: Family::default(),
        };
        let (messages_help, errors_help) = match role {
            Role::Producer => ("Messages acknowledged by the broker", "Failed deliveries"),
            Role::Consumer => ("Messages received", "Consume errors"),
        };
        registry.register("messages", messages_help, m.messages.clone());
        registry.register("bytes", "Payload bytes of those messages", m.bytes.clone());
        registry.register("errors", errors_help, m.errors.clone());
        registry.register(
            "rate_msgs_per_second",
            "Messages per second over the last window",
            m.rate.clone(),
        );
        registry.register(
            "connected",
            "1 while a broker connection works",
            m.connected.clone(),
        );
        registry.register(
            "latency_ms",
            "Latency quantiles of the last window in ms (kind e2e: receive minus send; publish: ack minus send; publish_delay: actual minus intended send)",
            m.latency.clone(),
        );
        match role {
            Role::Producer => {
                registry.register(
                    "sent",
                    "Messages handed to the Kafka client",
                    m.sent.clone(),
                );
                registry.register(
                    "target_rate_msgs_per_second",
                    "The adaptive target rate",
                    m.target_rate.clone(),
                );
                registry.register(
                    "backlog_messages",
                    "Messages sent but not yet acknowledged",
                    m.backlog.clone(),
                );
            }
            Role::Consumer => {
                registry.register(
                    "invalid_messages",
                    "Records without a valid send-time header",
                    m.invalid.clone(),
                );
            }
        }
        Self { registry, ..m }
    }

    /// Publish one histogram's quantiles.
    pub fn set_latency(&self, kind: &'static str, q: &Quantiles) {
        for (quantile, value) in [
            ("0.5", q.p50),
            ("0.95", q.p95),
            ("0.99", q.p99),
            ("0.999", q.p999),
            ("1", q.max),
        ] {
            self.latency
                .get_or_create(&QuantileLabels { kind, quantile })
                .set(value);
        }
    }

    /// The Prometheus (OpenMetrics) text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Figures of the last completed window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowFigures {
    pub timestamp_ms: u64,
    pub window_s: f64,
    pub rate_msgs_per_s: f64,
    pub bytes_per_s: f64,
    pub e2e: Option<Quantiles>,
    pub publish_latency: Option<Quantiles>,
    pub publish_delay: Option<Quantiles>,
}

/// What the HTTP server and the role share.
pub struct Shared {
    pub role: Role,
    pub metrics: Metrics,
    pub link: Link,
    window: Mutex<WindowFigures>,
}

impl Shared {
    pub fn new(role: Role) -> Self {
        Self {
            role,
            metrics: Metrics::new(role),
            link: Link::new(),
            window: Mutex::new(WindowFigures::default()),
        }
    }

    /// Publish a completed window.
    pub fn set_window(&self, figures: WindowFigures) {
        self.metrics.rate.set(figures.rate_msgs_per_s);
        for (kind, q) in [
            ("e2e", &figures.e2e),
            ("publish", &figures.publish_latency),
            ("publish_delay", &figures.publish_delay),
        ] {
            if let Some(q) = q {
                self.metrics.set_latency(kind, q);
            }
        }
        *self.window.lock().unwrap_or_else(|e| e.into_inner()) = figures;
    }

    /// `/stats`: the last window's figures with live totals and state.
    pub fn load_stats(&self) -> LoadStats {
        let w = self
            .window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let m = &self.metrics;
        let connected = self.link.is_connected();
        m.connected.set(i64::from(connected));
        let producer = self.role == Role::Producer;
        LoadStats {
            role: self.role,
            timestamp_ms: w.timestamp_ms,
            window_s: w.window_s,
            connected,
            rate_msgs_per_s: w.rate_msgs_per_s,
            bytes_per_s: w.bytes_per_s,
            target_rate: producer.then(|| m.target_rate.get()),
            backlog: producer.then(|| u64::try_from(m.backlog.get()).unwrap_or(0)),
            messages_total: m.messages.get(),
            bytes_total: m.bytes.get(),
            errors_total: m.errors.get(),
            invalid_total: (!producer).then(|| m.invalid.get()),
            e2e_latency_ms: if producer {
                None
            } else {
                Some(w.e2e.unwrap_or_default())
            },
            publish_latency_ms: producer.then(|| w.publish_latency.unwrap_or_default()),
            publish_delay_ms: producer.then(|| w.publish_delay.unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_exposition_has_role_label_and_quantiles() {
        let shared = Shared::new(Role::Producer);
        shared.metrics.messages.inc_by(3);
        shared.metrics.target_rate.set(1000.0);
        shared.set_window(WindowFigures {
            publish_latency: Some(Quantiles {
                count: 1,
                p50: 1.5,
                ..Default::default()
            }),
            ..Default::default()
        });
        let text = shared.metrics.encode();
        assert!(
            text.contains("loadgen_messages_total{role=\"producer\"} 3"),
            "{text}"
        );
        assert!(text.contains("loadgen_target_rate_msgs_per_second{role=\"producer\"} 1000"));
        assert!(
            text.contains(
                "loadgen_latency_ms{role=\"producer\",kind=\"publish\",quantile=\"0.5\"} 1.5"
            ),
            "{text}"
        );
        assert!(!text.contains("invalid"));
        let stats = shared.load_stats();
        assert_eq!(stats.messages_total, 3);
        assert_eq!(stats.target_rate, Some(1000.0));
        assert_eq!(stats.e2e_latency_ms, None);
        assert_eq!(stats.invalid_total, None);
    }

    #[test]
    fn consumer_stats_have_consumer_fields_only() {
        let shared = Shared::new(Role::Consumer);
        shared.metrics.invalid.inc();
        let stats = shared.load_stats();
        assert_eq!(stats.invalid_total, Some(1));
        assert_eq!(stats.e2e_latency_ms, Some(Quantiles::default()));
        assert_eq!(stats.target_rate, None);
        assert_eq!(stats.backlog, None);
        assert!(!stats.connected);
        assert!(
            shared
                .metrics
                .encode()
                .contains("loadgen_invalid_messages_total")
        );
    }
}
