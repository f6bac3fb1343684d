//! A live setup: librdkafka's mock cluster in this process, real `loadgen
//! produce` and `loadgen consume` processes against it, and a real overseer
//! (in-process) polling them and writing into a temporary status directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use demo_common::stats::{LoadStats, MetricsSnapshot};
use overseer::Config;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use testkit::{free_port, http_get, unique};

pub struct Live {
    // Kept alive for the loadgen processes; dropped last.
    _mock: MockCluster<'static, DefaultProducerContext>,
    pub status: tempfile::TempDir,
    pub producer: Option<Child>,
    pub consumer: Option<Child>,
    pub consumer_port: u16,
    pub dashboard_port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

fn loadgen(
    role: &str,
    bootstrap: &str,
    topic: &str,
    target_latency_ms: &str,
    status: &Path,
    port: u16,
) -> Child {
    let exe: PathBuf = testkit::exe::workspace_bin("loadgen", "loadgen").unwrap();
    Command::new(exe)
        .arg(role)
        .env("KAFKA_BROKER", bootstrap)
        .env("KAFKA_TOPIC", topic)
        .env("TOPIC_PARTITIONS", "2")
        .env("CONSUMER_GROUP", unique("ov-group"))
        .env("STATUS_DIR", status)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        // The mock's group consumer is slow; a modest fixed-ish rate.
        .env("MESSAGE_RATE_PER_SECOND", "200")
        .env("MIN_MESSAGE_RATE", "100")
        .env("MAX_MESSAGE_RATE", "300")
        .env("TARGET_LATENCY_MS", target_latency_ms)
        .env("STATS_WINDOW_S", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// How a live setup differs between tests.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub poll_interval: Duration,
    /// The overseer's target, and the producer's (which adapts its rate to
    /// the p99 the overseer writes).
    pub target_latency_ms: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            target_latency_ms: 1000.0,
        }
    }
}

impl Live {
    pub fn start(options: Options) -> Self {
        let Options {
            poll_interval,
            target_latency_ms,
        } = options;
        let target = target_latency_ms.to_string();
        let mock = MockCluster::new(1).unwrap();
        let topic = unique("ov-topic");
        mock.create_topic(&topic, 2, 1).unwrap();
        let bootstrap = mock.bootstrap_servers();
        let status = tempfile::tempdir().unwrap();
        let (producer_port, consumer_port, dashboard_port) =
            (free_port(), free_port(), free_port());
        let consumer = loadgen(
            "consume",
            &bootstrap,
            &topic,
            &target,
            status.path(),
            consumer_port,
        );
        let producer = loadgen(
            "produce",
            &bootstrap,
            &topic,
            &target,
            status.path(),
            producer_port,
        );

        let env = std::collections::HashMap::from([
            (
                "PRODUCER_STATS_URL".to_string(),
                format!("http://127.0.0.1:{producer_port}/stats"),
            ),
            (
                "CONSUMER_STATS_URL".to_string(),
                format!("http://127.0.0.1:{consumer_port}/stats"),
            ),
            (
                "STATUS_DIR".to_string(),
                status.path().display().to_string(),
            ),
            ("TARGET_LATENCY_MS".to_string(), target.clone()),
            (
                "POLL_INTERVAL_S".to_string(),
                poll_interval.as_secs_f64().to_string(),
            ),
            (
                "DASHBOARD_ADDR".to_string(),
                format!("127.0.0.1:{dashboard_port}"),
            ),
        ]);
        let config = Config::from_env(&env).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.dashboard_addr))
            .unwrap();
        runtime.spawn(overseer::serve(config, listener, async {
            let _ = stopped.await;
        }));
        Self {
            _mock: mock,
            status,
            producer: Some(producer),
            consumer: Some(consumer),
            consumer_port,
            dashboard_port,
            stop: Some(stop),
            runtime: Some(runtime),
        }
    }

    pub fn dir(&self) -> &Path {
        self.status.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.dashboard_port)
    }

    pub fn metrics(&self) -> Option<MetricsSnapshot> {
        serde_json::from_slice(&std::fs::read(self.dir().join("metrics.json")).ok()?).ok()
    }

    pub fn consumer_stats(&self) -> Option<LoadStats> {
        get_json(&format!("http://127.0.0.1:{}/stats", self.consumer_port))
    }

    pub fn kill_consumer(&mut self) {
        if let Some(mut c) = self.consumer.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        for child in [self.producer.take(), self.consumer.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// GET a URL and parse its JSON; `None` unless it answered 200 with JSON.
pub fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Option<T> {
    let (status, body) = http_get(url)?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}
