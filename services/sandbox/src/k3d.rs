//! Phase 1's k3d side: create the cluster (or reuse a healthy one of that
//! name), cap its server node's memory, and fetch its kubeconfig. Arguments
//! are built by pure functions so tests can check them without k3d.

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, Programs};
use crate::program::{Invocation, ProgramError};
use crate::versions::K3S_IMAGE;

/// Bound on the quick k3d and docker calls (list, kubeconfig, update).
const QUICK: Duration = Duration::from_secs(60);

/// One entry of `k3d cluster list -o json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub name: String,
    #[serde(default)]
    pub servers_count: u32,
    #[serde(default)]
    pub servers_running: u32,
}

impl ClusterStatus {
    /// Every server node runs, so the API can answer.
    pub fn healthy(&self) -> bool {
        self.servers_count > 0 && self.servers_running == self.servers_count
    }
}

/// What phase 1 did with the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterAction {
    Created,
    Started,
    Reused,
}

/// Errors of the k3d steps.
#[derive(Debug, thiserror::Error)]
pub enum K3dError {
    #[error("{what}")]
    Program {
        what: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("cannot read `k3d cluster list -o json` output")]
    List(#[source] serde_json::Error),
}

/// Arguments of `k3d cluster create` for `cluster`.
pub fn create_args(cluster: &ClusterConfig) -> Vec<String> {
    let name = &cluster.name;
    let timeout = format!("{}s", cluster.create_timeout.as_secs());
    let mut args: Vec<String> = [
        "cluster",
        "create",
        name,
        "--image",
        K3S_IMAGE,
        "--network",
        &cluster.network,
        "--servers",
        "1",
        "--agents",
        "0",
        // The sandbox writes its own kubeconfig; k3d must not touch ~/.kube.
        "--kubeconfig-update-default=false",
        "--kubeconfig-switch-context=false",
        "--wait",
        "--timeout",
        &timeout,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for k3s_arg in [
        // Not needed by a one-broker demo, and each costs memory.
        "--disable=traefik@server:*".to_string(),
        "--disable=servicelb@server:*".to_string(),
        // k3d already adds the load balancer's name; saying so keeps the
        // rewritten kubeconfig's TLS check independent of that default.
        format!("--tls-san=k3d-{name}-serverlb@server:*"),
    ] {
        args.push("--k3s-arg".into());
        args.push(k3s_arg);
    }
    args
}

/// Arguments of the `docker update` that caps the server node's memory.
///
/// Not `k3d cluster create --servers-memory`: that bind-mounts a fake
/// `/proc/meminfo` from a file k3d writes on *its* filesystem, which the
/// Docker daemon cannot see when k3d runs inside a container
/// (k3d-io/k3d#1087). A plain cgroup limit on the node container holds
/// the same way.
pub fn memory_args(cluster: &ClusterConfig) -> Vec<String> {
    let limit = format!("{}m", cluster.server_memory_mb);
    vec![
        "update".into(),
        "--memory".into(),
        limit.clone(),
        "--memory-swap".into(),
        limit,
        cluster.server_node(),
    ]
}

/// Find `name` in the output of `k3d cluster list -o json`.
pub fn find_cluster(list_json: &str, name: &str) -> Result<Option<ClusterStatus>, K3dError> {
    let trimmed = list_json.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let clusters: Vec<ClusterStatus> = serde_json::from_str(trimmed).map_err(K3dError::List)?;
    Ok(clusters.into_iter().find(|c| c.name == name))
}

/// Make sure the cluster exists and runs, cap its node's memory, and
/// return its kubeconfig as k3d prints it.
pub async fn ensure_cluster(
    cluster: &ClusterConfig,
    programs: &Programs,
    cancel: &CancellationToken,
) -> Result<(ClusterAction, String), K3dError> {
    let k3d = |args: &[&str]| Invocation::new(&programs.k3d).args(args.iter().copied());
    let listed = k3d(&["cluster", "list", "-o", "json"])
        .run(QUICK, cancel)
        .await
        .map_err(|source| K3dError::Program {
            what: "list k3d clusters",
            source,
        })?;
    let action = match find_cluster(&listed.stdout, &cluster.name)? {
        None => {
            tracing::info!(
                "creating k3d cluster {} on network {} (image {K3S_IMAGE})",
                cluster.name,
                cluster.network
            );
            Invocation::new(&programs.k3d)
                .args(create_args(cluster))
                // k3d's own --timeout rolls back; ours also covers a hang.
                .run(cluster.create_timeout + QUICK, cancel)
                .await
                .map_err(|source| K3dError::Program {
                    what: "create the k3d cluster",
                    source,
                })?;
            ClusterAction::Created
        }
        Some(status) if !status.healthy() => {
            tracing::info!(
                "k3d cluster {} exists with {}/{} servers running; starting it",
                cluster.name,
                status.servers_running,
                status.servers_count
            );
            let timeout = format!("{}s", cluster.create_timeout.as_secs());
            k3d(&[
                "cluster",
                "start",
                &cluster.name,
                "--wait",
                "--timeout",
                &timeout,
            ])
            .run(cluster.create_timeout + QUICK, cancel)
            .await
            .map_err(|source| K3dError::Program {
                what: "start the existing k3d cluster",
                source,
            })?;
            ClusterAction::Started
        }
        Some(_) => {
            tracing::info!("reusing the running k3d cluster {}", cluster.name);
            ClusterAction::Reused
        }
    };
    Invocation::new(&programs.docker)
        .args(memory_args(cluster))
        .run(QUICK, cancel)
        .await
        .map_err(|source| K3dError::Program {
            what: "limit the k3d server node's memory",
            source,
        })?;
    let kubeconfig = k3d(&["kubeconfig", "get", &cluster.name])
        .run(QUICK, cancel)
        .await
        .map_err(|source| K3dError::Program {
            what: "get the k3d kubeconfig",
            source,
        })?;
    Ok((action, kubeconfig.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashMap;

    fn cluster() -> ClusterConfig {
        let env: HashMap<&str, &str> = [("K3D_NETWORK", "demo-net")].into();
        Config::from_env(&env).unwrap().cluster
    }

    fn flag_value<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn create_args_pin_the_image_and_join_the_network() {
        let args = create_args(&cluster());
        assert_eq!(&args[..3], ["cluster", "create", "kafka-demo"]);
        assert_eq!(flag_value(&args, "--image"), ["rancher/k3s:v1.33.4-k3s1"]);
        assert_eq!(flag_value(&args, "--network"), ["demo-net"]);
        assert_eq!(flag_value(&args, "--timeout"), ["300s"]);
        assert!(args.contains(&"--kubeconfig-update-default=false".to_string()));
        assert!(
            flag_value(&args, "--k3s-arg").contains(&"--tls-san=k3d-kafka-demo-serverlb@server:*")
        );
        // The memory limit comes from `docker update`, never from k3d.
        assert!(!args.iter().any(|a| a.contains("memory")));
    }

    #[test]
    fn memory_args_cap_memory_and_swap_of_the_server_node() {
        assert_eq!(
            memory_args(&cluster()),
            [
                "update",
                "--memory",
                "4096m",
                "--memory-swap",
                "4096m",
                "k3d-kafka-demo-server-0"
            ]
        );
    }

    #[test]
    fn cluster_list_is_parsed_and_health_judged() {
        // Trimmed from real `k3d cluster list -o json` output.
        let json = r#"[{"name":"other","serversCount":1,"serversRunning":1},
            {"name":"kafka-demo","network":{"name":"kafka-demo"},"nodes":[],
             "serversCount":1,"serversRunning":0,"agentsCount":0,
             "agentsRunning":0,"hasLoadbalancer":true}]"#;
        let found = find_cluster(json, "kafka-demo").unwrap().unwrap();
        assert!(!found.healthy());
        assert!(find_cluster(json, "other").unwrap().unwrap().healthy());
        assert_eq!(find_cluster(json, "missing").unwrap(), None);
        assert_eq!(find_cluster("[]", "x").unwrap(), None);
        assert_eq!(find_cluster("", "x").unwrap(), None);
        assert!(find_cluster("No clusters", "x").is_err());
    }
}
