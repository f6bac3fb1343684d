//! Produce and consume through a real, separate broker process (tansu)
//! over a real socket; the topic is created by the producer's admin call.

use std::time::{Duration, Instant};

use demo_common::stats::Role;
use testkit::tansu::Tansu;

use crate::support::{Running, config, probe_until_consuming, unique, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_through_tansu() {
    const N: u64 = 2000;
    let Some(tansu) = Tansu::start_or_skip() else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    let (topic, group) = (unique("tansu"), unique("group"));
    let common = [
        ("KAFKA_BROKER", bootstrap.as_str()),
        ("KAFKA_TOPIC", topic.as_str()),
        ("TOPIC_PARTITIONS", "3"),
        ("CONSUMER_GROUP", group.as_str()),
    ];
    let consumer = Running::start(config(Role::Consumer, &common)).await;
    probe_until_consuming(&bootstrap, &topic, &consumer).await;

    let mut producer_env = common.to_vec();
    producer_env.extend([
        ("MESSAGE_RATE_PER_SECOND", "2000"),
        ("MESSAGE_LIMIT", "2000"),
    ]);
    let started = Instant::now();
    let produced = Running::start(config(Role::Producer, &producer_env))
        .await
        .finished()
        .await;
    assert_eq!(
        produced.messages_total,
        N,
        "{produced:?}\n{}",
        tansu.log_tail()
    );
    assert_eq!(produced.errors_total, 0);
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
        "{N} messages through tansu in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let last = consumer.stop().await;
    assert_eq!(consumed.messages_total - consumed.invalid_total.unwrap(), N);
    assert_eq!(last.messages_total - last.invalid_total.unwrap(), N);
    assert_eq!(last.errors_total, 0);
}
