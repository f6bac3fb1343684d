//! The poll loop: every interval, ask both sources for their `/stats`, fold
//! the answers into the published figures, write the status files, read what
//! the sandbox left, and update what the dashboard shows.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use demo_common::stats::{LoadStats, MetricsSnapshot};
use demo_common::status::{self, LATENCY_FILE, METRICS_FILE};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::sandbox_view::SandboxWatch;
use crate::window::{Point, PollResult, Tracker};

/// Agent actions kept for the charts (a few per `vibectl auto` run, so
/// hours of them).
const ACTIONS_KEPT: usize = 2000;

/// One source's answer, or why there was none, in a line.
async fn fetch(client: &reqwest::Client, url: &str) -> PollResult {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| describe(&e))?
        .error_for_status()
        .map_err(|e| describe(&e))?;
    response.json::<LoadStats>().await.map_err(|e| describe(&e))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection refused or unreachable".to_string()
    } else if let Some(status) = e.status() {
        format!("HTTP {status}")
    } else if e.is_decode() {
        "answer is not load-generator stats".to_string()
    } else {
        e.to_string()
    }
}

/// Logs a condition when it changes, not every poll.
#[derive(Default)]
struct Once {
    last: Option<String>,
}

impl Once {
    fn report(&mut self, what: &str, now: Option<String>) {
        if now == self.last {
            return;
        }
        match &now {
            Some(problem) => tracing::warn!("{what}: {problem}"),
            None if self.last.is_some() => tracing::info!("{what}: ok again"),
            None => {}
        }
        self.last = now;
    }
}

pub(crate) async fn poll_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let config = &shared.config;
    // Shorter than the interval, so one slow source cannot stall the loop.
    let timeout = config.poll_interval.min(Duration::from_secs(3));
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot build the HTTP client: {e}");
            return;
        }
    };
    let mut tracker = Tracker::default();
    let mut watch = Some(SandboxWatch::new(&config.status_dir, ACTIONS_KEPT));
    let mut ticks = tokio::time::interval(config.poll_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut producer_log, mut consumer_log, mut write_log, mut latency_log) = (
        Once::default(),
        Once::default(),
        Once::default(),
        Once::default(),
    );
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let (producer, consumer) = tokio::join!(
            fetch(&client, &config.producer_url),
            fetch(&client, &config.consumer_url)
        );
        producer_log.report("producer stats", producer.as_ref().err().cloned());
        consumer_log.report("consumer stats", consumer.as_ref().err().cloned());
        let outcome = tracker.observe(
            config.target_latency_ms,
            config.stale_after,
            &producer,
            &consumer,
            status::now_ms(),
        );

        latency_log.report(
            "latency.txt",
            stale_reason(&outcome.snapshot, config.stale_after),
        );

        // File work (fsync included) off the async workers.
        let dir = config.status_dir.clone();
        let snapshot = outcome.snapshot.clone();
        let fresh_p99_ms = outcome.fresh_p99_ms;
        let mut taken = watch.take();
        let files = tokio::task::spawn_blocking(move || {
            let written = write_files(&dir, &snapshot, fresh_p99_ms);
            let view = taken.as_mut().map(SandboxWatch::refresh);
            (written, taken, view)
        })
        .await;
        let (written, sandbox) = match files {
            Ok((written, taken, view)) => {
                watch = taken;
                (written, view)
            }
            Err(e) => (Err(std::io::Error::other(e.to_string())), None),
        };
        // A watch lost to a panic starts over rather than stopping the page.
        if watch.is_none() {
            watch = Some(SandboxWatch::new(&config.status_dir, ACTIONS_KEPT));
        }
        write_log.report(
            &format!("writing to {}", config.status_dir.display()),
            written.as_ref().err().map(|e| e.to_string()),
        );
        shared.metrics.record(
            &outcome.snapshot,
            outcome.fresh_p99_ms.is_some() && written.is_ok(),
        );

        shared
            .last_poll_ms
            .store(status::now_ms(), Ordering::Relaxed);
        let mut live = shared.live();
        live.history.push(Point::from(&outcome.snapshot));
        live.snapshot = Some(outcome.snapshot);
        live.producer = producer.ok();
        live.consumer = consumer.ok();
        live.sandbox = sandbox.unwrap_or_default();
    }
}

/// Why latency.txt is not being refreshed, when its latest window is older
/// than `stale_after` (a poll that sees the same window twice is normal).
fn stale_reason(snapshot: &MetricsSnapshot, stale_after: Duration) -> Option<String> {
    let limit = stale_after.as_millis() as u64;
    match snapshot.latency_timestamp_ms {
        None => Some("not written yet: no consumer window with samples so far".to_string()),
        Some(t) if snapshot.timestamp_ms.saturating_sub(t) > limit => Some(format!(
            "left alone: no consumer window with samples for over {stale_after:?}"
        )),
        Some(_) => None,
    }
}

/// Whether a poll loop that last finished a poll at `last_ms` is still
/// working at `now_ms`: a few intervals of slack, since one poll may wait
/// for timeouts and slow file writes.
pub(crate) fn poll_loop_alive(now_ms: u64, last_ms: u64, interval: Duration) -> bool {
    let slack = (3 * interval).max(Duration::from_secs(15));
    now_ms.saturating_sub(last_ms) <= slack.as_millis() as u64
}

/// metrics.json every poll; latency.txt only with a fresh window's p99, so
/// its modification time says how fresh it is.
pub(crate) fn write_files(
    dir: &Path,
    snapshot: &MetricsSnapshot,
    fresh_p99_ms: Option<f64>,
) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    status::write_atomic(dir, METRICS_FILE, &json)?;
    if let Some(p99) = fresh_p99_ms {
        status::write_atomic(dir, LATENCY_FILE, status::format_latency(p99).as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_common::stats::{Quantiles, Sources};
    use std::sync::atomic::AtomicBool;

    fn snapshot(i: u64) -> MetricsSnapshot {
        MetricsSnapshot {
            timestamp_ms: i,
            latency_timestamp_ms: Some(i),
            target_latency_ms: 5.0,
            window_s: 5.0,
            latency_ms: Some(Quantiles {
                count: i,
                p99: i as f64 / 10.0,
                ..Default::default()
            }),
            producer_target_rate: Some(1000.0),
            producer_rate: Some(999.0),
            consumer_rate: Some(998.0),
            publish_delay_p99_ms: None,
            sources: Sources {
                // A long error makes each file many pages, so a torn write
                // would show.
                producer: demo_common::stats::SourceStatus {
                    up: false,
                    last_ok_ms: None,
                    error: Some("x".repeat((i % 7) as usize * 20_000)),
                },
                ..Default::default()
            },
        }
    }

    #[test]
    fn stale_latency_is_reported_only_past_the_bound() {
        let fifteen = Duration::from_secs(15);
        let mut s = snapshot(20_000);
        s.latency_timestamp_ms = None;
        assert!(
            stale_reason(&s, fifteen)
                .unwrap()
                .contains("not written yet")
        );
        s.latency_timestamp_ms = Some(5_000);
        assert_eq!(stale_reason(&s, fifteen), None);
        s.latency_timestamp_ms = Some(4_999);
        assert!(stale_reason(&s, fifteen).unwrap().contains("left alone"));
    }

    #[test]
    fn the_poll_loop_is_alive_within_a_few_intervals() {
        let five = Duration::from_secs(5);
        assert!(poll_loop_alive(100_000, 100_000, five));
        assert!(poll_loop_alive(115_000, 100_000, five));
        assert!(!poll_loop_alive(115_001, 100_000, five));
        // Slow polling gets proportionally more slack.
        assert!(poll_loop_alive(250_000, 100_000, Duration::from_secs(60)));
        // A clock stepped back is not a stall.
        assert!(poll_loop_alive(90_000, 100_000, five));
    }

    #[test]
    fn a_reader_never_sees_a_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &snapshot(0), Some(0.0)).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let dir = dir.path().to_path_buf();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let json = std::fs::read(dir.join(METRICS_FILE)).unwrap();
                    let parsed: MetricsSnapshot =
                        serde_json::from_slice(&json).unwrap_or_else(|e| {
                            panic!("partial metrics.json ({} bytes): {e}", json.len())
                        });
                    let latency = std::fs::read_to_string(dir.join(LATENCY_FILE)).unwrap();
                    status::parse_latency(&latency)
                        .unwrap_or_else(|e| panic!("partial latency.txt: {e}"));
                    assert!(latency.ends_with('\n'), "{latency:?}");
                    assert!(parsed.timestamp_ms < 400);
                    reads += 1;
                }
                reads
            })
        };
        for i in 1..400 {
            write_files(dir.path(), &snapshot(i), Some(i as f64 / 10.0)).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let reads = reader.join().unwrap();
        assert!(reads > 0, "the reader never ran");
        // Only the two files: no temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn latency_txt_is_left_alone_without_a_fresh_p99() {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &snapshot(1), Some(4.25)).unwrap();
        let path = dir.path().join(LATENCY_FILE);
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        write_files(dir.path(), &snapshot(2), None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), old);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4.2\n");
        let json: MetricsSnapshot =
            serde_json::from_slice(&std::fs::read(dir.path().join(METRICS_FILE)).unwrap()).unwrap();
        assert_eq!(json.timestamp_ms, 2, "metrics.json is written every poll");
    }
}
