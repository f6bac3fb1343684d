//! The JSON the services exchange: the load generator's `/stats` answer
//! ([`LoadStats`]) that the overseer polls, and the overseer's `metrics.json`
//! ([`MetricsSnapshot`]) that the sandbox, xtask and the dashboard read.
//! Latencies are in milliseconds (fractions allowed), rates in messages per
//! second, timestamps in milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};

/// Which side of the load a `/stats` answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Producer,
    Consumer,
}

/// Quantiles of one latency histogram over one window, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Quantiles {
    /// How many samples the window held; the quantiles are 0 when it is 0.
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The load generator's `/stats`: figures of the last completed window plus
/// running totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadStats {
    pub role: Role,
    /// When the window ended.
    pub timestamp_ms: u64,
    /// Length of the window the rates and quantiles cover, in seconds.
    pub window_s: f64,
    /// Whether the client currently has a working connection to a broker.
    pub connected: bool,
    /// Messages per second over the window (producer: acknowledged;
    /// consumer: received).
    pub rate_msgs_per_s: f64,
    /// Payload bytes per second over the window.
    pub bytes_per_s: f64,
    /// Producer only: the adaptive target rate now.
    pub target_rate: Option<f64>,
    /// Producer only: messages sent but not yet acknowledged.
    pub backlog: Option<u64>,
    /// Messages since start (producer: acknowledged; consumer: received).
    pub messages_total: u64,
    pub bytes_total: u64,
    /// Producer: failed deliveries; consumer: fetch/consume errors.
    pub errors_total: u64,
    /// Consumer only: records without a valid send-time header.
    pub invalid_total: Option<u64>,
    /// Consumer only: end-to-end latency (receive time minus send time).
    pub e2e_latency_ms: Option<Quantiles>,
    /// Producer only: acknowledgement time minus send time.
    pub publish_latency_ms: Option<Quantiles>,
    /// Producer only: actual minus intended send time (coordinated omission).
    pub publish_delay_ms: Option<Quantiles>,
}

/// Whether the overseer could read one source on its last poll.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SourceStatus {
    pub up: bool,
    /// Last successful poll.
    pub last_ok_ms: Option<u64>,
    /// Why the last poll failed, when it did.
    pub error: Option<String>,
}

/// Per-source status in `metrics.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sources {
    pub producer: SourceStatus,
    pub consumer: SourceStatus,
}

/// `metrics.json`: the overseer's full snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// When this snapshot was written.
    pub timestamp_ms: u64,
    /// When the latency figures below were measured (end of the consumer's
    /// window); `None` when there has been no consumer data yet.
    pub latency_timestamp_ms: Option<u64>,
    pub target_latency_ms: f64,
    /// Window the figures cover, in seconds.
    pub window_s: f64,
    /// Consumer end-to-end latency; `None` while the consumer is down.
    pub latency_ms: Option<Quantiles>,
    pub producer_target_rate: Option<f64>,
    pub producer_rate: Option<f64>,
    pub consumer_rate: Option<f64>,
    pub publish_delay_p99_ms: Option<f64>,
    pub sources: Sources,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_stats_json_field_names_are_stable() {
        let s = LoadStats {
            role: Role::Consumer,
            timestamp_ms: 1,
            window_s: 5.0,
            connected: true,
            rate_msgs_per_s: 10.0,
            bytes_per_s: 10240.0,
            target_rate: None,
            backlog: None,
            messages_total: 50,
            bytes_total: 51200,
            errors_total: 0,
            invalid_total: Some(0),
            e2e_latency_ms: Some(Quantiles::default()),
            publish_latency_ms: None,
            publish_delay_ms: None,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["role"], "consumer");
        assert_eq!(v["e2e_latency_ms"]["p999"], 0.0);
        let back: LoadStats = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
