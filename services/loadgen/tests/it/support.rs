//! Shared helpers: configs from env-style pairs, a role running in-process
//! with its own shutdown, `/stats` polling, and waiting on conditions.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use demo_common::stats::{LoadStats, Role};
use loadgen::Config;
use rand::Rng;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::rng().random::<u32>())
}

/// A config for `role` from `KEY=value` pairs over the defaults; the status
/// dir defaults to one that has no latency file (so the rate holds).
pub fn config(role: Role, pairs: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = [
        ("STATUS_DIR", "/nonexistent-loadgen-status"),
        ("STATS_WINDOW_S", "1"),
        ("METRICS_ADDR", "127.0.0.1:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_env(role, &env).unwrap()
}

/// One role running in this process.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<loadgen::Result<LoadStats>>,
    http: reqwest::Client,
}

impl Running {
    pub async fn start(config: Config) -> Self {
        demo_common::telemetry::init();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(loadgen::serve(config, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `/stats`, parsed as the overseer parses it.
    pub async fn stats(&self) -> LoadStats {
        self.http
            .get(self.url("/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GET `path`: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Ask the role to stop and return its final figures.
    pub async fn stop(mut self) -> LoadStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.finished().await
    }

    /// Wait for the role to end by itself (the producer's message limit).
    pub async fn finished(self) -> LoadStats {
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the role did not stop within 60 s")
            .unwrap()
            .unwrap()
    }
}

/// Poll `probe` every 50 ms until it yields a value; panic naming `what`
/// after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send header-less probe records until `consumer` counts one as invalid:
/// from then on its partitions are positioned and every later message
/// reaches it. Returns how many invalid records it counted.
pub async fn probe_until_consuming(bootstrap: &str, topic: &str, consumer: &Running) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        producer
            .send(BaseRecord::<(), str>::to(topic).payload("probe without header"))
            .unwrap();
        let _ = producer.flush(Duration::from_secs(5));
        let seen = Instant::now() + Duration::from_secs(1);
        while Instant::now() < seen {
            let invalid = consumer.stats().await.invalid_total.unwrap_or(0);
            if invalid > 0 {
                return invalid;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer received no probe record within 60 s"
        );
    }
}
