//! The user-facing settings of a demo run. Each flag maps onto the variable
//! compose.yml passes to the services (and can be given as that variable).
//! clap validates them, so a bad value stops the command with one line naming
//! the flag and what it accepts.

use crate::project::DEFAULT_DASHBOARD_PORT;

/// NodePort of the broker's external listener on the k3d server node (the
/// direct route); must match `manifests/`.
pub const KAFKA_NODE_PORT: u16 = 30092;
/// The sandbox's port-forward listener (the plan's route).
pub const PORT_FORWARD_ADDR: &str = "k8s-sandbox:9092";

/// How the producer and consumer reach Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// NodePort on the k3d server node: the broker itself is the bottleneck.
    Nodeport,
    /// Through the sandbox's port-forward (the API server tunnels every byte,
    /// which caps throughput; for comparison).
    PortForward,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Knobs {
    /// Consumer p99 end-to-end latency the agent must stay under, in ms.
    #[arg(long, env = "TARGET_LATENCY_MS", default_value_t = 5.0, value_parser = latency_ms)]
    pub target_latency_ms: f64,
    /// Producer rate at start, messages per second.
    #[arg(long, env = "MESSAGE_RATE_PER_SECOND", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub initial_rate: u32,
    /// Lowest rate the adaptive producer backs off to.
    #[arg(long, env = "MIN_MESSAGE_RATE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub min_rate: u32,
    /// Highest rate the adaptive producer grows to.
    #[arg(long, env = "MAX_MESSAGE_RATE", default_value_t = 150_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_rate: u32,
    /// Payload size of each message, in bytes.
    #[arg(long, env = "MESSAGE_SIZE_BYTES", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub message_size: u32,
    /// Topic the load goes through.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "throughput-topic", value_parser = non_empty)]
    pub topic: String,
    /// Share of messages pinned to partition 0 (0.0 = spread evenly, 1.0 = all
    /// on one partition): a hot partition for the agent to notice.
    #[arg(long, env = "PARTITION_SKEW", default_value_t = 0.0, value_parser = fraction)]
    pub partition_skew: f64,
    /// LLM model vibectl uses (an `llm` model id).
    #[arg(long, env = "VIBECTL_MODEL", default_value = "claude-sonnet-4.5", value_parser = non_empty)]
    pub model: String,
    /// Seconds between agent runs.
    #[arg(long, env = "AGENT_INTERVAL_S", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(5..=3600))]
    pub agent_interval_s: u32,
    /// CPU limit of the Kafka pod, in cores.
    #[arg(long, env = "KAFKA_CPU_LIMIT", default_value_t = 2.0, value_parser = cores)]
    pub kafka_cpu: f64,
    /// Memory limit of the Kafka pod, in MiB.
    #[arg(long, env = "KAFKA_MEMORY_LIMIT_MB", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(512..=262_144))]
    pub kafka_memory_mb: u32,
    /// Memory limit of the k3d server node container, in MiB; must hold the
    /// Kafka pod's limit plus 512 MiB for k3s itself.
    #[arg(long, env = "K3D_SERVER_MEMORY_MB", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1024..=524_288))]
    pub k3d_server_memory_mb: u32,
    /// Host port of the dashboard.
    #[arg(long, env = "DASHBOARD_PORT", default_value_t = DEFAULT_DASHBOARD_PORT)]
    pub dashboard_port: u16,
    /// How producer and consumer reach Kafka.
    #[arg(long, value_enum, env = "KAFKA_ROUTE", default_value = "nodeport")]
    pub route: Route,
}

fn latency_ms(s: &str) -> Result<f64, String> {
    ranged(s, 0.1, 60_000.0)
}

fn cores(s: &str) -> Result<f64, String> {
    ranged(s, 0.5, 64.0)
}

fn fraction(s: &str) -> Result<f64, String> {
    ranged(s, 0.0, 1.0)
}

fn ranged(s: &str, lo: f64, hi: f64) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from {lo} to {hi}")),
    }
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.trim().to_string())
    }
}

impl Knobs {
    /// Reject combinations clap cannot see one flag at a time.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.min_rate <= self.initial_rate && self.initial_rate <= self.max_rate) {
            anyhow::bail!(
                "rates out of order: need --min-rate ({}) <= --initial-rate ({}) <= --max-rate ({})",
                self.min_rate,
                self.initial_rate,
                self.max_rate
            );
        }
        if self.kafka_memory_mb + 512 > self.k3d_server_memory_mb {
            anyhow::bail!(
                "--k3d-server-memory-mb ({}) must be at least --kafka-memory-mb + 512 = {}: \
                 the broker lives inside the node",
                self.k3d_server_memory_mb,
                self.kafka_memory_mb + 512
            );
        }
        Ok(())
    }

    /// Where producer and consumer dial Kafka.
    pub fn kafka_broker(&self, cluster: &str) -> String {
        match self.route {
            Route::Nodeport => format!("k3d-{cluster}-server-0:{KAFKA_NODE_PORT}"),
            Route::PortForward => PORT_FORWARD_ADDR.to_string(),
        }
    }

    /// The variables compose.yml reads.
    pub fn env(&self, cluster: &str) -> Vec<(String, String)> {
        [
            ("TARGET_LATENCY_MS", self.target_latency_ms.to_string()),
            ("MESSAGE_RATE_PER_SECOND", self.initial_rate.to_string()),
            ("MIN_MESSAGE_RATE", self.min_rate.to_string()),
            ("MAX_MESSAGE_RATE", self.max_rate.to_string()),
            ("MESSAGE_SIZE_BYTES", self.message_size.to_string()),
            ("KAFKA_TOPIC", self.topic.clone()),
            ("PARTITION_SKEW", self.partition_skew.to_string()),
            ("VIBECTL_MODEL", self.model.clone()),
            ("AGENT_INTERVAL_S", self.agent_interval_s.to_string()),
            ("KAFKA_CPU_LIMIT", self.kafka_cpu.to_string()),
            ("KAFKA_MEMORY_LIMIT_MB", self.kafka_memory_mb.to_string()),
            (
                "K3D_SERVER_MEMORY_MB",
                self.k3d_server_memory_mb.to_string(),
            ),
            ("DASHBOARD_PORT", self.dashboard_port.to_string()),
            ("KAFKA_BROKER", self.kafka_broker(cluster)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        knobs: Knobs,
    }

    #[test]
    fn defaults_map_to_compose_variables() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let env = cli.knobs.env("kafka-demo");
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("TARGET_LATENCY_MS"), Some("5"));
        assert_eq!(get("KAFKA_BROKER"), Some("k3d-kafka-demo-server-0:30092"));
        assert_eq!(get("DASHBOARD_PORT"), Some("8080"));
        cli.knobs.validate().unwrap();
    }

    #[test]
    fn bad_values_are_rejected_with_the_range() {
        for args in [
            vec!["x", "--target-latency-ms", "abc"],
            vec!["x", "--target-latency-ms", "0"],
            vec!["x", "--partition-skew", "1.5"],
            vec!["x", "--message-size", "0"],
            vec!["x", "--topic", " "],
            vec!["x", "--route", "tunnel"],
        ] {
            let err = Cli::try_parse_from(&args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(err.to_string().contains(args[1]), "{err}");
        }
        let cli = Cli::try_parse_from(["x", "--initial-rate", "50", "--min-rate", "100"]).unwrap();
        assert!(
            cli.knobs
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--min-rate")
        );
    }

    /// compose.yml reads every variable the flags set, refers to images of this
    /// version, and avoids what Compose v1 rejects.
    #[test]
    fn compose_file_matches_the_flags() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let text = std::fs::read_to_string(root.join("compose.yml")).unwrap();
        let cli = Cli::try_parse_from(["x"]).unwrap();
        for (var, _) in cli.knobs.env("c") {
            assert!(
                text.contains(&format!("${{{var}:-")),
                "compose.yml does not read {var}"
            );
        }
        assert!(
            text.contains(&format!(
                "${{DEMO_IMAGE_TAG:-{}}}",
                env!("CARGO_PKG_VERSION")
            )),
            "compose.yml's default image tag is not the workspace version"
        );
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert!(
            doc.get("version").is_none(),
            "Compose v1 rejects a top-level version: with this syntax"
        );
        assert!(!text.contains(":latest"));
        assert!(!text.contains("restart: true"));
        let services = doc["services"].as_mapping().unwrap();
        for name in ["k8s-sandbox", "producer", "consumer", "overseer"] {
            let svc = &services[name];
            assert!(
                svc.get("healthcheck").is_some(),
                "{name} has no healthcheck"
            );
            assert!(
                svc.get("privileged").is_none(),
                "{name} must not be privileged"
            );
        }
    }

    #[test]
    fn port_forward_route() {
        let cli = Cli::try_parse_from(["x", "--route", "port-forward"]).unwrap();
        assert_eq!(cli.knobs.kafka_broker("c"), "k8s-sandbox:9092");
    }
}
