//! Phase 2 and the Kubernetes side of phase 1: wait for the API, apply the
//! manifests with server-side apply, create the cluster id once, wait until
//! the broker is Ready, and write the agent's kubeconfig.

use std::path::Path;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::wait::await_condition;
use rand::RngCore;

use crate::manifests::{
    AGENT_ACCOUNT, AGENT_TOKEN_SECRET, CLUSTER_ID_CONFIGMAP, FIELD_MANAGER, Manifest, NAMESPACE,
    STATEFULSET, Step,
};
use crate::readiness::{describe_pod, describe_rollout, pod_ready, rollout_done};
use crate::{Error, kubeconfig};

/// Wait until the API server answers; returns its version.
pub async fn wait_api(client: &kube::Client, timeout: Duration) -> Result<String, Error> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    let attempt = || async { client.apiserver_version().await };
    let answered = attempt
        .retry(backoff)
        .notify(|e, next| tracing::debug!("API not answering yet ({e}); next try in {next:?}"));
    match tokio::time::timeout(timeout, answered).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(source)) => Err(Error::Kube {
            what: "ask the API server for its version".into(),
            source,
        }),
        Err(_) => Err(Error::Timeout {
            what: "the Kubernetes API server to answer".into(),
            after: timeout,
        }),
    }
}

/// Server-side apply every manifest, in order, as one forced field manager.
/// The cluster id config map is created (once) before the config-map step.
pub async fn apply_all(client: &kube::Client, manifests: &[Manifest]) -> Result<(), Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut cluster_id_done = false;
    for m in manifests {
        if m.kind.step >= Step::ConfigMaps && !cluster_id_done {
            let id = ensure_cluster_id(client).await?;
            tracing::info!("KRaft cluster id: {id}");
            cluster_id_done = true;
        }
        let api: Api<DynamicObject> = match m.namespace().filter(|_| m.kind.namespaced) {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &m.kind.resource),
            None => Api::all_with(client.clone(), &m.kind.resource),
        };
        api.patch(m.name(), &params, &Patch::Apply(&m.object))
            .await
            .map_err(|source| Error::Kube {
                what: format!("apply {} from manifests/{}", m.describe(), m.file),
                source,
            })?;
        tracing::info!("applied {}", m.describe());
    }
    Ok(())
}

/// A KRaft cluster id as `kafka-storage.sh random-uuid` makes them: 16
/// random bytes, URL-safe base64 without padding, never starting with '-'.
pub fn new_cluster_id() -> String {
    loop {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if !id.starts_with('-') && bytes != [0u8; 16] {
            return id;
        }
    }
}

/// Create the cluster id config map unless it exists; return the id in
/// use. Never overwritten: the broker's volume is formatted with it.
pub async fn ensure_cluster_id(client: &kube::Client) -> Result<String, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let what = || format!("create config map {NAMESPACE}/{CLUSTER_ID_CONFIGMAP}");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": CLUSTER_ID_CONFIGMAP, "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "kafka-throughput-demo"}},
        "data": {"CLUSTER_ID": new_cluster_id()},
    }))
    .map_err(|e| Error::Io {
        what: what(),
        source: std::io::Error::other(e),
    })?;
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let existing = match api.create(&pp, &cm).await {
        Ok(created) => created,
        Err(kube::Error::Api(status)) if status.code == 409 => api
            .get(CLUSTER_ID_CONFIGMAP)
            .await
            .map_err(|source| Error::Kube {
                what: what(),
                source,
            })?,
        Err(source) => {
            return Err(Error::Kube {
                what: what(),
                source,
            });
        }
    };
    Ok(existing
        .data
        .and_then(|d| d.get("CLUSTER_ID").cloned())
        .unwrap_or_default())
}

/// Wait (bounded) until the broker pod is Ready and the StatefulSet has
/// rolled out; on timeout say what was last seen.
pub async fn wait_broker_ready(client: &kube::Client, timeout: Duration) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    let pod_name = format!("{STATEFULSET}-0");
    let deadline = tokio::time::Instant::now() + timeout;

    let ready = await_condition(pods.clone(), &pod_name, |p: Option<&Pod>| {
        p.is_some_and(pod_ready)
    });
    match tokio::time::timeout_at(deadline, ready).await {
        Ok(Ok(_)) => tracing::info!("broker pod {NAMESPACE}/{pod_name} is Ready"),
        Ok(Err(e)) => {
            return Err(Error::Io {
                what: format!("watch pod {NAMESPACE}/{pod_name}"),
                source: std::io::Error::other(e),
            });
        }
        Err(_) => {
            let seen = match pods.get_opt(&pod_name).await {
                Ok(Some(p)) => describe_pod(&p),
                Ok(None) => "the pod does not exist".into(),
                Err(e) => format!("cannot read it: {e}"),
            };
            return Err(Error::Timeout {
                what: format!("broker pod {NAMESPACE}/{pod_name} to be Ready (last seen: {seen})"),
                after: timeout,
            });
        }
    }

    let rolled = await_condition(sets.clone(), STATEFULSET, |s: Option<&StatefulSet>| {
        s.is_some_and(rollout_done)
    });
    match tokio::time::timeout_at(deadline, rolled).await {
        Ok(Ok(_)) => {
            tracing::info!("statefulset {NAMESPACE}/{STATEFULSET} rolled out");
            Ok(())
        }
        Ok(Err(e)) => Err(Error::Io {
            what: format!("watch statefulset {NAMESPACE}/{STATEFULSET}"),
            source: std::io::Error::other(e),
        }),
        Err(_) => {
            let seen = match sets.get_opt(STATEFULSET).await {
                Ok(Some(s)) => describe_rollout(&s),
                Ok(None) => "it does not exist".into(),
                Err(e) => format!("cannot read it: {e}"),
            };
            Err(Error::Timeout {
                what: format!(
                    "statefulset {NAMESPACE}/{STATEFULSET} to roll out (last seen: {seen})"
                ),
                after: timeout,
            })
        }
    }
}

/// Write a kubeconfig for the agent's ServiceAccount to `path`: the admin
/// kubeconfig's server and CA with the account's token. Waits (bounded)
/// for the token controller to fill in the token Secret.
pub async fn write_agent_kubeconfig(
    client: &kube::Client,
    admin_kubeconfig: &str,
    path: &Path,
    timeout: Duration,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let has_token = |s: Option<&Secret>| {
        s.and_then(|s| s.data.as_ref())
            .and_then(|d| d.get("token"))
            .is_some_and(|t| !t.0.is_empty())
    };
    let filled = await_condition(secrets, AGENT_TOKEN_SECRET, has_token);
    let secret = match tokio::time::timeout(timeout, filled).await {
        Ok(Ok(Some(secret))) => secret,
        Ok(Ok(None)) => {
            return Err(Error::Timeout {
                what: format!("secret {NAMESPACE}/{AGENT_TOKEN_SECRET}"),
                after: timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(Error::Io {
                what: format!("watch secret {NAMESPACE}/{AGENT_TOKEN_SECRET}"),
                source: std::io::Error::other(e),
            });
        }
        Err(_) => {
            return Err(Error::Timeout {
                what: format!("a token in secret {NAMESPACE}/{AGENT_TOKEN_SECRET}"),
                after: timeout,
            });
        }
    };
    let token = secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|t| String::from_utf8_lossy(&t.0).trim().to_string())
        .unwrap_or_default();
    let (server, ca) = kubeconfig::first_cluster(admin_kubeconfig)?;
    let text = kubeconfig::token_kubeconfig(&server, &ca, AGENT_ACCOUNT, &token, NAMESPACE);
    kubeconfig::write_private(path, &text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let ids: std::collections::HashSet<String> = (0..200).map(|_| new_cluster_id()).collect();
        assert_eq!(ids.len(), 200);
        for id in &ids {
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-'));
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
        }
    }
}
