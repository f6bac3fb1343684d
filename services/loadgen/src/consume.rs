//! `loadgen consume`: reads the topic in a group and records each message's
//! end-to-end latency (receive time minus the send-time header) in a
//! histogram that is reset every window.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use demo_common::status::now_ms;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::header::{decode_send_time, wall_clock_ns};
use crate::histogram::LatencyWindow;
use crate::kafka::{
    ClientCtx, ConsumerCtx, PROBE_TIMEOUT, consumer_config, ensure_topic, find_topic,
    is_connectivity, probe_connection,
};
use crate::metrics::{Shared, WindowFigures};
use crate::{Error, Result};

/// Bound on leaving the group at shutdown; closing blocks while the broker
/// is unreachable.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Run the consumer until `cancel` fires.
pub(crate) async fn run(
    config: &Config,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Result<()> {
    let ctx = ConsumerCtx {
        client: ClientCtx {
            shared: shared.clone(),
        },
        assigned_once: AtomicBool::new(false),
    };
    let consumer: Arc<StreamConsumer<ConsumerCtx>> = Arc::new(
        StreamConsumer::from_config_and_context(&consumer_config(config), ctx).map_err(
            |source| Error::Client {
                what: "consumer",
                source,
            },
        )?,
    );
    // The consumer may start before the producer: both make sure the topic
    // exists, so neither depends on the other's start order.
    let lookup = {
        let (consumer, topic) = (consumer.clone(), config.topic.clone());
        move || find_topic(consumer.client(), &topic)
    };
    if !ensure_topic(config, &shared, &cancel, lookup).await? {
        return Ok(());
    }
    consumer
        .subscribe(&[&config.topic])
        .map_err(|source| Error::Client {
            what: "subscription",
            source,
        })?;
    tracing::info!(
        "consuming {} in group {} from the latest offsets",
        config.topic,
        config.group
    );

    let m = &shared.metrics;
    let mut e2e = LatencyWindow::new();
    let mut started = Instant::now();
    let (mut last_messages, mut last_bytes) = (0u64, 0u64);
    let mut last_error: Option<String> = None;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + config.window, config.window);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut close_window = |e2e: &mut LatencyWindow| {
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let (messages, bytes) = (m.messages.get(), m.bytes.get());
        shared.set_window(WindowFigures {
            timestamp_ms: now_ms(),
            window_s: elapsed,
            rate_msgs_per_s: (messages - last_messages) as f64 / elapsed,
            bytes_per_s: (bytes - last_bytes) as f64 / elapsed,
            e2e: Some(e2e.take_quantiles()),
            publish_latency: None,
            publish_delay: None,
        });
        started = Instant::now();
        (last_messages, last_bytes) = (messages, bytes);
    };
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            _ = tick.tick() => {
                close_window(&mut e2e);
                let probe = consumer.clone();
                probe_connection(&shared, move || {
                    probe.fetch_metadata(None, PROBE_TIMEOUT).is_ok()
                })
                .await;
            }
            received = consumer.recv() => match received {
                Ok(msg) => {
                    let now_ns = wall_clock_ns();
                    m.messages.inc();
                    m.bytes.inc_by(msg.payload_len() as u64);
                    match decode_send_time(msg.headers()) {
                        // A clock step could put the send time in the future;
                        // count that as zero latency rather than wrapping.
                        Some(sent_ns) => e2e.record_us(now_ns.saturating_sub(sent_ns) / 1000),
                        None => {
                            m.invalid.inc();
                        }
                    }
                    shared.link.mark_up();
                    last_error = None;
                }
                Err(e) => {
                    m.errors.inc();
                    let text = e.to_string();
                    // Connection failures are the link's to report; other
                    // errors get one line each until messages flow again.
                    if e.rdkafka_error_code().is_some_and(is_connectivity) {
                        tracing::debug!("consume error: {text}");
                    } else if last_error.as_deref() != Some(text.as_str()) {
                        tracing::warn!("consume error: {text} (repeats are only counted)");
                        last_error = Some(text);
                    }
                }
            },
        }
    }
    close_window(&mut e2e);
    tracing::info!(
        "consumer stopped: {} received, {} without a valid header, {} errors",
        m.messages.get(),
        m.invalid.get(),
        m.errors.get()
    );
    // Leave the group now so a restarted consumer gets its partitions at
    // once; bounded, and abandoned if the broker does not answer.
    let closing = tokio::task::spawn_blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
    });
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        tracing::warn!(
            "leaving the consumer group took over {} s; not waiting",
            CLOSE_TIMEOUT.as_secs()
        );
    }
    Ok(())
}
