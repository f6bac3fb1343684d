//! The HTTP endpoints and `loadgen healthcheck` before and after a broker
//! is reachable.

use std::process::Command;
use std::time::Duration;

use demo_common::stats::Role;
use rdkafka::mocking::MockCluster;

use crate::support::{Running, config, unique, wait_for};

fn healthcheck(url: &str) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["healthcheck", "--url", url])
        .status()
        .unwrap()
        .code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_until_the_broker_answers_and_stops_while_waiting() {
    // Nothing listens on the discard port of loopback.
    let env = [("KAFKA_BROKER", "127.0.0.1:9"), ("KAFKA_TOPIC", "never")];
    let producer = Running::start(config(Role::Producer, &env)).await;
    let (status, body) = producer.get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    let url = producer.url("/healthz");
    let code = tokio::task::spawn_blocking(move || healthcheck(&url))
        .await
        .unwrap();
    assert_eq!(code, Some(1));
    let stats = producer.stats().await;
    assert!(!stats.connected);
    assert_eq!(stats.target_rate, Some(1000.0));
    let (status, metrics) = producer.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("loadgen_connected{role=\"producer\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("loadgen_sent_total{role=\"producer\"} 0"));
    // Shutdown while waiting for the broker is prompt and clean.
    let stopped = tokio::time::timeout(Duration::from_secs(10), producer.stop()).await;
    assert!(
        stopped.is_ok(),
        "producer did not stop while waiting for the broker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_once_connected_and_metrics_count() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let topic = unique("health");
    mock.create_topic(&topic, 2, 1).unwrap();
    let env = [
        ("KAFKA_BROKER", bootstrap.as_str()),
        ("KAFKA_TOPIC", topic.as_str()),
        ("MESSAGE_RATE_PER_SECOND", "200"),
    ];
    let producer = Running::start(config(Role::Producer, &env)).await;
    wait_for("/healthz 200", Duration::from_secs(30), || async {
        (producer.get("/healthz").await.0 == 200).then_some(())
    })
    .await;
    let url = producer.url("/healthz");
    let code = tokio::task::spawn_blocking(move || healthcheck(&url))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    wait_for(
        "acknowledged messages in /metrics",
        Duration::from_secs(30),
        || async {
            let (_, text) = producer.get("/metrics").await;
            text.lines()
                .find(|l| l.starts_with("loadgen_messages_total"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .filter(|n| *n > 0)
        },
    )
    .await;
    let stats = producer.stop().await;
    assert!(stats.messages_total > 0);
    assert_eq!(stats.errors_total, 0);
}
