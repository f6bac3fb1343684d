//! The poll loop: every interval, ask both sources for their `/stats`, fold
//! the answers into the published figures, write the status files and update
//! what the dashboard shows.

use std::sync::Arc;
use std::time::Duration;

use demo_common::stats::LoadStats;
use demo_common::status::{self, LATENCY_FILE, METRICS_FILE};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::window::{Point, PollResult, Tracker};

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
    let mut ticks = tokio::time::interval(config.poll_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut producer_log, mut consumer_log, mut write_log) =
        (Once::default(), Once::default(), Once::default());
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
        let written = write_files(&config.status_dir, &outcome.snapshot, outcome.fresh_p99_ms);
        write_log.report(
            &format!("writing to {}", config.status_dir.display()),
            written.as_ref().err().map(|e| e.to_string()),
        );
        shared.metrics.record(
            &outcome.snapshot,
            outcome.fresh_p99_ms.is_some() && written.is_ok(),
        );
        if let Ok(mut history) = shared.history.lock() {
            history.push(Point::from(&outcome.snapshot));
        }
        if let Ok(mut latest) = shared.latest.lock() {
            *latest = Some(outcome.snapshot);
        }
    }
}

/// metrics.json every poll; latency.txt only with a fresh window's p99, so
/// its modification time says how fresh it is.
fn write_files(
    dir: &std::path::Path,
    snapshot: &demo_common::stats::MetricsSnapshot,
    fresh_p99_ms: Option<f64>,
) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    status::write_atomic(dir, METRICS_FILE, &json)?;
    if let Some(p99) = fresh_p99_ms {
        status::write_atomic(dir, LATENCY_FILE, status::format_latency(p99).as_bytes())?;
    }
    Ok(())
}
