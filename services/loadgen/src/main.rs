//! `loadgen`: the demo's Kafka load generator. `loadgen produce` and
//! `loadgen consume` run the two roles; `loadgen healthcheck` probes a
//! running instance's `/healthz` (so the image needs no curl). Settings come
//! from environment variables; each flag overrides its variable.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use demo_common::config::{EXIT_BAD_CONFIG, EnvSource, ProcessEnv, Settings};
use demo_common::stats::Role;
use loadgen::Config;

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Kafka load generator for the throughput demo"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Produce at an adaptive rate (reads latency.txt from STATUS_DIR).
    Produce(SettingFlags),
    /// Consume in a group and measure end-to-end latency.
    Consume(SettingFlags),
    /// Exit 0 when a running loadgen's /healthz answers 200, 1 otherwise.
    Healthcheck(HealthArgs),
}

/// Every flag overrides the environment variable named in its help.
#[derive(Args)]
struct SettingFlags {
    /// Bootstrap servers, host:port[,host:port] [KAFKA_BROKER; localhost:9092]
    #[arg(long)]
    broker: Option<String>,
    /// Topic [KAFKA_TOPIC; throughput-topic]
    #[arg(long)]
    topic: Option<String>,
    /// Partitions when the topic is created, 1..=10000 [TOPIC_PARTITIONS; 12]
    #[arg(long)]
    partitions: Option<String>,
    /// Status directory holding latency.txt [STATUS_DIR; /tmp/status]
    #[arg(long)]
    status_dir: Option<String>,
    /// Initial target rate, msg/s, within the bounds [MESSAGE_RATE_PER_SECOND; 1000]
    #[arg(long)]
    rate: Option<String>,
    /// Lowest adaptive rate, msg/s [MIN_MESSAGE_RATE; 100]
    #[arg(long)]
    min_rate: Option<String>,
    /// Highest adaptive rate, msg/s, up to 10000000 [MAX_MESSAGE_RATE; 150000]
    #[arg(long)]
    max_rate: Option<String>,
    /// Payload size in bytes, 1..=1000000 [MESSAGE_SIZE_BYTES; 1024]
    #[arg(long)]
    message_size: Option<String>,
    /// Consumer p99 target in ms, 0.1..=60000 [TARGET_LATENCY_MS; 5.0]
    #[arg(long)]
    target_latency_ms: Option<String>,
    /// Share of messages pinned to partition 0, 0.0..=1.0 [PARTITION_SKEW; 0.0]
    #[arg(long)]
    partition_skew: Option<String>,
    /// Consumer group [CONSUMER_GROUP; throughput-consumer]
    #[arg(long)]
    group: Option<String>,
    /// HTTP listen address for /metrics, /stats, /healthz [METRICS_ADDR; 0.0.0.0:9100]
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Window of rates and quantiles and the rate controller's step, seconds [STATS_WINDOW_S; 5]
    #[arg(long)]
    window_s: Option<String>,
    /// latency.txt older than this many seconds is stale [LATENCY_MAX_AGE_S; 30]
    #[arg(long)]
    latency_max_age_s: Option<String>,
    /// Producer stops after this many messages, 0 = never [MESSAGE_LIMIT; 0]
    #[arg(long)]
    message_limit: Option<String>,
    /// Producer batching delay in ms, 0 to 1000 [LINGER_MS; 1]
    #[arg(long)]
    linger_ms: Option<String>,
}

impl SettingFlags {
    /// The flags given, keyed by the variable they override.
    fn overrides(self) -> HashMap<String, String> {
        [
            ("KAFKA_BROKER", self.broker),
            ("KAFKA_TOPIC", self.topic),
            ("TOPIC_PARTITIONS", self.partitions),
            ("STATUS_DIR", self.status_dir),
            ("MESSAGE_RATE_PER_SECOND", self.rate),
            ("MIN_MESSAGE_RATE", self.min_rate),
            ("MAX_MESSAGE_RATE", self.max_rate),
            ("MESSAGE_SIZE_BYTES", self.message_size),
            ("TARGET_LATENCY_MS", self.target_latency_ms),
            ("PARTITION_SKEW", self.partition_skew),
            ("CONSUMER_GROUP", self.group),
            ("METRICS_ADDR", self.metrics_addr),
            ("STATS_WINDOW_S", self.window_s),
            ("LATENCY_MAX_AGE_S", self.latency_max_age_s),
            ("MESSAGE_LIMIT", self.message_limit),
            ("LINGER_MS", self.linger_ms),
        ]
        .into_iter()
        .filter_map(|(var, value)| value.map(|v| (var.to_string(), v)))
        .collect()
    }
}

#[derive(Args)]
struct HealthArgs {
    /// URL to probe [default: /healthz on METRICS_ADDR, a wildcard host as 127.0.0.1]
    #[arg(long)]
    url: Option<String>,
}

/// Flags first, then the process environment.
struct Overlay {
    flags: HashMap<String, String>,
}

impl EnvSource for Overlay {
    fn get(&self, name: &str) -> Option<String> {
        self.flags
            .get(name)
            .cloned()
            .or_else(|| ProcessEnv.get(name))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (role, flags) = match cli.cmd {
        Cmd::Produce(flags) => (Role::Producer, flags),
        Cmd::Consume(flags) => (Role::Consumer, flags),
        Cmd::Healthcheck(args) => return healthcheck(args),
    };
    let env = Overlay {
        flags: flags.overrides(),
    };
    let config = match Config::from_env(role, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    demo_common::telemetry::init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    // One thread is plenty for a paced send loop, a window timer and a
    // small HTTP server, and costs less CPU per message than a pool whose
    // workers wake each other (librdkafka has its own threads for I/O).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let role = config.role;
    let outcome = runtime.block_on(loadgen::run(config, demo_common::shutdown::signal()));
    // A metadata request still waiting on an unreachable broker must not
    // hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome.with_context(|| format!("{role:?} failed"))?;
    Ok(())
}

/// Probe `/healthz`; one line on failure.
fn healthcheck(args: HealthArgs) -> ExitCode {
    let url = match args.url {
        Some(u) => u,
        None => match Settings::new(&ProcessEnv).socket_addr("METRICS_ADDR", "0.0.0.0:9100") {
            Ok(addr) => loadgen::healthz_url(addr),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG as u8);
            }
        },
    };
    match probe(&url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn probe(url: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .context("build the HTTP client")?;
        let response = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
        Ok(())
    })
}
