//! A live setup: librdkafka's mock cluster in this process, real `loadgen
//! produce` and `loadgen consume` processes against it, and a real overseer
//! (in-process) polling them and writing into a temporary status directory.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use demo_common::stats::{LoadStats, MetricsSnapshot};
use overseer::Config;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

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

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

fn loadgen(role: &str, bootstrap: &str, topic: &str, status: &Path, port: u16) -> Child {
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
        .env("TARGET_LATENCY_MS", "1000")
        .env("STATS_WINDOW_S", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

impl Live {
    pub fn start(poll_interval: Duration) -> Self {
        let mock = MockCluster::new(1).unwrap();
        let topic = unique("ov-topic");
        mock.create_topic(&topic, 2, 1).unwrap();
        let bootstrap = mock.bootstrap_servers();
        let status = tempfile::tempdir().unwrap();
        let (producer_port, consumer_port, dashboard_port) =
            (free_port(), free_port(), free_port());
        let consumer = loadgen("consume", &bootstrap, &topic, status.path(), consumer_port);
        let producer = loadgen("produce", &bootstrap, &topic, status.path(), producer_port);

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
            ("TARGET_LATENCY_MS".to_string(), "1000".to_string()),
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

/// GET a URL with a blocking-free little client and parse its JSON.
pub fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Option<T> {
    let (status, body) = get(url)?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// Status code and body of a plain HTTP/1.0 GET to 127.0.0.1.
pub fn get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Poll `probe` until it returns `Some`, or fail naming what was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = probe() {
            eprintln!("{what}: after {:.1?}", started.elapsed());
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
