//! Kubeconfigs: the admin one from `k3d kubeconfig get`, rewritten to reach
//! the API through k3d's load balancer by its name on the Compose network,
//! and the agent's one for its ServiceAccount. TLS verification stays on:
//! k3d puts the load balancer's name in the API server certificate, so the
//! CA is kept and no insecure flag is ever written.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde_yaml::{Mapping, Value};

/// What is wrong with a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("not a YAML kubeconfig")]
    Parse(#[source] serde_yaml::Error),
    #[error("kubeconfig has no clusters")]
    NoClusters,
    #[error(
        "cluster {0:?} has no certificate-authority-data; refusing to turn TLS verification off"
    )]
    NoCa(String),
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use kubeconfig {path}")]
    Load {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot build a client from kubeconfig {path}")]
    Client {
        path: String,
        #[source]
        source: kube::Error,
    },
}

/// Point every cluster of `kubeconfig` at `server`, keep each CA, and drop
/// any `insecure-skip-tls-verify`. Everything else (users, contexts) stays.
pub fn rewrite_server(kubeconfig: &str, server: &str) -> Result<String, KubeconfigError> {
    let mut doc: Value = serde_yaml::from_str(kubeconfig).map_err(KubeconfigError::Parse)?;
    let clusters = doc
        .get_mut("clusters")
        .and_then(Value::as_sequence_mut)
        .filter(|c| !c.is_empty())
        .ok_or(KubeconfigError::NoClusters)?;
    for entry in clusters {
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let cluster = entry
            .get_mut("cluster")
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| KubeconfigError::NoCa(name.clone()))?;
        let has_ca = cluster
            .get("certificate-authority-data")
            .and_then(Value::as_str)
            .is_some_and(|ca| !ca.trim().is_empty());
        if !has_ca {
            return Err(KubeconfigError::NoCa(name));
        }
        cluster.insert("server".into(), server.into());
        cluster.remove("insecure-skip-tls-verify");
        // A TLS server name override would no longer match the new host.
        cluster.remove("tls-server-name");
    }
    serde_yaml::to_string(&doc).map_err(KubeconfigError::Parse)
}

/// The server URL and base64 CA of the first cluster of `kubeconfig`.
pub fn first_cluster(kubeconfig: &str) -> Result<(String, String), KubeconfigError> {
    let doc: Value = serde_yaml::from_str(kubeconfig).map_err(KubeconfigError::Parse)?;
    let entry = doc
        .get("clusters")
        .and_then(Value::as_sequence)
        .and_then(|c| c.first())
        .ok_or(KubeconfigError::NoClusters)?;
    let name = entry.get("name").and_then(Value::as_str).unwrap_or("?");
    let cluster = entry.get("cluster");
    let server = cluster
        .and_then(|c| c.get("server"))
        .and_then(Value::as_str)
        .ok_or(KubeconfigError::NoClusters)?;
    let ca = cluster
        .and_then(|c| c.get("certificate-authority-data"))
        .and_then(Value::as_str)
        .ok_or_else(|| KubeconfigError::NoCa(name.to_string()))?;
    Ok((server.to_string(), ca.to_string()))
}

/// A kubeconfig for one ServiceAccount token, defaulting to `namespace`.
pub fn token_kubeconfig(
    server: &str,
    ca_data: &str,
    user: &str,
    token: &str,
    namespace: &str,
) -> String {
    let mut cluster = Mapping::new();
    cluster.insert("server".into(), server.into());
    cluster.insert("certificate-authority-data".into(), ca_data.into());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{
            "name": user,
            "context": {"cluster": "sandbox", "user": user, "namespace": namespace},
        }],
        "current-context": user,
        "preferences": {},
    });
    // Serialising a JSON value built here cannot fail.
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// Write `contents` to `path` readable by the owner only (it holds
/// credentials), replacing what was there.
pub fn write_private(path: &Path, contents: &str) -> Result<(), KubeconfigError> {
    let err = |source| KubeconfigError::Write {
        path: path.display().to_string(),
        source,
    };
    // Only a directory made here is narrowed to its owner; an existing one
    // (it could be /tmp) keeps its mode.
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    // `mode` only applies on creation; a leftover temp file keeps its mode.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// A client for the current context of the kubeconfig at `path`.
pub async fn client_from_file(path: &Path) -> Result<kube::Client, KubeconfigError> {
    let shown = path.display().to_string();
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|source| KubeconfigError::Load {
            path: shown.clone(),
            source,
        })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|source| KubeconfigError::Load {
            path: shown.clone(),
            source,
        })?;
    kube::Client::try_from(config).map_err(|source| KubeconfigError::Client {
        path: shown,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3D: &str = include_str!("../tests/fixtures/k3d-kubeconfig.yaml");

    #[test]
    fn rewrite_points_at_the_load_balancer_and_keeps_the_ca() {
        let server = "https://k3d-kafka-demo-serverlb:6443";
        let out = rewrite_server(K3D, server).unwrap();
        let (new_server, ca) = first_cluster(&out).unwrap();
        let (_, old_ca) = first_cluster(K3D).unwrap();
        assert_eq!(new_server, server);
        assert_eq!(ca, old_ca);
        assert!(!out.contains("insecure-skip-tls-verify"));
        assert!(!out.contains("0.0.0.0"));
        // Users and contexts are untouched.
        let before: Value = serde_yaml::from_str(K3D).unwrap();
        let after: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(before["users"], after["users"]);
        assert_eq!(before["contexts"], after["contexts"]);
        assert_eq!(after["current-context"], "k3d-kafka-demo");
    }

    #[test]
    fn rewrite_drops_an_insecure_flag() {
        let insecure = K3D.replace(
            "    server: https://0.0.0.0:41239",
            "    server: https://0.0.0.0:41239\n    insecure-skip-tls-verify: true",
        );
        assert!(insecure.contains("insecure-skip-tls-verify"));
        let out = rewrite_server(&insecure, "https://lb:6443").unwrap();
        assert!(!out.contains("insecure-skip-tls-verify"), "{out}");
    }

    #[test]
    fn rewrite_refuses_a_cluster_without_ca() {
        let no_ca = "clusters:\n- name: c\n  cluster:\n    server: https://x:6443\n";
        assert!(matches!(
            rewrite_server(no_ca, "https://lb:6443"),
            Err(KubeconfigError::NoCa(name)) if name == "c"
        ));
        assert!(matches!(
            rewrite_server("kind: Config\n", "https://lb:6443"),
            Err(KubeconfigError::NoClusters)
        ));
        assert!(rewrite_server(": : :", "https://lb:6443").is_err());
    }

    #[test]
    fn token_kubeconfig_is_loadable_and_scoped() {
        let text = token_kubeconfig("https://lb:6443", "Q0E=", "vibectl-agent", "tok", "kafka");
        let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("vibectl-agent"));
        let ctx = parsed.contexts[0].context.as_ref().unwrap();
        assert_eq!(ctx.namespace.as_deref(), Some("kafka"));
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some());
        assert_eq!(first_cluster(&text).unwrap().1, "Q0E=");
    }

    #[test]
    fn private_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube/config");
        write_private(&path, "a").unwrap();
        write_private(&path, "b").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[tokio::test]
    async fn the_rewritten_k3d_fixture_makes_a_client() {
        // The fixture's certificates are real (EC P-256, like k3s), so this
        // proves rustls accepts what k3d hands out.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let text = rewrite_server(K3D, "https://k3d-kafka-demo-serverlb:6443").unwrap();
        write_private(&path, &text).unwrap();
        client_from_file(&path).await.unwrap();
    }
}
