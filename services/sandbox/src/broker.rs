//! The broker's current tunable settings as read from its StatefulSet, for
//! the dashboard (`broker_settings.json`) and for noticing what the agent
//! changed between two looks.

use std::collections::BTreeMap;

use demo_common::status::{BrokerSettings, now_ms};
use k8s_openapi::api::apps::v1::StatefulSet;

use crate::manifests::{CONTAINER, STRUCTURAL_ENV};

/// The settings the agent can influence: every literal `KAFKA_*` env var of
/// the broker container except the structural ones (so env vars the agent
/// adds show up too), plus the container's resources and replica counts.
pub fn settings_of(sts: &StatefulSet) -> BrokerSettings {
    let container = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER));
    let env = container
        .and_then(|c| c.env.as_ref())
        .map(|env| {
            env.iter()
                .filter(|e| e.name.starts_with("KAFKA_"))
                .filter(|e| !STRUCTURAL_ENV.contains(&e.name.as_str()))
                .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut resources = BTreeMap::new();
    if let Some(res) = container.and_then(|c| c.resources.as_ref()) {
        for (section, values) in [("limits", &res.limits), ("requests", &res.requests)] {
            for (name, quantity) in values.iter().flatten() {
                resources.insert(format!("{section}.{name}"), quantity.0.clone());
            }
        }
    }
    let status = sts.status.as_ref();
    BrokerSettings {
        observed_at_ms: now_ms(),
        env,
        resources,
        ready_replicas: status
            .and_then(|s| s.ready_replicas)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        replicas: sts
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
    }
}

/// What changed from `before` to `after` in env and resources, as
/// `NAME: old -> new` parts; empty when nothing did. Replica counts and the
/// timestamp are not settings.
pub fn describe_changes(before: &BrokerSettings, after: &BrokerSettings) -> Vec<String> {
    let mut changes = Vec::new();
    for (old, new) in [
        (&before.env, &after.env),
        (&before.resources, &after.resources),
    ] {
        let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for name in names {
            match (old.get(name), new.get(name)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => changes.push(format!("{name}: {a} -> {b}")),
                (None, Some(b)) => changes.push(format!("{name}: (unset) -> {b}")),
                (Some(a), None) => changes.push(format!("{name}: {a} -> (unset)")),
                (None, None) => {}
            }
        }
    }
    changes
}

/// A short `NAME=value` summary of the thread and heap settings, for the
/// agent's memory (which is short).
pub fn summary(settings: &BrokerSettings) -> String {
    let mut parts: Vec<String> = settings
        .env
        .iter()
        .map(|(k, v)| format!("{}={v}", k.trim_start_matches("KAFKA_")))
        .collect();
    parts.push(format!(
        "pod ready {}/{}",
        settings.ready_replicas, settings.replicas
    ));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(io_threads: &str, extra: Option<(&str, &str)>, memory: &str) -> StatefulSet {
        let mut env = vec![
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
            json!({"name": "KAFKA_LISTENERS", "value": "INTERNAL://:19092"}),
            json!({"name": "KAFKA_NUM_IO_THREADS", "value": io_threads}),
            json!({"name": "KAFKA_HEAP_OPTS", "value": "-Xmx256m"}),
        ];
        if let Some((k, v)) = extra {
            env.push(json!({"name": k, "value": v}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "kafka"},
            "spec": {
                "replicas": 1, "serviceName": "kafka-headless", "selector": {},
                "template": {"spec": {"containers": [{
                    "name": "kafka", "env": env,
                    "resources": {"limits": {"cpu": "2", "memory": memory}}
                }]}}
            },
            "status": {"replicas": 1, "readyReplicas": 1}
        }))
        .unwrap()
    }

    #[test]
    fn settings_keep_tunables_and_resources_only() {
        let s = settings_of(&sts("1", None, "2Gi"));
        assert_eq!(
            s.env.keys().collect::<Vec<_>>(),
            ["KAFKA_HEAP_OPTS", "KAFKA_NUM_IO_THREADS"]
        );
        assert_eq!(s.resources["limits.memory"], "2Gi");
        assert_eq!((s.ready_replicas, s.replicas), (1, 1));
        assert_eq!(
            summary(&s),
            "HEAP_OPTS=-Xmx256m, NUM_IO_THREADS=1, pod ready 1/1"
        );
    }

    #[test]
    fn changes_name_old_and_new_values() {
        let before = settings_of(&sts("1", None, "2Gi"));
        let after = settings_of(&sts("4", Some(("KAFKA_NUM_REPLICA_FETCHERS", "2")), "3Gi"));
        assert_eq!(
            describe_changes(&before, &after),
            [
                "KAFKA_NUM_IO_THREADS: 1 -> 4",
                "KAFKA_NUM_REPLICA_FETCHERS: (unset) -> 2",
                "limits.memory: 2Gi -> 3Gi",
            ]
        );
        assert!(describe_changes(&after, &after).is_empty());
    }
}
