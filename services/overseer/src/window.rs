//! From one poll of both sources to the figures the overseer publishes: the
//! `metrics.json` snapshot and, only when the consumer's window is new and
//! recent, the p99 for `latency.txt`. Pure, so the rules are unit-tested.

use std::time::Duration;

use demo_common::stats::{LoadStats, MetricsSnapshot, Quantiles, SourceStatus, Sources};
use serde::Serialize;

/// What one poll of one source gave.
pub type PollResult = Result<LoadStats, String>;

/// Keeps what must survive between polls: when each source last answered and
/// which consumer window was last published.
#[derive(Debug, Default)]
pub struct Tracker {
    sources: Sources,
    /// End of the consumer window last written to latency.txt.
    last_published_window_ms: Option<u64>,
    /// The last consumer figures with samples, for metrics.json's
    /// `latency_timestamp_ms` when the consumer is down.
    last_latency_ms: Option<u64>,
}

/// The outcome of one poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub snapshot: MetricsSnapshot,
    /// The p99 to write to latency.txt; `None` leaves the file (and its
    /// modification time) alone, so readers see its true age.
    pub fresh_p99_ms: Option<f64>,
}

/// One point of the charts' history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub time_ms: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub target_ms: f64,
    pub producer_rate: Option<f64>,
    pub producer_target_rate: Option<f64>,
    pub consumer_rate: Option<f64>,
}

impl From<&MetricsSnapshot> for Point {
    fn from(m: &MetricsSnapshot) -> Self {
        Self {
            time_ms: m.timestamp_ms,
            p50_ms: m.latency_ms.map(|q| q.p50),
            p95_ms: m.latency_ms.map(|q| q.p95),
            p99_ms: m.latency_ms.map(|q| q.p99),
            p999_ms: m.latency_ms.map(|q| q.p999),
            max_ms: m.latency_ms.map(|q| q.max),
            target_ms: m.target_latency_ms,
            producer_rate: m.producer_rate,
            producer_target_rate: m.producer_target_rate,
            consumer_rate: m.consumer_rate,
        }
    }
}

impl Tracker {
    /// Fold in one poll of both sources made at `now_ms`.
    pub fn observe(
        &mut self,
        target_latency_ms: f64,
        stale_after: Duration,
        producer: &PollResult,
        consumer: &PollResult,
        now_ms: u64,
    ) -> Outcome {
        update_source(&mut self.sources.producer, producer, now_ms);
        update_source(&mut self.sources.consumer, consumer, now_ms);
        let producer = producer.as_ref().ok();
        let consumer = consumer.as_ref().ok();

        // Quantiles of a window without samples are zeros, not a latency.
        let latency = consumer.and_then(|c| {
            c.e2e_latency_ms
                .filter(|q| q.count > 0)
                .map(|q| (q, c.timestamp_ms))
        });
        if let Some((_, window_end)) = latency {
            self.last_latency_ms = Some(window_end);
        }
        let fresh_p99_ms = latency.and_then(|(q, window_end)| {
            let recent = now_ms.saturating_sub(window_end) <= stale_after.as_millis() as u64;
            let new = self
                .last_published_window_ms
                .is_none_or(|last| window_end > last);
            (recent && new).then(|| {
                self.last_published_window_ms = Some(window_end);
                q.p99
            })
        });

        let snapshot = MetricsSnapshot {
            timestamp_ms: now_ms,
            latency_timestamp_ms: self.last_latency_ms,
            target_latency_ms,
            window_s: consumer.or(producer).map(|s| s.window_s).unwrap_or(0.0),
            latency_ms: latency.map(|(q, _)| q),
            producer_target_rate: producer.and_then(|p| p.target_rate),
            producer_rate: producer.map(|p| p.rate_msgs_per_s),
            consumer_rate: consumer.map(|c| c.rate_msgs_per_s),
            publish_delay_p99_ms: producer
                .and_then(|p| p.publish_delay_ms)
                .filter(|q| q.count > 0)
                .map(|q: Quantiles| q.p99),
            sources: self.sources.clone(),
        };
        Outcome {
            snapshot,
            fresh_p99_ms,
        }
    }
}

fn update_source(status: &mut SourceStatus, poll: &PollResult, now_ms: u64) {
    match poll {
        Ok(_) => {
            status.up = true;
            status.last_ok_ms = Some(now_ms);
            status.error = None;
        }
        Err(e) => {
            status.up = false;
            status.error = Some(e.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_common::stats::Role;

    const STALE: Duration = Duration::from_secs(15);

    fn stats(role: Role, window_end: u64, p99: f64, count: u64) -> LoadStats {
        LoadStats {
            role,
            timestamp_ms: window_end,
            window_s: 5.0,
            connected: true,
            rate_msgs_per_s: 1000.0,
            bytes_per_s: 1_024_000.0,
            target_rate: (role == Role::Producer).then_some(1200.0),
            backlog: None,
            messages_total: 5000,
            bytes_total: 5_120_000,
            errors_total: 0,
            invalid_total: None,
            e2e_latency_ms: (role == Role::Consumer).then_some(Quantiles {
                count,
                p50: p99 / 2.0,
                p95: p99 * 0.9,
                p99,
                p999: p99 * 1.5,
                max: p99 * 2.0,
            }),
            publish_latency_ms: None,
            publish_delay_ms: (role == Role::Producer).then_some(Quantiles {
                count: 10,
                p99: 0.3,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_new_recent_window_is_published_once() {
        let mut t = Tracker::default();
        let p = Ok(stats(Role::Producer, 10_000, 0.0, 0));
        let c = Ok(stats(Role::Consumer, 10_000, 4.2, 100));
        let first = t.observe(5.0, STALE, &p, &c, 11_000);
        assert_eq!(first.fresh_p99_ms, Some(4.2));
        assert_eq!(first.snapshot.latency_ms.unwrap().p99, 4.2);
        assert_eq!(first.snapshot.latency_timestamp_ms, Some(10_000));
        assert_eq!(first.snapshot.producer_target_rate, Some(1200.0));
        assert_eq!(first.snapshot.publish_delay_p99_ms, Some(0.3));
        assert!(first.snapshot.sources.consumer.up);
        // The same window polled again is not fresh news.
        let again = t.observe(5.0, STALE, &p, &c, 12_000);
        assert_eq!(again.fresh_p99_ms, None);
        assert_eq!(again.snapshot.latency_ms.unwrap().p99, 4.2);
        // The next window is.
        let c2 = Ok(stats(Role::Consumer, 15_000, 6.0, 100));
        assert_eq!(
            t.observe(5.0, STALE, &p, &c2, 15_500).fresh_p99_ms,
            Some(6.0)
        );
    }

    #[test]
    fn an_old_window_or_an_empty_one_is_not_published() {
        let mut t = Tracker::default();
        let p = Ok(stats(Role::Producer, 0, 0.0, 0));
        let old = Ok(stats(Role::Consumer, 10_000, 4.0, 100));
        assert_eq!(
            t.observe(5.0, STALE, &p, &old, 10_000 + 16_000)
                .fresh_p99_ms,
            None
        );
        let empty = Ok(stats(Role::Consumer, 30_000, 0.0, 0));
        let out = t.observe(5.0, STALE, &p, &empty, 30_500);
        assert_eq!(out.fresh_p99_ms, None);
        assert_eq!(out.snapshot.latency_ms, None, "no samples is no latency");
    }

    #[test]
    fn a_source_that_does_not_answer_is_marked_down_and_keeps_its_last_ok() {
        let mut t = Tracker::default();
        let p = Ok(stats(Role::Producer, 1_000, 0.0, 0));
        let c = Ok(stats(Role::Consumer, 1_000, 3.0, 10));
        t.observe(5.0, STALE, &p, &c, 1_500);
        let down: PollResult = Err("connection refused".into());
        let out = t.observe(5.0, STALE, &p, &down, 6_500);
        assert_eq!(out.fresh_p99_ms, None);
        let consumer = &out.snapshot.sources.consumer;
        assert!(!consumer.up);
        assert_eq!(consumer.last_ok_ms, Some(1_500));
        assert_eq!(consumer.error.as_deref(), Some("connection refused"));
        assert_eq!(out.snapshot.latency_ms, None);
        assert_eq!(out.snapshot.consumer_rate, None);
        // The timestamp of the latency stays that of the last real window.
        assert_eq!(out.snapshot.latency_timestamp_ms, Some(1_000));
        assert!(out.snapshot.sources.producer.up);
    }

    #[test]
    fn history_point_follows_the_snapshot() {
        let mut t = Tracker::default();
        let out = t.observe(
            5.0,
            STALE,
            &Ok(stats(Role::Producer, 1_000, 0.0, 0)),
            &Ok(stats(Role::Consumer, 1_000, 8.0, 10)),
            2_000,
        );
        let point = Point::from(&out.snapshot);
        assert_eq!(point.p99_ms, Some(8.0));
        assert_eq!(point.p50_ms, Some(4.0));
        assert_eq!(point.max_ms, Some(16.0));
        assert_eq!(point.time_ms, 2_000);
        assert_eq!(point.consumer_rate, Some(1000.0));
    }
}
