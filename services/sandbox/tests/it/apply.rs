//! Phase 2 against the fake API server: server-side apply of every
//! manifest, the cluster id created once, the wait for Ready, and the
//! agent's kubeconfig.

use std::time::Duration;

use sandbox::deploy;
use sandbox::manifests::{self, FIELD_MANAGER, Overrides};
use testkit::kube_api::FakeKube;

use crate::{K3D_KUBECONFIG, client_for};

fn overrides() -> Overrides {
    let env: std::collections::HashMap<&str, &str> = [("HOME", "/nonexistent")].into();
    Overrides::from_config(&sandbox::Config::from_env(&env).unwrap())
}

#[tokio::test]
async fn every_manifest_is_server_side_applied_in_order_with_one_field_manager() {
    let fake = FakeKube::start().unwrap();
    let client = client_for(&fake);
    let rendered = manifests::render(&overrides()).unwrap();
    deploy::apply_all(&client, &rendered).await.unwrap();

    let requests = fake.requests();
    let patches: Vec<_> = requests.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), rendered.len(), "one apply per document");
    for (m, req) in rendered.iter().zip(&patches) {
        let what = m.describe();
        let expected_path = match (m.kind.namespaced, m.namespace()) {
            (true, Some(ns)) => format!(
                "/{}/namespaces/{ns}/{}/{}",
                api_prefix(&m.kind.resource.api_version),
                m.kind.resource.plural,
                m.name()
            ),
            _ => format!(
                "/{}/{}/{}",
                api_prefix(&m.kind.resource.api_version),
                m.kind.resource.plural,
                m.name()
            ),
        };
        assert_eq!(req.path, expected_path, "{what}");
        assert_eq!(
            req.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{what}"
        );
        assert_eq!(
            req.query_param("fieldManager").as_deref(),
            Some(FIELD_MANAGER),
            "{what}"
        );
        assert_eq!(req.query_param("force").as_deref(), Some("true"), "{what}");
        // The body is the manifest itself.
        let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(body["metadata"]["name"], m.name(), "{what}");
        assert_eq!(body["kind"], m.kind.resource.kind, "{what}");
    }
    let order: Vec<&str> = patches
        .iter()
        .map(|r| r.path.rsplit('/').nth(1).unwrap())
        .collect();
    assert_eq!(order.first(), Some(&"namespaces"));
    assert_eq!(order.last(), Some(&"statefulsets"));

    // The cluster id is created (POST) before any config map is applied.
    let post = requests
        .iter()
        .position(|r| r.method == "POST" && r.path.ends_with("/configmaps"))
        .expect("cluster id created");
    let first_cm = requests
        .iter()
        .position(|r| r.method == "PATCH" && r.path.contains("/configmaps/"))
        .unwrap();
    assert!(post < first_cm);
    let sts = fake
        .object("/apis/apps/v1/namespaces/kafka/statefulsets/kafka")
        .unwrap();
    assert_eq!(
        sts["metadata"]["managedFields"][0]["manager"],
        FIELD_MANAGER
    );
}

fn api_prefix(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    }
}

#[tokio::test]
async fn the_cluster_id_is_created_once_and_kept() {
    let fake = FakeKube::start().unwrap();
    let client = client_for(&fake);
    let rendered = manifests::render(&overrides()).unwrap();
    deploy::apply_all(&client, &rendered).await.unwrap();
    let path = "/api/v1/namespaces/kafka/configmaps/kafka-cluster-id";
    let first = fake.object(path).unwrap()["data"]["CLUSTER_ID"].clone();
    assert_eq!(first.as_str().unwrap().len(), 22);
    deploy::apply_all(&client, &rendered).await.unwrap();
    assert_eq!(fake.object(path).unwrap()["data"]["CLUSTER_ID"], first);
    assert_eq!(deploy::ensure_cluster_id(&client).await.unwrap(), first);
}

#[tokio::test]
async fn waiting_for_ready_follows_the_pod_and_the_rollout() {
    let fake = FakeKube::start().unwrap();
    fake.set_pod_ready_delay(Duration::from_millis(700));
    let client = client_for(&fake);
    deploy::apply_all(&client, &manifests::render(&overrides()).unwrap())
        .await
        .unwrap();
    let pod = fake
        .object("/api/v1/namespaces/kafka/pods/kafka-0")
        .unwrap();
    assert_eq!(
        pod["status"]["conditions"][2]["status"], "False",
        "not Ready yet"
    );
    let started = std::time::Instant::now();
    deploy::wait_broker_ready(&client, Duration::from_secs(20))
        .await
        .unwrap();
    // It waited for the flip rather than passing at once.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let sts = fake
        .object("/apis/apps/v1/namespaces/kafka/statefulsets/kafka")
        .unwrap();
    assert_eq!(sts["status"]["readyReplicas"], 1);
    // The wait used watches, not a polling loop.
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.query_param("watch").as_deref() == Some("true")),
        "no watch request"
    );
}

#[tokio::test]
async fn a_broker_that_never_gets_ready_times_out_with_what_was_seen() {
    let fake = FakeKube::start().unwrap();
    fake.set_pod_ready_delay(Duration::from_secs(3600));
    let client = client_for(&fake);
    deploy::apply_all(&client, &manifests::render(&overrides()).unwrap())
        .await
        .unwrap();
    let err = deploy::wait_broker_ready(&client, Duration::from_millis(800))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("kafka/kafka-0"), "{text}");
    assert!(text.contains("Ready False"), "{text}");
    assert!(text.contains("800ms"), "{text}");
}

#[tokio::test]
async fn the_agent_kubeconfig_uses_the_service_account_token_and_the_admin_ca() {
    let fake = FakeKube::start().unwrap();
    let client = client_for(&fake);
    deploy::apply_all(&client, &manifests::render(&overrides()).unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.kubeconfig");
    let admin =
        sandbox::kubeconfig::rewrite_server(K3D_KUBECONFIG, "https://k3d-kafka-demo-serverlb:6443")
            .unwrap();
    deploy::write_agent_kubeconfig(&client, &admin, &path, Duration::from_secs(10))
        .await
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        doc["users"][0]["user"]["token"],
        "fake-service-account-token"
    );
    let (server, ca) = sandbox::kubeconfig::first_cluster(&text).unwrap();
    assert_eq!(server, "https://k3d-kafka-demo-serverlb:6443");
    assert_eq!(
        ca,
        sandbox::kubeconfig::first_cluster(K3D_KUBECONFIG)
            .unwrap()
            .1
    );
    let ctx = parsed.contexts[0].context.as_ref().unwrap();
    assert_eq!(ctx.namespace.as_deref(), Some("kafka"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
