//! `loadgen produce`: paced, non-blocking sends with an adaptive target rate.
//!
//! A rate limiter (governor) paces a send loop that hands records to a
//! [`BaseProducer`] without waiting for acknowledgements. The loop runs on
//! its own thread, sleeping a millisecond whenever the limiter says wait
//! and then sending what became due: tokio's timer would cost an extra
//! self-wake per re-armed sleep, which at a thousand sleeps a second is a
//! measurable share of the CPU per message. The same loop serves delivery
//! reports (see [`crate::kafka::ProducerCtx`]) at least every millisecond,
//! cheaper than a polling thread that librdkafka must wake for every
//! report, at the price of up to 1 ms added to the measured publish
//! latency. Once per window the rate controller (on the async runtime)
//! reads the consumer's p99 from `latency.txt` and the backlog, and sets
//! the next target rate.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demo_common::status::{LatencyReading, now_ms, read_latency};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::header::{SEND_TIME_HEADER, encode_send_time, wall_clock_ns};
use crate::histogram::LatencyWindow;
use crate::kafka::{
    ClientCtx, PROBE_TIMEOUT, ProducerCtx, ensure_topic, find_topic, probe_connection,
    producer_config,
};
use crate::metrics::{Shared, WindowFigures};
use crate::payload::PayloadPool;
use crate::rate::{Action, Observation, RateController};
use crate::{Error, Result};

/// How long shutdown waits for messages in flight before dropping them;
/// under Docker's default 10 s stop grace period.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The limiter lets this many seconds of sends through at once, so after a
/// 1 ms pause (plus the scheduler's slack) the loop sends every message
/// that fell due meanwhile instead of losing them.
const PACING_BURST_S: f64 = 0.01;
/// More than this far behind the uniform schedule (an outage with a full
/// queue), the schedule restarts instead of bursting to catch up.
const MAX_SCHEDULE_LAG: Duration = Duration::from_secs(1);
/// Sends between delivery-report polls when the limiter never makes us
/// wait (flat out).
const POLL_EVERY: u32 = 64;
/// The send loop's pause when the limiter says wait: it then sends what
/// became due in one go. Also how often delivery reports are served at
/// low rates, and how long one wait for queue space serves them.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Bound on the delivery-report events served in one go.
const MAX_EVENTS_PER_POLL: usize = 64;

type KafkaProducer = BaseProducer<ProducerCtx>;

/// Run the producer until `cancel` fires or the message limit is reached.
pub(crate) async fn run(
    config: &Config,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Result<()> {
    shared.metrics.target_rate.set(config.initial_rate);
    let publish_latency = Arc::new(Mutex::new(LatencyWindow::new()));
    let ctx = ProducerCtx {
        client: ClientCtx {
            shared: shared.clone(),
        },
        epoch: Instant::now(),
        publish_latency: publish_latency.clone(),
    };
    let producer: Arc<KafkaProducer> = Arc::new(
        BaseProducer::from_config_and_context(&producer_config(config), ctx).map_err(|source| {
            Error::Client {
                what: "producer",
                source,
            }
        })?,
    );
    let lookup = {
        let (producer, topic) = (producer.clone(), config.topic.clone());
        move || find_topic(producer.client(), &topic)
    };
    if !ensure_topic(config, &shared, &cancel, lookup).await? {
        return Ok(());
    }

    let mut controller = RateController::new(
        config.initial_rate,
        config.min_rate,
        config.max_rate,
        config.target_latency_ms,
    );
    shared.metrics.target_rate.set(controller.rate());
    let (rate_tx, rate_rx) = watch::channel(controller.rate());
    let publish_delay = Arc::new(Mutex::new(LatencyWindow::new()));
    let sender = Sender {
        producer: producer.clone(),
        shared: shared.clone(),
        topic: config.topic.clone(),
        pool: PayloadPool::new(config.message_size),
        skew: config.partition_skew,
        limit: config.message_limit,
        rate_rx,
        publish_delay: publish_delay.clone(),
        cancel: cancel.clone(),
    };
    tracing::info!(
        "producing to {} at {} msg/s (adaptive {}..={}, target p99 {} ms)",
        config.topic,
        config.initial_rate,
        config.min_rate,
        config.max_rate,
        config.target_latency_ms
    );
    let mut send_task = tokio::task::spawn_blocking(move || sender.run());

    let mut window = Window {
        shared: &shared,
        producer: &producer,
        publish_latency: &publish_latency,
        publish_delay: &publish_delay,
        started: Instant::now(),
        acked: 0,
        bytes: 0,
    };
    let mut watcher = LatencyWatch::default();
    let mut last_action = None;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + config.window, config.window);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let send_result = loop {
        tokio::select! {
            r = &mut send_task => break r,
            _ = tick.tick() => {
                let backlog = window.close();
                let reading = read_latency(&config.status_dir, config.latency_max_age);
                watcher.observe(&reading);
                let step = controller.step(Observation { p99_ms: reading.fresh_ms(), backlog });
                if step.rate != *rate_tx.borrow() {
                    let _ = rate_tx.send(step.rate);
                }
                shared.metrics.target_rate.set(step.rate);
                if last_action != Some(step.action) {
                    log_action(step.action, step.rate, &reading, backlog);
                    last_action = Some(step.action);
                }
                let probe = producer.clone();
                probe_connection(&shared, move || {
                    probe.client().fetch_metadata(None, PROBE_TIMEOUT).is_ok()
                })
                .await;
            }
        }
    };
    // The sender stopped (cancelled or at its limit): deliver what is in
    // flight, within a bound, before the producer is dropped (dropping
    // purges).
    let flushing = producer.clone();
    let left = tokio::task::spawn_blocking(move || {
        let _ = flushing.flush(FLUSH_TIMEOUT);
        flushing.in_flight_count()
    })
    .await
    .unwrap_or(-1);
    if left > 0 {
        tracing::warn!(
            "{left} message(s) still unacknowledged after {} s; dropping them",
            FLUSH_TIMEOUT.as_secs()
        );
    }
    window.close();
    let m = &shared.metrics;
    tracing::info!(
        "producer stopped: {} sent, {} acknowledged, {} failed",
        m.sent.get(),
        m.messages.get(),
        m.errors.get()
    );
    match send_result {
        Ok(r) => r,
        Err(e) => Err(Error::Task(e.to_string())),
    }
}

/// Logs a change of the controller's action, once per change.
fn log_action(action: Action, rate: f64, reading: &LatencyReading, backlog: u64) {
    match action {
        Action::Grow => tracing::info!("rate growing: {rate:.0} msg/s ({reading})"),
        Action::BackOffLatency => {
            tracing::info!("latency over target, backing off: {rate:.0} msg/s ({reading})")
        }
        Action::BackOffBacklog => tracing::info!(
            "backlog of {backlog} unacknowledged messages, backing off: {rate:.0} msg/s"
        ),
        // LatencyWatch has already said why.
        Action::HoldNoLatency => {}
        Action::Hold => tracing::info!("holding {rate:.0} msg/s near target ({reading})"),
    }
}

/// Logs the state of `latency.txt` when its kind changes (fresh, stale,
/// missing, unreadable), not every window.
#[derive(Default)]
struct LatencyWatch {
    last: Option<std::mem::Discriminant<LatencyReading>>,
}

impl LatencyWatch {
    fn observe(&mut self, reading: &LatencyReading) {
        let kind = std::mem::discriminant(reading);
        if self.last == Some(kind) {
            return;
        }
        self.last = Some(kind);
        match reading {
            LatencyReading::Fresh { .. } => tracing::info!("latency feedback: {reading}"),
            _ => tracing::warn!("latency feedback unavailable, holding the rate: {reading}"),
        }
    }
}

/// Closes windows: rates and quantiles since the last close.
struct Window<'a> {
    shared: &'a Shared,
    producer: &'a KafkaProducer,
    publish_latency: &'a Mutex<LatencyWindow>,
    publish_delay: &'a Mutex<LatencyWindow>,
    started: Instant,
    acked: u64,
    bytes: u64,
}

impl Window<'_> {
    /// Publish the window that ends now; returns the backlog.
    fn close(&mut self) -> u64 {
        let m = &self.shared.metrics;
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let (acked, bytes) = (m.messages.get(), m.bytes.get());
        let backlog = u64::try_from(self.producer.in_flight_count()).unwrap_or(0);
        m.backlog.set(i64::try_from(backlog).unwrap_or(i64::MAX));
        let take =
            |h: &Mutex<LatencyWindow>| h.lock().unwrap_or_else(|e| e.into_inner()).take_quantiles();
        self.shared.set_window(WindowFigures {
            timestamp_ms: now_ms(),
            window_s: elapsed,
            rate_msgs_per_s: (acked - self.acked) as f64 / elapsed,
            bytes_per_s: (bytes - self.bytes) as f64 / elapsed,
            e2e: None,
            publish_latency: Some(take(self.publish_latency)),
            publish_delay: Some(take(self.publish_delay)),
        });
        self.started = Instant::now();
        self.acked = acked;
        self.bytes = bytes;
        backlog
    }
}

/// The paced send loop.
struct Sender {
    producer: Arc<KafkaProducer>,
    shared: Arc<Shared>,
    topic: String,
    pool: PayloadPool,
    skew: f64,
    limit: Option<u64>,
    rate_rx: watch::Receiver<f64>,
    publish_delay: Arc<Mutex<LatencyWindow>>,
    cancel: CancellationToken,
}

/// Paces sends at one rate; replaced when the target rate changes.
struct Pacer {
    limiter: DefaultDirectRateLimiter,
    interval: Duration,
    /// When the next send is due on a uniform schedule at this rate.
    due: Instant,
}

impl Pacer {
    fn new(rate: f64, due: Instant) -> Self {
        let interval = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let burst = (rate * PACING_BURST_S)
            .ceil()
            .clamp(1.0, f64::from(u32::MAX)) as u32;
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::direct(quota),
            interval,
            due,
        }
    }
}

impl Sender {
    /// The loop; returns when cancelled or at the message limit. Anything
    /// that takes a lock (cancellation, rate changes, the publish-delay
    /// histogram, delivery reports) is done in [`Self::housekeeping`], once
    /// per pause or per `POLL_EVERY` sends, not per message.
    fn run(mut self) -> Result<()> {
        let epoch = self.producer.context().epoch;
        let mut pacer = Pacer::new(*self.rate_rx.borrow_and_update(), Instant::now());
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let mut lags: Vec<u64> = Vec::with_capacity(POLL_EVERY as usize);
        let mut since_poll = 0u32;
        let mut sent = 0u64;
        let mut reported_error = false;
        loop {
            if self.limit.is_some_and(|l| sent >= l) {
                self.housekeeping(&mut pacer, &mut lags);
                return Ok(());
            }
            if pacer.limiter.check().is_err() {
                since_poll = 0;
                if self.housekeeping(&mut pacer, &mut lags) {
                    return Ok(());
                }
                // Pacing, not synchronisation: the limiter's burst covers
                // what falls due meanwhile.
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
            since_poll += 1;
            if since_poll >= POLL_EVERY {
                since_poll = 0;
                if self.housekeeping(&mut pacer, &mut lags) {
                    return Ok(());
                }
            }

            let now = Instant::now();
            let lag = now.saturating_duration_since(pacer.due);
            lags.push(lag.as_micros() as u64);
            pacer.due += pacer.interval;
            if lag > MAX_SCHEDULE_LAG {
                pacer.due = now;
            }

            let send_ns = encode_send_time(wall_clock_ns());
            let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: SEND_TIME_HEADER,
                value: Some(&send_ns),
            });
            let opaque = now.duration_since(epoch).as_nanos() as usize;
            let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(&self.topic, opaque)
                .payload(self.pool.next_payload())
                .headers(headers);
            if self.skew >= 1.0 || (self.skew > 0.0 && rng.random::<f64>() < self.skew) {
                record = record.partition(0);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => {
                        self.shared.metrics.sent.inc();
                        sent += 1;
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // Space frees as delivery reports are served.
                        record = r;
                        self.producer.poll(POLL_INTERVAL);
                        if self.cancel.is_cancelled() {
                            self.housekeeping(&mut pacer, &mut lags);
                            return Ok(());
                        }
                    }
                    Err((e, _)) => {
                        self.shared.metrics.errors.inc();
                        if !reported_error {
                            tracing::warn!(
                                "send failed: {e} (further send errors are only counted)"
                            );
                            reported_error = true;
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Record the buffered publish delays, serve delivery reports, pick up
    /// a new target rate. True when the loop should stop.
    fn housekeeping(&mut self, pacer: &mut Pacer, lags: &mut Vec<u64>) -> bool {
        {
            let mut delay = self.publish_delay.lock().unwrap_or_else(|e| e.into_inner());
            for lag in lags.drain(..) {
                delay.record_us(lag);
            }
        }
        serve_deliveries(&self.producer, &self.shared);
        if self.rate_rx.has_changed().unwrap_or(false) {
            let rate = *self.rate_rx.borrow_and_update();
            *pacer = Pacer::new(rate, pacer.due.max(Instant::now()));
        }
        self.cancel.is_cancelled()
    }
}

/// Serve pending delivery reports (and error events). rdkafka's
/// `poll(0)` serves one event, which may carry many reports; keep polling
/// while that moves the delivery counters, within a bound.
fn serve_deliveries(producer: &KafkaProducer, shared: &Shared) {
    let m = &shared.metrics;
    let settled = || m.messages.get() + m.errors.get();
    for _ in 0..MAX_EVENTS_PER_POLL {
        let before = settled();
        producer.poll(Duration::ZERO);
        if settled() == before {
            break;
        }
    }
}
