//! The sandbox's settings, read from environment variables and validated
//! before anything starts (bad value: one line naming the variable, exit 2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use demo_common::config::{ConfigError, EnvSource, Settings};
use demo_common::status::DEFAULT_STATUS_DIR;

/// Default k3d cluster name (xtask uses the same one to clean up).
pub const DEFAULT_CLUSTER: &str = "kafka-demo";
/// Default Docker network shared with the Compose stack.
pub const DEFAULT_NETWORK: &str = "kafka-demo";
/// vibectl 0.11.6's own default model (needs the llm-anthropic plugin).
pub const DEFAULT_MODEL: &str = "claude-3.7-sonnet";
/// Longest cluster name k3d accepts.
const MAX_CLUSTER_NAME: usize = 32;

/// Everything the sandbox needs; see the README for each variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// Shared status directory (`STATUS_DIR`).
    pub status_dir: PathBuf,
    /// Where the kubeconfigs live (`KUBE_DIR`); `config` in it is the admin
    /// one, so `kubectl` in the container works without flags.
    pub kube_dir: PathBuf,
    pub cluster: ClusterConfig,
    pub kafka: KafkaConfig,
    pub port_forward: PortForwardConfig,
    pub agent: AgentConfig,
    /// Programs the sandbox runs; plain names are looked up on `PATH`.
    pub programs: Programs,
}

/// Phase 1: the k3d cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    /// Docker network the nodes join (the Compose network).
    pub network: String,
    /// Memory limit of the k3d server node container, MiB.
    pub server_memory_mb: u32,
    /// Bound on `k3d cluster create`.
    pub create_timeout: Duration,
    /// The API server URL written into the kubeconfig.
    pub api_server: String,
    /// Bound on waiting for the API to answer.
    pub api_timeout: Duration,
}

impl ClusterConfig {
    /// The server node's container name, which is also its DNS name on the
    /// Compose network (the direct route to Kafka dials it).
    pub fn server_node(&self) -> String {
        format!("k3d-{}-server-0", self.name)
    }
}

/// Phase 2: the broker.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// CPU limit of the broker container, cores.
    pub cpu_limit: f64,
    /// Memory limit (and request) of the broker container, MiB.
    pub memory_limit_mb: u32,
    /// NodePort of the direct route.
    pub node_port: u16,
    /// Host name the port-forward route advertises (the sandbox's name on
    /// the Compose network).
    pub advertised_host: String,
    /// Bound on waiting for the broker to become Ready.
    pub ready_timeout: Duration,
}

/// Phase 3: the port-forward listener.
#[derive(Debug, Clone)]
pub struct PortForwardConfig {
    pub listen: SocketAddr,
    /// How long one accepted connection keeps trying to reach a Ready pod.
    pub retry_for: Duration,
}

/// Phase 4: the agent loop.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub model: String,
    pub target_latency_ms: f64,
    pub interval: Duration,
    /// `vibectl auto --limit`.
    pub auto_limit: u32,
    /// Bound on one `vibectl auto` (and on every other vibectl call).
    pub auto_timeout: Duration,
    /// Older latency figures count as stale.
    pub latency_max_age: Duration,
    /// Agent-only mode: mark `kafka_ready` once this `host:port` accepts a
    /// TCP connection (unset: mark it at once).
    pub kafka_broker: Option<String>,
}

/// Names or paths of the external programs.
#[derive(Debug, Clone)]
pub struct Programs {
    pub k3d: PathBuf,
    pub docker: PathBuf,
    pub vibectl: PathBuf,
}

impl Default for Programs {
    fn default() -> Self {
        Self {
            k3d: "k3d".into(),
            docker: "docker".into(),
            vibectl: "vibectl".into(),
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Config {
    /// Read and validate every setting.
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let s = Settings::new(env);
        let status_dir = PathBuf::from(s.string("STATUS_DIR", DEFAULT_STATUS_DIR)?);
        let default_kube_dir = env
            .get("HOME")
            .filter(|h| !h.trim().is_empty())
            .map(|h| PathBuf::from(h).join(".kube"))
            .unwrap_or_else(|| PathBuf::from("/tmp/sandbox-kube"));
        let kube_dir = match env.get("KUBE_DIR") {
            None => default_kube_dir,
            Some(_) => PathBuf::from(s.string("KUBE_DIR", "")?),
        };

        let name = s.string("CLUSTER_NAME", DEFAULT_CLUSTER)?;
        check_dns_label("CLUSTER_NAME", &name, MAX_CLUSTER_NAME)?;
        let network = s.string("K3D_NETWORK", DEFAULT_NETWORK)?;
        let api_default = format!("https://k3d-{name}-serverlb:6443");

        let kafka = KafkaConfig {
            cpu_limit: s.number("KAFKA_CPU_LIMIT", 2.0, 0.5..=64.0)?,
            memory_limit_mb: s.number("KAFKA_MEMORY_LIMIT_MB", 2048, 512..=262_144)?,
            node_port: s.number("KAFKA_NODE_PORT", 30092, 30000..=32767)?,
            advertised_host: s.string("KAFKA_ADVERTISED_HOST", "k8s-sandbox")?,
            ready_timeout: secs(s.number("KAFKA_READY_TIMEOUT_S", 600, 10..=7200)?),
        };
        check_dns_label("KAFKA_ADVERTISED_HOST", &kafka.advertised_host, 253)?;

        let cluster = ClusterConfig {
            server_memory_mb: s.number("K3D_SERVER_MEMORY_MB", 4096, 1024..=524_288)?,
            create_timeout: secs(s.number("K3D_CREATE_TIMEOUT_S", 300, 30..=3600)?),
            api_server: s.http_url("KUBE_API_SERVER", &api_default)?,
            api_timeout: secs(s.number("KUBE_API_TIMEOUT_S", 120, 5..=3600)?),
            name,
            network,
        };
        // The broker lives inside the node: a pod limit above the node's
        // own limit would be a limit that never holds.
        if u64::from(kafka.memory_limit_mb) + 512 > u64::from(cluster.server_memory_mb) {
            return Err(ConfigError {
                var: "K3D_SERVER_MEMORY_MB".into(),
                value: cluster.server_memory_mb.to_string(),
                expected: format!(
                    "at least KAFKA_MEMORY_LIMIT_MB + 512 = {}",
                    kafka.memory_limit_mb + 512
                ),
            });
        }

        let port_forward = PortForwardConfig {
            listen: s.socket_addr("PORT_FORWARD_ADDR", "0.0.0.0:9092")?,
            retry_for: secs(s.number("PORT_FORWARD_RETRY_S", 30, 1..=600)?),
        };

        let kafka_broker = match env.get("KAFKA_BROKER") {
            None => None,
            Some(_) => Some(s.host_port("KAFKA_BROKER", "")?),
        };
        let agent = AgentConfig {
            model: s.string("VIBECTL_MODEL", DEFAULT_MODEL)?,
            target_latency_ms: s.number("TARGET_LATENCY_MS", 5.0, 0.1..=60_000.0)?,
            interval: secs(s.number("AGENT_INTERVAL_S", 30, 1..=3600)?),
            auto_limit: s.number("AGENT_AUTO_LIMIT", 3, 1..=100)?,
            auto_timeout: secs(s.number("AGENT_AUTO_TIMEOUT_S", 300, 5..=7200)?),
            latency_max_age: secs(s.number("AGENT_LATENCY_MAX_AGE_S", 60, 1..=3600)?),
            kafka_broker,
        };

        Ok(Self {
            status_dir,
            kube_dir,
            cluster,
            kafka,
            port_forward,
            agent,
            programs: Programs::default(),
        })
    }

    /// The admin kubeconfig (cluster-admin; the sandbox's own identity).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.kube_dir.join("config")
    }

    /// The agent's kubeconfig (ServiceAccount limited to namespace kafka).
    pub fn agent_kubeconfig(&self) -> PathBuf {
        self.kube_dir.join("agent.kubeconfig")
    }
}

/// Names that end up in DNS names and Docker container names.
fn check_dns_label(var: &str, value: &str, max: usize) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !value.starts_with(['-', '.'])
        && !value.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            var: var.into(),
            value: value.into(),
            expected: format!(
                "lowercase letters, digits and '-', at most {max} characters, \
                 starting and ending with a letter or digit"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<&str, &str> = pairs.iter().copied().collect();
        Config::from_env(&env)
    }

    #[test]
    fn defaults_are_valid_and_consistent() {
        let c = config(&[("HOME", "/home/sandbox")]).unwrap();
        assert_eq!(c.status_dir, PathBuf::from("/tmp/status"));
        assert_eq!(c.kube_dir, PathBuf::from("/home/sandbox/.kube"));
        assert_eq!(c.cluster.name, "kafka-demo");
        assert_eq!(c.cluster.api_server, "https://k3d-kafka-demo-serverlb:6443");
        assert_eq!(c.cluster.server_node(), "k3d-kafka-demo-server-0");
        assert_eq!(c.port_forward.listen.port(), 9092);
        assert_eq!(c.agent.target_latency_ms, 5.0);
        assert_eq!(c.agent.kafka_broker, None);
        assert_eq!(
            c.admin_kubeconfig(),
            PathBuf::from("/home/sandbox/.kube/config")
        );
    }

    #[test]
    fn api_server_follows_the_cluster_name() {
        let c = config(&[("CLUSTER_NAME", "demo-2")]).unwrap();
        assert_eq!(c.cluster.api_server, "https://k3d-demo-2-serverlb:6443");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("CLUSTER_NAME", "Bad_Name"),
            ("CLUSTER_NAME", "a-very-long-cluster-name-beyond-32-chars"),
            ("KAFKA_NODE_PORT", "8080"),
            ("AGENT_AUTO_LIMIT", "0"),
            ("TARGET_LATENCY_MS", "fast"),
            ("PORT_FORWARD_ADDR", "localhost"),
            ("KAFKA_BROKER", "tansu"),
            ("KUBE_API_SERVER", "k3d:6443"),
            ("KUBE_DIR", " "),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
    }

    #[test]
    fn node_memory_must_hold_the_broker_limit() {
        let err = config(&[
            ("KAFKA_MEMORY_LIMIT_MB", "4096"),
            ("K3D_SERVER_MEMORY_MB", "4096"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "K3D_SERVER_MEMORY_MB");
        assert!(err.expected.contains("4608"), "{err}");
    }

    #[test]
    fn agent_only_broker_probe_is_optional() {
        let c = config(&[("KAFKA_BROKER", "kafka:9092")]).unwrap();
        assert_eq!(c.agent.kafka_broker.as_deref(), Some("kafka:9092"));
    }
}
