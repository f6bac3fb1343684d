//! The overseer's settings, read from environment variables and validated
//! before anything starts (a bad value: one line, exit code 2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use demo_common::config::{ConfigError, EnvSource, Settings};
use demo_common::status::DEFAULT_STATUS_DIR;

/// Validated settings of one overseer.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `PRODUCER_STATS_URL`: the producer's `/stats`.
    pub producer_url: String,
    /// `CONSUMER_STATS_URL`: the consumer's `/stats`.
    pub consumer_url: String,
    /// `STATUS_DIR`: where latency.txt and metrics.json go, and where the
    /// sandbox's files are read.
    pub status_dir: PathBuf,
    /// `TARGET_LATENCY_MS`: the consumer p99 target, drawn on the charts.
    pub target_latency_ms: f64,
    /// `POLL_INTERVAL_S`: how often both sources are polled.
    pub poll_interval: Duration,
    /// `STALE_AFTER_S`: consumer figures whose window ended longer ago than
    /// this are not written to latency.txt.
    pub stale_after: Duration,
    /// `HISTORY_MINUTES`: how much history the charts show (and memory holds).
    pub history: Duration,
    /// `DASHBOARD_ADDR`: where the dashboard and the API listen.
    pub dashboard_addr: SocketAddr,
}

impl Config {
    /// Read and validate every setting from `env`.
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let s = Settings::new(env);
        let poll_s = s.number("POLL_INTERVAL_S", 5.0f64, 0.5..=600.0)?;
        Ok(Self {
            producer_url: s.http_url("PRODUCER_STATS_URL", "http://producer:9100/stats")?,
            consumer_url: s.http_url("CONSUMER_STATS_URL", "http://consumer:9100/stats")?,
            status_dir: PathBuf::from(s.string("STATUS_DIR", DEFAULT_STATUS_DIR)?),
            target_latency_ms: s.number("TARGET_LATENCY_MS", 5.0f64, 0.1..=60_000.0)?,
            poll_interval: Duration::from_secs_f64(poll_s),
            stale_after: Duration::from_secs_f64(s.number(
                "STALE_AFTER_S",
                15.0f64,
                1.0..=86_400.0,
            )?),
            history: Duration::from_secs(60 * s.number("HISTORY_MINUTES", 30u64, 1..=720)?),
            dashboard_addr: s.socket_addr("DASHBOARD_ADDR", "0.0.0.0:8080")?,
        })
    }

    /// How many poll results the history keeps: one per interval over the
    /// span, both ends included.
    pub fn history_points(&self) -> usize {
        let intervals = self.history.as_secs_f64() / self.poll_interval.as_secs_f64();
        intervals.ceil() as usize + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        Config::from_env(&env)
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.producer_url, "http://producer:9100/stats");
        assert_eq!(c.poll_interval, Duration::from_secs(5));
        assert_eq!(c.dashboard_addr.port(), 8080);
        // 30 minutes at one point per 5 s, both ends included.
        assert_eq!(c.history_points(), 361);
        assert_eq!(c.stale_after, Duration::from_secs(15));
        assert_eq!(c.history, Duration::from_secs(1800));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("POLL_INTERVAL_S", "0"),
            ("PRODUCER_STATS_URL", "producer:9100"),
            ("TARGET_LATENCY_MS", "fast"),
            ("DASHBOARD_ADDR", "8080"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var);
        }
    }
}
