//! Kafka client settings (one function per client, each non-obvious key
//! explained), the client contexts that feed connection state and delivery
//! reports into [`Shared`], and topic creation through the admin API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::histogram::LatencyWindow;
use crate::metrics::Shared;
use crate::{Error, Result};

/// Cap on the reconnect backoff (librdkafka's default is 10 s), so that
/// both roles notice within a second that a restarted broker is back.
const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// Settings of the producer.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.broker)
        .set("client.id", "loadgen-producer")
        // Batching amortises per-request cost at high rates but adds up to
        // linger.ms to every latency measured; the default 1 ms (librdkafka's
        // is 5) leaves room under a 5 ms p99 target for the broker, which is
        // what the agent tunes.
        .set("linger.ms", config.linger_ms.to_string())
        // A message not delivered within 30 s counts as an error instead of
        // waiting for the default 5 minutes: its latency would mean nothing,
        // and during a broker restart the queue would fill with stale sends.
        .set("message.timeout.ms", "30000")
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    c
}

/// Settings of the consumer.
pub fn consumer_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.broker)
        .set("client.id", "loadgen-consumer")
        .set("group.id", &config.group)
        // A new group starts at the end; the first assignment after start is
        // moved to the end as well (see ConsumerCtx::rebalance).
        .set("auto.offset.reset", "latest")
        // Kafka answers a fetch as soon as data is there, so this only
        // bounds an idle fetch (100 cheap requests a second). Brokers that
        // hold every fetch for the full wait (tansu, librdkafka's mock) would
        // otherwise add up to the default 500 ms to every latency measured.
        .set("fetch.wait.max.ms", "10")
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    c
}

/// Settings of the admin client that creates the topic.
pub fn admin_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.broker)
        .set("client.id", "loadgen-admin")
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    c
}

/// Errors that only say a connection failed. They repeat on every
/// reconnect attempt, so they are logged at debug level; the outage itself
/// is logged once by [`crate::link`].
pub fn is_connectivity(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::BrokerNotAvailable
    )
}

/// The context every client shares: librdkafka's logs go to `debug` (they
/// repeat per reconnect attempt), "all brokers down" goes to
/// [`crate::link`]. (No `statistics.interval.ms`: with statistics on,
/// librdkafka keeps latency averages per message, which costs CPU in the
/// hot path; see [`probe_connection`] for how recovery is noticed.)
#[derive(Clone)]
pub struct ClientCtx {
    pub shared: Arc<Shared>,
}

impl ClientContext for ClientCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, "{fac} {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                self.shared.link.mark_down(reason);
            }
            Some(code) if is_connectivity(code) => {
                tracing::debug!("kafka: {error}: {reason}")
            }
            _ => tracing::warn!("kafka: {error}: {reason}"),
        }
    }
}

/// The producer's context: delivery reports update counters and the
/// publish-latency histogram. They run wherever the producer is polled (the
/// send loop, or the final flush).
pub struct ProducerCtx {
    pub client: ClientCtx,
    /// Reference point of the monotonic send times in the delivery opaque.
    pub epoch: Instant,
    pub publish_latency: Arc<Mutex<LatencyWindow>>,
}

impl ProducerCtx {
    /// Nanoseconds since [`Self::epoch`], the delivery opaque of a send.
    pub fn mono_ns(&self) -> usize {
        self.epoch.elapsed().as_nanos() as usize
    }
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.client.log(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason);
    }
}

impl ProducerContext for ProducerCtx {
    /// Monotonic send time in ns since `epoch`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let m = &self.client.shared.metrics;
        match result {
            Ok(msg) => {
                let latency_ns = self.mono_ns().saturating_sub(sent_ns);
                self.publish_latency
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record_us(latency_ns as u64 / 1000);
                m.messages.inc();
                m.bytes.inc_by(msg.payload_len() as u64);
                self.client.shared.link.mark_up();
            }
            // Counted and surfaced in /stats and /metrics; logging each would
            // flood the log during an outage.
            Err(_) => {
                m.errors.inc();
            }
        }
    }
}

/// The consumer's context: the first assignment after start begins at the
/// end of each partition, so the latency measured is that of new traffic,
/// not of a backlog left from an earlier run. Later assignments (after a
/// rebalance) resume from committed offsets so nothing is skipped.
pub struct ConsumerCtx {
    pub client: ClientCtx,
    pub assigned_once: AtomicBool,
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.client.log(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason);
    }
}

impl ConsumerContext for ConsumerCtx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if !self.assigned_once.swap(true, Ordering::AcqRel)
                    && let Err(e) = tpl.set_all_offsets(Offset::End)
                {
                    tracing::warn!("cannot start the assignment at the end: {e}");
                }
                tracing::info!("assigned {} partition(s)", tpl.count());
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!("{} partition(s) revoked", tpl.count());
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!("rebalance error: {}", RDKafkaErrorCode::from(other));
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::warn!("rebalance: {e}");
        }
    }
}

/// While disconnected, run `lookup` (a metadata request): success means the
/// broker is back even if no message has flowed yet (an idle consumer, say).
/// Called once per window; does nothing while connected.
pub async fn probe_connection(shared: &Shared, lookup: impl FnOnce() -> bool + Send + 'static) {
    if shared.link.is_connected() || !shared.link.ever_connected() {
        return;
    }
    if tokio::task::spawn_blocking(lookup).await.unwrap_or(false) {
        shared.link.mark_up();
    }
}

/// How long a reconnection probe waits for metadata.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Make sure `config.topic` exists: `lookup` finds it in the cluster's
/// metadata (through the role's own client, answering its partition count
/// or `None`); if absent it is created through the admin API with
/// `config.partitions` partitions. Retries until the broker answers or
/// `cancel` fires, logging the wait once. Returns `Ok(false)` when
/// cancelled first.
pub async fn ensure_topic<F>(
    config: &Config,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
    lookup: F,
) -> Result<bool>
where
    F: Fn() -> KafkaResult<Option<usize>> + Clone + Send + 'static,
{
    let mut logged_wait = false;
    loop {
        let outcome = tokio::select! {
            () = cancel.cancelled() => return Ok(false),
            r = tokio::task::spawn_blocking(lookup.clone()) => {
                r.map_err(|e| Error::Task(e.to_string()))?
            }
        };
        let error = match outcome {
            Ok(Some(partitions)) => {
                shared.link.mark_up();
                tracing::info!("topic {} exists with {partitions} partitions", config.topic);
                return Ok(true);
            }
            Ok(None) => {
                shared.link.mark_up();
                match create_topic(config, shared, cancel).await? {
                    None => return Ok(false),
                    Some(Ok(())) => return Ok(true),
                    Some(Err(e)) => e,
                }
            }
            Err(e) => e,
        };
        if !logged_wait {
            tracing::warn!(
                "waiting for the broker at {} ({error}); retrying until it answers",
                config.broker
            );
            logged_wait = true;
        }
        // Retry pace, not synchronisation: the request itself already
        // waited up to its timeout.
        tokio::select! {
            () = cancel.cancelled() => return Ok(false),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The metadata lookup of [`ensure_topic`] for any client: all topics, not
/// this one by name, because asking for one topic can auto-create it with
/// the broker's default partition count.
pub fn find_topic<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> KafkaResult<Option<usize>> {
    let md = client.fetch_metadata(None, Duration::from_secs(5))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len()))
}

/// Create the topic with a short-lived admin client. `None` when
/// cancelled; `Some(Err)` when the broker did not answer (retry).
async fn create_topic(
    config: &Config,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
) -> Result<Option<KafkaResult<()>>> {
    let admin: AdminClient<ClientCtx> = admin_config(config)
        .create_with_context(ClientCtx {
            shared: shared.clone(),
        })
        .map_err(|source| Error::Client {
            what: "admin client",
            source,
        })?;
    let topic = NewTopic::new(
        &config.topic,
        config.partitions,
        // The demo runs one broker; a larger cluster still accepts 1.
        TopicReplication::Fixed(1),
    );
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let created = tokio::select! {
        () = cancel.cancelled() => None,
        r = admin.create_topics([&topic], &opts) => Some(r),
    };
    // Dropping an admin client joins its polling thread (up to 100 ms).
    tokio::task::spawn_blocking(move || drop(admin));
    let Some(created) = created else {
        return Ok(None);
    };
    match created {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(name) => {
                        tracing::info!("created topic {name} with {} partitions", config.partitions)
                    }
                    Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        tracing::info!("topic {name} exists")
                    }
                    Err((name, code)) => return Err(Error::CreateTopic { topic: name, code }),
                }
            }
            Ok(Some(Ok(())))
        }
        Err(e) => Ok(Some(Err(e))),
    }
}
