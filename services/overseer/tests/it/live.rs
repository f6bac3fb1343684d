//! Real load generator processes, a real overseer: latency.txt appears with a
//! plausible number, metrics.json agrees with the consumer's own /stats, and
//! when the consumer dies the overseer keeps serving, marks it down and stops
//! refreshing latency.txt.

use std::time::{Duration, SystemTime};

use testkit::{http_get, wait_for};

use crate::support::{Live, Options};

fn latency_mtime(live: &Live) -> SystemTime {
    std::fs::metadata(live.dir().join("latency.txt"))
        .unwrap()
        .modified()
        .unwrap()
}

#[test]
fn latency_and_metrics_follow_the_consumer_and_survive_its_death() {
    let mut live = Live::start(Options::default());

    let p99 = wait_for("latency.txt with a number", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(live.dir().join("latency.txt")).ok()?;
        text.trim().parse::<f64>().ok()
    });
    assert!(p99 > 0.0 && p99 < 10_000.0, "implausible p99 {p99} ms");

    // metrics.json carries the consumer's own window figures: compare when
    // both describe the same window.
    let (metrics, stats) = wait_for(
        "metrics.json and /stats on the same window",
        Duration::from_secs(30),
        || {
            let stats = live.consumer_stats()?;
            let metrics = live.metrics()?;
            (metrics.latency_timestamp_ms == Some(stats.timestamp_ms)
                && metrics.latency_ms.is_some())
            .then_some((metrics, stats))
        },
    );
    assert_eq!(metrics.latency_ms, stats.e2e_latency_ms);
    assert_eq!(metrics.consumer_rate, Some(stats.rate_msgs_per_s));
    let q = metrics.latency_ms.unwrap();
    assert!(
        q.count > 0 && q.p50 > 0.0 && q.p50 <= q.p99 && q.p99 <= q.max,
        "{q:?}"
    );
    assert!(
        metrics.producer_rate.is_some_and(|r| r > 0.0),
        "{metrics:?}"
    );
    assert!(metrics.producer_target_rate.is_some());
    assert!(metrics.sources.producer.up && metrics.sources.consumer.up);

    // The consumer dies.
    live.kill_consumer();
    let down = wait_for("the consumer marked down", Duration::from_secs(10), || {
        live.metrics().filter(|m| !m.sources.consumer.up)
    });
    assert!(
        down.latency_ms.is_none() && down.consumer_rate.is_none(),
        "{down:?}"
    );
    assert!(down.sources.consumer.error.is_some());
    assert!(down.sources.producer.up, "the producer still answers");
    // latency.txt is no longer refreshed over several polls.
    let frozen = latency_mtime(&live);
    let before = down.timestamp_ms;
    wait_for("four more polls", Duration::from_secs(10), || {
        live.metrics()
            .filter(|m| m.timestamp_ms >= before + 4 * 500)
    });
    assert_eq!(
        latency_mtime(&live),
        frozen,
        "latency.txt refreshed without a consumer"
    );
    // The overseer itself is fine, and says so to the Compose healthcheck
    // (which reaches a wildcard DASHBOARD_ADDR through 127.0.0.1).
    assert_eq!(http_get(&live.url("/healthz")).map(|(s, _)| s), Some(200));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_overseer"))
        .arg("healthcheck")
        .env("DASHBOARD_ADDR", format!("0.0.0.0:{}", live.dashboard_port))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, body) = http_get(&live.url("/metrics")).unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("overseer_source_up{source=\"consumer\"} 0"),
        "{body}"
    );
}
