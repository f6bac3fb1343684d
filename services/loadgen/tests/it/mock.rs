//! Both roles against librdkafka's mock cluster: real Kafka protocol over
//! loopback, with fault injection.

use std::time::{Duration, Instant};

use demo_common::stats::{LoadStats, Quantiles, Role};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer};

use crate::support::{Running, config, probe_until_consuming, unique, wait_for};

fn assert_plausible(what: &str, q: &Quantiles) {
    assert!(q.count > 0, "{what}: no samples");
    assert!(q.max > 0.0, "{what}: zero latency {q:?}");
    assert!(
        q.p50 <= q.p95 && q.p95 <= q.p99 && q.p99 <= q.p999 && q.p999 <= q.max,
        "{what}: quantiles out of order {q:?}"
    );
}

/// Poll `/stats` until a window with samples shows up; returns it.
async fn window_with_samples(
    running: &Running,
    pick: fn(&LoadStats) -> Option<Quantiles>,
) -> Quantiles {
    wait_for(
        "a stats window with latency samples",
        Duration::from_secs(30),
        || async { pick(&running.stats().await).filter(|q| q.count > 0) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_produced_is_consumed_with_plausible_latency() {
    const N: u64 = 3000;
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let (topic, group) = (unique("count"), unique("group"));
    // The mock has no CreateTopics; the admin path is exercised with tansu.
    mock.create_topic(&topic, 3, 1).unwrap();
    let common = [
        ("KAFKA_BROKER", bootstrap.as_str()),
        ("KAFKA_TOPIC", topic.as_str()),
        ("TOPIC_PARTITIONS", "3"),
        ("CONSUMER_GROUP", group.as_str()),
    ];
    let consumer = Running::start(config(Role::Consumer, &common)).await;
    let probes = probe_until_consuming(&bootstrap, &topic, &consumer).await;

    let mut producer_env = common.to_vec();
    producer_env.extend([
        ("MESSAGE_RATE_PER_SECOND", "2000"),
        ("MAX_MESSAGE_RATE", "2000"),
        ("MESSAGE_LIMIT", "3000"),
    ]);
    let started = Instant::now();
    let producer = Running::start(config(Role::Producer, &producer_env)).await;
    let publish = window_with_samples(&producer, |s| s.publish_latency_ms).await;
    let delay = producer.stats().await.publish_delay_ms.unwrap();
    let e2e = window_with_samples(&consumer, |s| s.e2e_latency_ms).await;
    let produced = producer.finished().await;
    assert_eq!(produced.messages_total, N, "acknowledged: {produced:?}");
    assert_eq!(produced.errors_total, 0);
    assert_eq!(produced.backlog, Some(0));

    let consumed = wait_for(
        "all messages at the consumer",
        Duration::from_secs(60),
        || async {
            let s = consumer.stats().await;
            (s.messages_total - s.invalid_total.unwrap() >= N).then_some(s)
        },
    )
    .await;
    println!(
        "{N} messages through the mock in {:.1} s; e2e {e2e:?}; publish {publish:?}; delay {delay:?}",
        started.elapsed().as_secs_f64()
    );
    let consumed_stats = consumer.stop().await;
    assert_eq!(consumed.messages_total - consumed.invalid_total.unwrap(), N);
    assert_eq!(
        consumed_stats.messages_total - consumed_stats.invalid_total.unwrap(),
        N
    );
    assert!(consumed_stats.invalid_total.unwrap() >= probes);
    assert_eq!(
        consumed_stats.bytes_total,
        N * 1024 + 20 * consumed_stats.invalid_total.unwrap()
    );
    assert_plausible("end-to-end", &e2e);
    assert_plausible("publish", &publish);
    assert!(delay.p50 <= delay.max);
}

/// High watermark of each partition of `topic`.
fn partition_counts(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let client: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            client
                .client()
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_skew_pins_messages_to_partition_zero() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    for (skew, topic) in [("1.0", unique("skewed")), ("0.0", unique("spread"))] {
        mock.create_topic(&topic, 4, 1).unwrap();
        let env = [
            ("KAFKA_BROKER", bootstrap.as_str()),
            ("KAFKA_TOPIC", topic.as_str()),
            ("TOPIC_PARTITIONS", "4"),
            ("PARTITION_SKEW", skew),
            ("MESSAGE_RATE_PER_SECOND", "2000"),
            ("MESSAGE_LIMIT", "500"),
        ];
        let stats = Running::start(config(Role::Producer, &env))
            .await
            .finished()
            .await;
        assert_eq!(stats.messages_total, 500);
        let counts = tokio::task::spawn_blocking({
            let (b, t) = (bootstrap.clone(), topic.clone());
            move || partition_counts(&b, &t, 4)
        })
        .await
        .unwrap();
        println!("PARTITION_SKEW={skew}: messages per partition {counts:?}");
        assert_eq!(counts.iter().sum::<i64>(), 500);
        if skew == "1.0" {
            assert_eq!(counts, vec![500, 0, 0, 0]);
        } else {
            assert!(
                counts.iter().filter(|c| **c > 0).count() >= 2,
                "unskewed messages all on one partition: {counts:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_roles_ride_through_a_broker_outage() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let (topic, group) = (unique("outage"), unique("group"));
    mock.create_topic(&topic, 2, 1).unwrap();
    let common = [
        ("KAFKA_BROKER", bootstrap.as_str()),
        ("KAFKA_TOPIC", topic.as_str()),
        ("TOPIC_PARTITIONS", "2"),
        ("CONSUMER_GROUP", group.as_str()),
    ];
    let consumer = Running::start(config(Role::Consumer, &common)).await;
    probe_until_consuming(&bootstrap, &topic, &consumer).await;
    let mut producer_env = common.to_vec();
    producer_env.push(("MESSAGE_RATE_PER_SECOND", "500"));
    let producer = Running::start(config(Role::Producer, &producer_env)).await;

    let flowing = |min: u64| {
        let (producer, consumer) = (&producer, &consumer);
        move || async move {
            let (p, c) = (producer.stats().await, consumer.stats().await);
            let c_valid = c.messages_total - c.invalid_total.unwrap();
            (p.connected && c.connected && p.messages_total > min && c_valid > min)
                .then_some((p.messages_total, c_valid))
        }
    };
    let (acked, _) = wait_for("messages flowing", Duration::from_secs(30), flowing(100)).await;
    assert!(producer.get("/healthz").await.0 == 200);

    mock.broker_down(1).unwrap();
    let down_at = Instant::now();
    wait_for(
        "both roles to notice the outage",
        Duration::from_secs(30),
        || async {
            let (p, c) = (producer.stats().await, consumer.stats().await);
            (!p.connected && !c.connected).then_some(())
        },
    )
    .await;
    let noticed = down_at.elapsed();
    // The producer keeps sending; the unacknowledged messages pile up.
    let during = wait_for(
        "a backlog during the outage",
        Duration::from_secs(30),
        || async {
            let s = producer.stats().await;
            (s.backlog.unwrap() >= 200).then_some(s)
        },
    )
    .await;
    assert!(!during.connected);
    // Health stays up through an outage the agent may have caused.
    assert_eq!(producer.get("/healthz").await.0, 200);
    assert_eq!(consumer.get("/healthz").await.0, 200);
    let (_, metrics) = producer.get("/metrics").await;
    assert!(
        metrics.contains("loadgen_connected{role=\"producer\"} 0"),
        "{metrics}"
    );
    assert!(during.messages_total >= acked);

    mock.broker_up(1).unwrap();
    let up_at = Instant::now();
    let before_up = producer.stats().await.messages_total;
    let (after_p, after_c) = wait_for(
        "both roles to recover after the broker came back",
        Duration::from_secs(60),
        flowing(before_up + 100),
    )
    .await;
    let recovered = up_at.elapsed();
    println!(
        "outage noticed after {:.1} s; both roles recovered {:.1} s after the broker came back \
         (producer {after_p} acknowledged, consumer {after_c} received)",
        noticed.as_secs_f64(),
        recovered.as_secs_f64()
    );
    let p = producer.stop().await;
    let c = consumer.stop().await;
    assert!(p.messages_total > before_up && c.messages_total > 0);
}
