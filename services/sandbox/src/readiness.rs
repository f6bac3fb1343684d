//! Decisions about the broker's state, as pure functions of the objects the
//! API returns, so they are tested on fixtures without a server.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;

/// The pod's Ready condition is True and it is not being deleted.
pub fn pod_ready(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| {
            conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// The StatefulSet's controller has seen the latest spec and every replica
/// runs that spec and is Ready (what `kubectl rollout status` waits for).
pub fn rollout_done(sts: &StatefulSet) -> bool {
    let Some(status) = sts.status.as_ref() else {
        return false;
    };
    let generation = sts.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || observed < generation {
        return false;
    }
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let same_revision = match (&status.current_revision, &status.update_revision) {
        (Some(current), Some(update)) => current == update,
        // Without revisions reported there is nothing to compare.
        _ => true,
    };
    ready >= want && updated >= want && same_revision
}

/// The name of a Ready pod among `pods` (the first by name, so the choice
/// is stable).
pub fn pick_ready_pod(pods: &[Pod]) -> Option<String> {
    let mut ready: Vec<&str> = pods
        .iter()
        .filter(|p| pod_ready(p))
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    ready.sort_unstable();
    ready.first().map(|n| n.to_string())
}

/// One line on why a pod is not Ready, for timeout messages: phase, the
/// Ready condition's message, and any container's waiting reason (e.g.
/// ImagePullBackOff).
pub fn describe_pod(pod: &Pod) -> String {
    let Some(status) = pod.status.as_ref() else {
        return "no status yet".into();
    };
    let mut parts = vec![format!(
        "phase {}",
        status.phase.as_deref().unwrap_or("unknown")
    )];
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            let why = c.message.as_deref().or(c.reason.as_deref()).unwrap_or("");
            parts.push(format!("{} False {why}", c.type_).trim_end().to_string());
        }
    }
    for cs in status.container_statuses.iter().flatten() {
        let state = cs.state.as_ref();
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            parts.push(format!(
                "{} waiting: {} {}",
                cs.name,
                w.reason.as_deref().unwrap_or(""),
                w.message.as_deref().unwrap_or("")
            ));
        }
        if cs.restart_count > 0 {
            parts.push(format!("{} restarted {} times", cs.name, cs.restart_count));
        }
    }
    parts.join("; ")
}

/// One line on where a rollout stands.
pub fn describe_rollout(sts: &StatefulSet) -> String {
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    match sts.status.as_ref() {
        None => "no status yet".into(),
        Some(s) => format!(
            "{}/{want} ready, {}/{want} updated, generation {} observed {}",
            s.ready_replicas.unwrap_or(0),
            s.updated_replicas.unwrap_or(0),
            sts.metadata.generation.unwrap_or(0),
            s.observed_generation.unwrap_or(0),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: &str, deleting: bool) -> Pod {
        let mut v = json!({
            "metadata": {"name": name},
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": ready, "reason": "ContainersNotReady",
                     "message": "containers with unready status: [kafka]"}
                ],
                "containerStatuses": [{
                    "name": "kafka", "ready": ready == "True", "restartCount": 2,
                    "image": "apache/kafka:3.9.1", "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
                }]
            }
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    fn sts(
        generation: i64,
        observed: i64,
        ready: i32,
        updated: i32,
        revs: (&str, &str),
    ) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "kafka", "generation": generation},
            "spec": {"replicas": 1, "serviceName": "kafka-headless",
                     "selector": {}, "template": {}},
            "status": {"replicas": 1, "observedGeneration": observed,
                       "readyReplicas": ready, "updatedReplicas": updated,
                       "currentRevision": revs.0, "updateRevision": revs.1}
        }))
        .unwrap()
    }

    #[test]
    fn pod_ready_needs_the_ready_condition_and_no_deletion() {
        assert!(pod_ready(&pod("kafka-0", "True", false)));
        assert!(!pod_ready(&pod("kafka-0", "False", false)));
        assert!(!pod_ready(&pod("kafka-0", "True", true)));
        assert!(!pod_ready(&Pod::default()));
    }

    #[test]
    fn rollout_done_waits_for_generation_readiness_and_revision() {
        assert!(rollout_done(&sts(2, 2, 1, 1, ("r2", "r2"))));
        assert!(
            !rollout_done(&sts(3, 2, 1, 1, ("r2", "r2"))),
            "spec not observed"
        );
        assert!(!rollout_done(&sts(2, 2, 0, 1, ("r2", "r2"))), "not ready");
        assert!(
            !rollout_done(&sts(2, 2, 1, 0, ("r1", "r2"))),
            "old revision"
        );
        assert!(!rollout_done(&StatefulSet::default()));
    }

    #[test]
    fn the_ready_pod_is_picked_and_terminating_ones_skipped() {
        let pods = [
            pod("kafka-1", "True", true),
            pod("kafka-2", "False", false),
            pod("kafka-0", "True", false),
        ];
        assert_eq!(pick_ready_pod(&pods).as_deref(), Some("kafka-0"));
        assert_eq!(pick_ready_pod(&pods[..2]), None);
    }

    #[test]
    fn descriptions_say_why() {
        let text = describe_pod(&pod("kafka-0", "False", false));
        assert!(text.contains("CrashLoopBackOff"), "{text}");
        assert!(text.contains("unready status"), "{text}");
        assert!(text.contains("restarted 2 times"), "{text}");
        let text = describe_rollout(&sts(3, 2, 0, 1, ("a", "b")));
        assert_eq!(text, "0/1 ready, 1/1 updated, generation 3 observed 2");
    }
}
