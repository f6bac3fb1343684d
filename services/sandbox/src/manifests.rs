//! The Kubernetes manifests in `manifests/`, compiled into the binary, the
//! fixed table of kinds they use (so applying needs no discovery), and the
//! few values the sandbox sets from its settings before applying.

use std::any::TypeId;
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Resource;
use kube::core::{ApiResource, DynamicObject};
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;

/// Namespace of everything the demo runs in Kubernetes.
pub const NAMESPACE: &str = "kafka";
/// The broker's StatefulSet, and the name of its container.
pub const STATEFULSET: &str = "kafka";
pub const CONTAINER: &str = "kafka";
/// Selects the broker pods.
pub const POD_SELECTOR: &str = "app.kubernetes.io/name=kafka";
/// The broker's port-forward listener (advertises the sandbox's name).
pub const PORTFORWARD_PORT: u16 = 9092;
/// Config map with the advertised routes, set from settings.
pub const ROUTES_CONFIGMAP: &str = "kafka-routes";
/// Config map with the KRaft cluster id, created once.
pub const CLUSTER_ID_CONFIGMAP: &str = "kafka-cluster-id";
/// Config map the agent loop mirrors the overseer's metrics into.
pub const METRICS_CONFIGMAP: &str = "kafka-latency-metrics";
/// The NodePort service of the direct route.
pub const NODEPORT_SERVICE: &str = "kafka-external";
/// The agent's ServiceAccount and its token Secret.
pub const AGENT_ACCOUNT: &str = "vibectl-agent";
pub const AGENT_TOKEN_SECRET: &str = "vibectl-agent-token";
/// The one field manager of everything the sandbox applies.
pub const FIELD_MANAGER: &str = "kafka-demo-sandbox";

/// Env vars of the broker container the agent may change (the instructions
/// name exactly these).
pub const TUNABLE_ENV: &[&str] = &[
    "KAFKA_NUM_NETWORK_THREADS",
    "KAFKA_NUM_IO_THREADS",
    "KAFKA_HEAP_OPTS",
    "KAFKA_JVM_PERFORMANCE_OPTS",
    "KAFKA_QUEUED_MAX_REQUESTS",
    "KAFKA_SOCKET_SEND_BUFFER_BYTES",
    "KAFKA_SOCKET_RECEIVE_BUFFER_BYTES",
];

/// `KAFKA_*` env vars that shape the cluster (listeners, roles, ids); the
/// clients depend on them, so they are not broker "settings".
pub const STRUCTURAL_ENV: &[&str] = &[
    "KAFKA_NODE_ID",
    "KAFKA_PROCESS_ROLES",
    "KAFKA_CONTROLLER_QUORUM_VOTERS",
    "KAFKA_CONTROLLER_LISTENER_NAMES",
    "KAFKA_LISTENERS",
    "KAFKA_ADVERTISED_LISTENERS",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
    "KAFKA_INTER_BROKER_LISTENER_NAME",
    "KAFKA_LOG_DIRS",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS",
];

/// The files of `manifests/`, in the order they are read.
pub const FILES: &[(&str, &str)] = &[
    (
        "00-namespace.yaml",
        include_str!("../../../manifests/00-namespace.yaml"),
    ),
    (
        "10-agent-rbac.yaml",
        include_str!("../../../manifests/10-agent-rbac.yaml"),
    ),
    (
        "20-kafka-routes.yaml",
        include_str!("../../../manifests/20-kafka-routes.yaml"),
    ),
    (
        "30-kafka-services.yaml",
        include_str!("../../../manifests/30-kafka-services.yaml"),
    ),
    (
        "40-kafka-statefulset.yaml",
        include_str!("../../../manifests/40-kafka-statefulset.yaml"),
    ),
];

/// Apply order: each step may depend on the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Namespace,
    Rbac,
    ConfigMaps,
    Services,
    Workloads,
}

/// One kind the manifests may use.
#[derive(Debug, Clone)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub step: Step,
}

fn kind<K>(step: Step) -> Kind
where
    K: Resource<DynamicType = ()> + 'static,
    K::Scope: 'static,
{
    Kind {
        resource: ApiResource::erase::<K>(&()),
        namespaced: TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>(),
        step,
    }
}

/// Every kind the manifests may use, with where it goes in the apply order.
pub fn kinds() -> Vec<Kind> {
    vec![
        kind::<Namespace>(Step::Namespace),
        kind::<ServiceAccount>(Step::Rbac),
        kind::<Secret>(Step::Rbac),
        kind::<Role>(Step::Rbac),
        kind::<RoleBinding>(Step::Rbac),
        kind::<ConfigMap>(Step::ConfigMaps),
        kind::<Service>(Step::Services),
        kind::<StatefulSet>(Step::Workloads),
    ]
}

/// A problem with the manifests themselves (a bug in the repository).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: document {index} is not a Kubernetes object")]
    Parse {
        file: &'static str,
        index: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{file}: {what} is not in the sandbox's kind table; add it to manifests::kinds()")]
    UnknownKind { file: &'static str, what: String },
    #[error("{file}: {what} needs metadata.name (and a namespace if namespaced)")]
    MissingName { file: &'static str, what: String },
    #[error("the manifests have no {0}; the sandbox needs it")]
    Missing(String),
}

/// One object to apply.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: &'static str,
    pub kind: Kind,
    pub object: DynamicObject,
}

impl Manifest {
    pub fn name(&self) -> &str {
        self.object.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object.metadata.namespace.as_deref()
    }

    /// `Kind/namespace/name`, for logs.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{}/{ns}/{}", self.kind.resource.kind, self.name()),
            None => format!("{}/{}", self.kind.resource.kind, self.name()),
        }
    }
}

/// Every object of `files`, each matched to its kind, sorted into apply
/// order (file order within a step).
pub fn parse(files: &[(&'static str, &str)]) -> Result<Vec<Manifest>, ManifestError> {
    let table = kinds();
    let mut out = Vec::new();
    for &(file, text) in files {
        for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = Value::deserialize(doc).map_err(|source| ManifestError::Parse {
                file,
                index,
                source,
            })?;
            if value.is_null() {
                continue;
            }
            let object: DynamicObject =
                serde_json::from_value(value).map_err(|e| ManifestError::Parse {
                    file,
                    index,
                    source: serde::de::Error::custom(e),
                })?;
            let types = object.types.clone().unwrap_or_default();
            let what = format!("{} {}", types.api_version, types.kind);
            let kind = table
                .iter()
                .find(|k| {
                    k.resource.api_version == types.api_version && k.resource.kind == types.kind
                })
                .ok_or_else(|| ManifestError::UnknownKind {
                    file,
                    what: what.clone(),
                })?
                .clone();
            let named = object.metadata.name.as_ref().is_some_and(|n| !n.is_empty());
            if !named || (kind.namespaced && object.metadata.namespace.is_none()) {
                return Err(ManifestError::MissingName { file, what });
            }
            out.push(Manifest { file, kind, object });
        }
    }
    out.sort_by_key(|m| m.kind.step);
    Ok(out)
}

/// The values the sandbox sets from its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Overrides {
    pub portforward_host: String,
    pub nodeport_host: String,
    pub node_port: u16,
    pub cpu_limit: f64,
    pub memory_limit_mb: u32,
}

impl Overrides {
    pub fn from_config(config: &Config) -> Self {
        Self {
            portforward_host: config.kafka.advertised_host.clone(),
            nodeport_host: config.cluster.server_node(),
            node_port: config.kafka.node_port,
            cpu_limit: config.kafka.cpu_limit,
            memory_limit_mb: config.kafka.memory_limit_mb,
        }
    }
}

/// Kubernetes quantity for a CPU amount, in millicores.
pub fn cpu_quantity(cores: f64) -> String {
    format!("{}m", (cores * 1000.0).round() as u64)
}

/// The embedded manifests with `overrides` applied, in apply order.
pub fn render(overrides: &Overrides) -> Result<Vec<Manifest>, ManifestError> {
    let mut manifests = parse(FILES)?;
    customize(&mut manifests, overrides)?;
    Ok(manifests)
}

/// Set the routes, the NodePort and the broker's resources. Each target
/// must exist, so a renamed object in `manifests/` fails loudly here.
pub fn customize(manifests: &mut [Manifest], o: &Overrides) -> Result<(), ManifestError> {
    let routes = find(manifests, "ConfigMap", ROUTES_CONFIGMAP)?;
    routes.data["data"] = serde_json::json!({
        "PORTFORWARD_HOST": o.portforward_host,
        "NODEPORT_HOST": o.nodeport_host,
        "NODEPORT_PORT": o.node_port.to_string(),
    });

    let service = find(manifests, "Service", NODEPORT_SERVICE)?;
    let port = service.data["spec"]["ports"]
        .as_array_mut()
        .and_then(|ports| ports.iter_mut().find(|p| p["name"] == "nodeport"))
        .ok_or_else(|| ManifestError::Missing(format!("port nodeport in {NODEPORT_SERVICE}")))?;
    port["nodePort"] = o.node_port.into();

    let sts = find(manifests, "StatefulSet", STATEFULSET)?;
    let container = broker_container_mut(&mut sts.data)
        .ok_or_else(|| ManifestError::Missing(format!("container {CONTAINER}")))?;
    let memory = format!("{}Mi", o.memory_limit_mb);
    // The request may not exceed the limit.
    let cpu_request = cpu_quantity(o.cpu_limit.min(0.5));
    container["resources"] = serde_json::json!({
        "requests": {"cpu": cpu_request, "memory": memory},
        "limits": {"cpu": cpu_quantity(o.cpu_limit), "memory": memory},
    });
    Ok(())
}

fn find<'a>(
    manifests: &'a mut [Manifest],
    kind: &str,
    name: &str,
) -> Result<&'a mut DynamicObject, ManifestError> {
    manifests
        .iter_mut()
        .find(|m| m.kind.resource.kind == kind && m.name() == name)
        .map(|m| &mut m.object)
        .ok_or_else(|| ManifestError::Missing(format!("{kind} {name}")))
}

/// The broker container in a StatefulSet's JSON.
pub fn broker_container_mut(sts_data: &mut Value) -> Option<&mut Value> {
    sts_data["spec"]["template"]["spec"]["containers"]
        .as_array_mut()?
        .iter_mut()
        .find(|c| c["name"] == CONTAINER)
}

/// Literal `name -> value` env of the broker container in a StatefulSet's
/// JSON (entries with `valueFrom` are left out).
pub fn broker_env(sts_data: &Value) -> BTreeMap<String, String> {
    let containers = sts_data["spec"]["template"]["spec"]["containers"].as_array();
    containers
        .and_then(|c| c.iter().find(|c| c["name"] == CONTAINER))
        .and_then(|c| c["env"].as_array())
        .map(|env| {
            env.iter()
                .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::KAFKA_IMAGE;
    use std::collections::{BTreeSet, HashMap};

    fn overrides() -> Overrides {
        let env: HashMap<&str, &str> = [
            ("CLUSTER_NAME", "c1"),
            ("KAFKA_NODE_PORT", "31000"),
            ("KAFKA_CPU_LIMIT", "1.5"),
            ("KAFKA_MEMORY_LIMIT_MB", "1024"),
        ]
        .into();
        Overrides::from_config(&Config::from_env(&env).unwrap())
    }

    fn statefulset(manifests: &[Manifest]) -> &Value {
        &manifests
            .iter()
            .find(|m| m.kind.resource.kind == "StatefulSet")
            .unwrap()
            .object
            .data
    }

    #[test]
    fn every_manifest_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(embedded, on_disk);
        for (name, text) in FILES {
            let disk = std::fs::read_to_string(dir.join(name)).unwrap();
            assert_eq!(
                &disk, text,
                "{name} differs from the embedded copy; rebuild"
            );
        }
    }

    #[test]
    fn every_document_parses_and_has_a_known_kind() {
        let manifests = parse(FILES).unwrap();
        let used: BTreeSet<_> = manifests
            .iter()
            .map(|m| m.kind.resource.kind.clone())
            .collect();
        let expected: BTreeSet<_> = kinds().into_iter().map(|k| k.resource.kind).collect();
        // The table covers every document, and every table entry is used.
        assert_eq!(used, expected);
        for m in &manifests {
            if m.kind.namespaced {
                assert_eq!(m.namespace(), Some(NAMESPACE), "{}", m.describe());
            }
        }
    }

    #[test]
    fn apply_order_is_namespace_rbac_configmaps_services_statefulset() {
        let manifests = parse(FILES).unwrap();
        let steps: Vec<Step> = manifests.iter().map(|m| m.kind.step).collect();
        let mut sorted = steps.clone();
        sorted.sort();
        assert_eq!(steps, sorted);
        assert_eq!(manifests.first().unwrap().kind.resource.kind, "Namespace");
        assert_eq!(manifests.last().unwrap().kind.resource.kind, "StatefulSet");
        let kind_table = kinds();
        let scope = |k: &str| {
            kind_table
                .iter()
                .find(|x| x.resource.kind == k)
                .unwrap()
                .namespaced
        };
        assert!(!scope("Namespace"));
        assert!(scope("StatefulSet") && scope("Role") && scope("Secret"));
        assert_eq!(
            kind_table
                .iter()
                .find(|k| k.resource.kind == "RoleBinding")
                .unwrap()
                .resource
                .plural,
            "rolebindings"
        );
    }

    #[test]
    fn kafka_uses_the_image_entrypoint_and_the_pinned_image() {
        let manifests = parse(FILES).unwrap();
        let mut sts = statefulset(&manifests).clone();
        let spec = &sts["spec"]["template"]["spec"];
        assert_eq!(spec["enableServiceLinks"], false);
        let container = broker_container_mut(&mut sts).unwrap();
        assert!(container.get("command").is_none(), "no command: override");
        assert!(container.get("args").is_none(), "no args: override");
        assert_eq!(container["image"], KAFKA_IMAGE);
        assert!(container.get("readinessProbe").is_some());
        assert!(container["resources"]["limits"]["memory"].is_string());
        let claims = &sts["spec"]["volumeClaimTemplates"];
        assert_eq!(claims[0]["spec"]["storageClassName"], "local-path");
    }

    #[test]
    fn no_image_anywhere_is_latest_or_untagged() {
        for (name, text) in FILES {
            for line in text.lines() {
                let Some(image) = line.trim().strip_prefix("image:") else {
                    continue;
                };
                let image = image.trim();
                assert!(!image.ends_with(":latest"), "{name}: {image}");
                assert!(
                    image.rsplit('/').next().unwrap().contains(':'),
                    "{name}: {image}"
                );
            }
        }
    }

    #[test]
    fn broker_env_is_exactly_structure_plus_tunables() {
        let manifests = parse(FILES).unwrap();
        let env = broker_env(statefulset(&manifests));
        let kafka: BTreeSet<&str> = env
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with("KAFKA_"))
            .collect();
        let known: BTreeSet<&str> = TUNABLE_ENV.iter().chain(STRUCTURAL_ENV).copied().collect();
        assert_eq!(kafka, known);
        assert_eq!(env["KAFKA_NUM_IO_THREADS"], "1");
    }

    #[test]
    fn every_advertised_listener_has_a_listener_and_a_protocol() {
        let manifests = parse(FILES).unwrap();
        let env = broker_env(statefulset(&manifests));
        let names = |v: &str| -> BTreeSet<String> {
            v.split(',')
                .map(|l| l.split("://").next().unwrap().to_string())
                .collect()
        };
        let listeners = names(&env["KAFKA_LISTENERS"]);
        let advertised = names(&env["KAFKA_ADVERTISED_LISTENERS"]);
        let protocols: BTreeSet<String> = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
            .split(',')
            .map(|p| p.split(':').next().unwrap().to_string())
            .collect();
        assert!(advertised.is_subset(&listeners));
        assert_eq!(listeners, protocols);
        // The port-forward route advertises exactly what its clients dial.
        assert!(
            env["KAFKA_ADVERTISED_LISTENERS"].contains("PORTFORWARD://$(PORTFORWARD_HOST):9092")
        );
        assert!(
            env["KAFKA_ADVERTISED_LISTENERS"]
                .contains("NODEPORT://$(NODEPORT_HOST):$(NODEPORT_PORT)")
        );
    }

    #[test]
    fn overrides_set_routes_nodeport_and_resources() {
        let manifests = render(&overrides()).unwrap();
        let routes = manifests
            .iter()
            .find(|m| m.name() == ROUTES_CONFIGMAP)
            .unwrap();
        assert_eq!(
            routes.object.data["data"]["NODEPORT_HOST"],
            "k3d-c1-server-0"
        );
        assert_eq!(routes.object.data["data"]["NODEPORT_PORT"], "31000");
        assert_eq!(
            routes.object.data["data"]["PORTFORWARD_HOST"],
            "k8s-sandbox"
        );
        let svc = manifests
            .iter()
            .find(|m| m.name() == NODEPORT_SERVICE)
            .unwrap();
        assert_eq!(svc.object.data["spec"]["ports"][0]["nodePort"], 31000);
        let mut sts = statefulset(&manifests).clone();
        let res = broker_container_mut(&mut sts).unwrap()["resources"].clone();
        assert_eq!(res["limits"]["cpu"], "1500m");
        assert_eq!(res["limits"]["memory"], "1024Mi");
        assert_eq!(res["requests"]["memory"], "1024Mi");
        assert_eq!(res["requests"]["cpu"], "500m");
    }

    #[test]
    fn defaults_in_the_files_match_the_default_settings() {
        // `kubectl apply -f manifests/` by hand gives the same cluster as
        // the sandbox with default settings.
        let env: HashMap<&str, &str> = HashMap::new();
        let defaults = Overrides::from_config(&Config::from_env(&env).unwrap());
        let plain = parse(FILES).unwrap();
        let rendered = render(&defaults).unwrap();
        for (a, b) in plain.iter().zip(&rendered) {
            assert_eq!(a.object.data, b.object.data, "{}", a.describe());
        }
    }

    #[test]
    fn unknown_kinds_and_unnamed_objects_are_refused() {
        let bad = [(
            "x.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: kafka\n",
        )];
        assert!(matches!(
            parse(&bad),
            Err(ManifestError::UnknownKind { .. })
        ));
        let unnamed = [(
            "y.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: kafka\n",
        )];
        assert!(matches!(
            parse(&unnamed),
            Err(ManifestError::MissingName { .. })
        ));
        let no_ns = [(
            "z.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
        )];
        assert!(matches!(
            parse(&no_ns),
            Err(ManifestError::MissingName { .. })
        ));
    }
}
