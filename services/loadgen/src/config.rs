//! The load generator's settings, read from environment variables through
//! [`demo_common::config::Settings`] and validated before anything connects.
//! Every setting is validated for both roles, because Compose hands both the
//! same environment and a typo should not wait for the other role to show.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use demo_common::config::{ConfigError, EnvSource, Settings};
use demo_common::stats::Role;

/// Upper bound of every rate setting (messages per second).
pub const RATE_LIMIT: u32 = 10_000_000;

/// Validated settings of one `loadgen` process.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub role: Role,
    /// `KAFKA_BROKER`: bootstrap servers.
    pub broker: String,
    /// `KAFKA_TOPIC`.
    pub topic: String,
    /// `TOPIC_PARTITIONS`: partitions when the topic has to be created.
    pub partitions: i32,
    /// `STATUS_DIR`: where `latency.txt` is read from.
    pub status_dir: PathBuf,
    /// `MESSAGE_RATE_PER_SECOND`: initial target rate.
    pub initial_rate: f64,
    /// `MIN_MESSAGE_RATE`.
    pub min_rate: f64,
    /// `MAX_MESSAGE_RATE`.
    pub max_rate: f64,
    /// `MESSAGE_SIZE_BYTES`: payload size.
    pub message_size: usize,
    /// `TARGET_LATENCY_MS`: consumer p99 target.
    pub target_latency_ms: f64,
    /// `PARTITION_SKEW`: share of messages pinned to partition 0.
    pub partition_skew: f64,
    /// `CONSUMER_GROUP`.
    pub group: String,
    /// `METRICS_ADDR`: HTTP listen address.
    pub metrics_addr: SocketAddr,
    /// `STATS_WINDOW_S`: window of rates and quantiles, and the rate
    /// controller's step.
    pub window: Duration,
    /// `LATENCY_MAX_AGE_S`: an older `latency.txt` is stale.
    pub latency_max_age: Duration,
    /// `MESSAGE_LIMIT`: the producer stops after this many messages
    /// (0 or unset: never). For tests and benchmarks.
    pub message_limit: Option<u64>,
    /// `LINGER_MS`: how long the producer batches before sending.
    pub linger_ms: u32,
}

impl Config {
    /// Read and validate every setting from `env`.
    pub fn from_env(role: Role, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let s = Settings::new(env);
        let broker = s.host_port("KAFKA_BROKER", "localhost:9092")?;
        let topic = topic_name(&s.string("KAFKA_TOPIC", "throughput-topic")?)?;
        let partitions = s.number("TOPIC_PARTITIONS", 12i32, 1..=10_000)?;
        let status_dir = PathBuf::from(s.string("STATUS_DIR", "/tmp/status")?);
        let initial_rate = s.number("MESSAGE_RATE_PER_SECOND", 1000u32, 1..=RATE_LIMIT)?;
        let min_rate = s.number("MIN_MESSAGE_RATE", 100u32, 1..=RATE_LIMIT)?;
        let max_rate = s.number("MAX_MESSAGE_RATE", 150_000u32, 1..=RATE_LIMIT)?;
        if min_rate > max_rate {
            return Err(ConfigError {
                var: "MIN_MESSAGE_RATE".into(),
                value: min_rate.to_string(),
                expected: format!("a number from 1 to MAX_MESSAGE_RATE ({max_rate})"),
            });
        }
        if !(min_rate..=max_rate).contains(&initial_rate) {
            return Err(ConfigError {
                var: "MESSAGE_RATE_PER_SECOND".into(),
                value: initial_rate.to_string(),
                expected: format!(
                    "a number from MIN_MESSAGE_RATE ({min_rate}) to MAX_MESSAGE_RATE ({max_rate})"
                ),
            });
        }
        let message_size = s.number("MESSAGE_SIZE_BYTES", 1024usize, 1..=1_000_000)?;
        let target_latency_ms = s.number("TARGET_LATENCY_MS", 5.0f64, 0.1..=60_000.0)?;
        let partition_skew = s.number("PARTITION_SKEW", 0.0f64, 0.0..=1.0)?;
        let group = s.string("CONSUMER_GROUP", "throughput-consumer")?;
        let metrics_addr = s.socket_addr("METRICS_ADDR", "0.0.0.0:9100")?;
        let window_s = s.number("STATS_WINDOW_S", 5.0f64, 0.1..=3600.0)?;
        let max_age_s = s.number("LATENCY_MAX_AGE_S", 30.0f64, 1.0..=86_400.0)?;
        let limit = s.number("MESSAGE_LIMIT", 0u64, 0..=u64::MAX)?;
        let linger_ms = s.number("LINGER_MS", 1u32, 0..=1000)?;
        Ok(Self {
            role,
            broker,
            topic,
            partitions,
            status_dir,
            initial_rate: f64::from(initial_rate),
            min_rate: f64::from(min_rate),
            max_rate: f64::from(max_rate),
            message_size,
            target_latency_ms,
            partition_skew,
            group,
            metrics_addr,
            window: Duration::from_secs_f64(window_s),
            latency_max_age: Duration::from_secs_f64(max_age_s),
            message_limit: (limit > 0).then_some(limit),
            linger_ms,
        })
    }
}

/// Kafka's rule for topic names: 1 to 249 of `a-z A-Z 0-9 . _ -`, and not
/// `.` or `..`.
fn topic_name(name: &str) -> Result<String, ConfigError> {
    let valid = (1..=249).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "."
        && name != "..";
    if valid {
        Ok(name.to_string())
    } else {
        Err(ConfigError {
            var: "KAFKA_TOPIC".into(),
            value: name.to_string(),
            expected: "1 to 249 characters from a-z A-Z 0-9 . _ -".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        Config::from_env(Role::Producer, &env)
    }

    #[test]
    fn defaults_match_the_documented_table() {
        let c = config(&[]).unwrap();
        assert_eq!(c.broker, "localhost:9092");
        assert_eq!(c.topic, "throughput-topic");
        assert_eq!(c.partitions, 12);
        assert_eq!(c.status_dir, PathBuf::from("/tmp/status"));
        assert_eq!(
            (c.initial_rate, c.min_rate, c.max_rate),
            (1000.0, 100.0, 150_000.0)
        );
        assert_eq!(c.message_size, 1024);
        assert_eq!(c.target_latency_ms, 5.0);
        assert_eq!(c.partition_skew, 0.0);
        assert_eq!(c.group, "throughput-consumer");
        assert_eq!(c.metrics_addr, "0.0.0.0:9100".parse().unwrap());
        assert_eq!(c.window, Duration::from_secs(5));
        assert_eq!(c.latency_max_age, Duration::from_secs(30));
        assert_eq!(c.message_limit, None);
    }

    /// Every variable with a value it must refuse; the error names it.
    const BAD_VALUES: &[(&str, &str)] = &[
        ("KAFKA_BROKER", "kafka"),
        ("KAFKA_BROKER", "kafka:0"),
        ("KAFKA_BROKER", ""),
        ("KAFKA_TOPIC", "has space"),
        ("KAFKA_TOPIC", ".."),
        ("KAFKA_TOPIC", ""),
        ("TOPIC_PARTITIONS", "0"),
        ("TOPIC_PARTITIONS", "twelve"),
        ("STATUS_DIR", " "),
        ("MESSAGE_RATE_PER_SECOND", "0"),
        ("MESSAGE_RATE_PER_SECOND", "fast"),
        ("MESSAGE_RATE_PER_SECOND", "99"),
        ("MESSAGE_RATE_PER_SECOND", "150001"),
        ("MIN_MESSAGE_RATE", "-1"),
        ("MIN_MESSAGE_RATE", "200000"),
        ("MAX_MESSAGE_RATE", "0"),
        ("MAX_MESSAGE_RATE", "1e9"),
        ("MESSAGE_SIZE_BYTES", "0"),
        ("MESSAGE_SIZE_BYTES", "2000000"),
        ("TARGET_LATENCY_MS", "0"),
        ("TARGET_LATENCY_MS", "NaN"),
        ("PARTITION_SKEW", "1.5"),
        ("PARTITION_SKEW", "-0.1"),
        ("CONSUMER_GROUP", ""),
        ("METRICS_ADDR", "localhost"),
        ("METRICS_ADDR", "0.0.0.0:99999"),
        ("STATS_WINDOW_S", "0"),
        ("LATENCY_MAX_AGE_S", "never"),
        ("MESSAGE_LIMIT", "-5"),
    ];

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in BAD_VALUES {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, *var, "{var}={value:?} gave {err}");
            let line = err.to_string();
            assert!(line.contains(var) && line.contains("expected"), "{line}");
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn rate_bounds_are_checked_together() {
        let err = config(&[("MIN_MESSAGE_RATE", "500"), ("MAX_MESSAGE_RATE", "400")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid MIN_MESSAGE_RATE=\"500\": expected a number from 1 to MAX_MESSAGE_RATE (400)"
        );
        let ok = config(&[
            ("MESSAGE_RATE_PER_SECOND", "50"),
            ("MIN_MESSAGE_RATE", "10"),
            ("MESSAGE_LIMIT", "7"),
        ])
        .unwrap();
        assert_eq!(ok.initial_rate, 50.0);
        assert_eq!(ok.message_limit, Some(7));
    }
}
