//! Names the demo gives to what it creates in Docker, in one place, so that
//! `clean` can find exactly those things and nothing else.

/// Compose project name (`-p`); Compose labels everything it creates with it.
pub const DEFAULT_PROJECT: &str = "kafka-throughput-demo";
/// k3d cluster name; k3d labels its containers, networks and volumes with it.
pub const DEFAULT_CLUSTER: &str = "kafka-demo";

/// Label Compose (v1 and v2) puts on containers, networks and volumes.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
/// Label k3d puts on everything that belongs to one cluster.
pub const K3D_CLUSTER_LABEL: &str = "k3d.cluster";
/// Label on every image `cargo xtask build` makes; the value is the component.
pub const IMAGE_LABEL: &str = "dev.kafka-throughput-demo.component";

/// The variable holding the LLM API key, as vibectl reads it.
pub const API_KEY_VAR: &str = "VIBECTL_ANTHROPIC_API_KEY";

/// Default host port of the dashboard.
pub const DEFAULT_DASHBOARD_PORT: u16 = 8080;

/// Which demo instance a command acts on. Tests use their own names so they
/// never touch a demo a developer has running.
#[derive(Debug, Clone, clap::Args)]
pub struct Instance {
    /// Compose project name of the demo.
    #[arg(long, env = "DEMO_PROJECT", default_value = DEFAULT_PROJECT)]
    pub project: String,
    /// Name of the demo's k3d cluster.
    #[arg(long, env = "CLUSTER_NAME", default_value = DEFAULT_CLUSTER)]
    pub cluster: String,
}
