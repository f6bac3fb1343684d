//! The whole `sandbox run` as a separate process: stand-in k3d, docker and
//! vibectl on PATH (recording their arguments), the fake API server behind
//! the rewritten kubeconfig, a local TCP server behind the pod's port.
//! Also k3d's create/reuse/start decisions in-process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use demo_common::status::{AGENT_AUTO_END, LATENCY_FILE, Phase, SHUTDOWN_FILE};
use sandbox::config::{ClusterConfig, Programs};
use testkit::exe::{StandIn, path_with};
use testkit::kube_api::FakeKube;
use tokio_util::sync::CancellationToken;

use testkit::free_port;

use crate::{K3D_KUBECONFIG, Sandbox, agent_log, files_under, healthcheck, wait_until};

/// A secret that must never show up anywhere.
const API_KEY: &str = "sk-ant-test-never-anywhere-4711";

/// k3d that "creates" a cluster by leaving a file, lists it afterwards, and
/// prints the fixture kubeconfig.
fn stand_in_k3d(dir: &Path) -> StandIn {
    std::fs::write(dir.join("kubeconfig.yaml"), K3D_KUBECONFIG).unwrap();
    StandIn::create(
        dir,
        "k3d",
        r#"case "$1 $2" in
  "cluster list")
    if [ -f "$STANDIN_DIR/created" ]; then
      echo '[{"name":"kafka-demo","serversCount":1,"serversRunning":1,"agentsCount":0}]'
    else
      echo '[]'
    fi ;;
  "cluster create") touch "$STANDIN_DIR/created"; echo "INFO[0012] Cluster '$3' created successfully!" ;;
  "cluster start") echo "started" ;;
  "kubeconfig get") cat "$STANDIN_DIR/kubeconfig.yaml" ;;
  *) echo "unexpected k3d call: $*" >&2; exit 2 ;;
esac"#,
    )
    .unwrap()
}

/// vibectl that answers like the real one, briefly.
pub fn stand_in_vibectl(dir: &Path, auto_body: &str) -> StandIn {
    StandIn::create(
        dir,
        "vibectl",
        &format!(
            r#"case "$1 $2" in
  "memory update") echo "Memory updated" ;;
  "auto --limit") {auto_body} ;;
  "config set") echo "ok" ;;
  "instructions set") cat > "$STANDIN_DIR/instructions.txt"; echo "ok" ;;
  *) echo "unexpected vibectl call: $*" >&2; exit 2 ;;
esac"#
        ),
    )
    .unwrap()
}

/// The broker's port: answers each chunk with `pod:` and the chunk.
fn start_backend() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    let mut reply = b"pod:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    if s.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_full_run_then_a_restart_that_skips_finished_phases() {
    let fake = FakeKube::start().unwrap();
    fake.set_pod_ready_delay(Duration::from_millis(300));
    fake.set_port_forward_backend(9092, start_backend());
    let tools = tempfile::tempdir().unwrap();
    let k3d = stand_in_k3d(tools.path());
    let docker = StandIn::create(tools.path(), "docker", "exit 0").unwrap();
    let vibectl = stand_in_vibectl(tools.path(), r#"echo "auto: nothing to change""#);
    let home = tempfile::tempdir().unwrap();
    let status = tempfile::tempdir().unwrap();
    let kube_dir = home.path().join(".kube");
    std::fs::write(status.path().join(LATENCY_FILE), "12.5\n").unwrap();
    // Left over from an earlier run: must not make the sandbox look ready.
    std::fs::write(status.path().join(Phase::KafkaReady.file_name()), "").unwrap();
    let pf_port = free_port();
    let env = vec![
        ("STATUS_DIR", status.path().display().to_string()),
        ("KUBE_API_SERVER", fake.url().to_string()),
        ("K3D_NETWORK", "test-net".to_string()),
        ("PORT_FORWARD_ADDR", format!("127.0.0.1:{pf_port}")),
        ("AGENT_INTERVAL_S", "1".to_string()),
        ("AGENT_AUTO_TIMEOUT_S", "20".to_string()),
        ("KAFKA_READY_TIMEOUT_S", "30".to_string()),
        ("VIBECTL_ANTHROPIC_API_KEY", API_KEY.to_string()),
    ];
    let path = path_with(tools.path());

    let mut run = Sandbox::start(&["run"], home.path(), &path, &env);
    wait_until("the first agent round", Duration::from_secs(60), || {
        let log = agent_log(status.path());
        log.iter().any(|l| l.kind == AGENT_AUTO_END) || !run.running()
    });
    assert!(run.running(), "sandbox exited:\n{}", run.output());
    assert!(
        run.output().contains("removed stale kafka_ready"),
        "{}",
        run.output()
    );
    for phase in Phase::ALL {
        assert!(
            phase.is_done(status.path()),
            "{phase:?} not done:\n{}",
            run.output()
        );
    }
    assert!(healthcheck(status.path()));

    // Kafka is reachable through the port-forward listener.
    let mut s = TcpStream::connect(("127.0.0.1", pf_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pod:hello");

    // k3d: listed, created with our arguments, kubeconfig fetched.
    let calls = k3d.calls();
    assert_eq!(calls[0], ["cluster", "list", "-o", "json"]);
    assert_eq!(&calls[1][..3], ["cluster", "create", "kafka-demo"]);
    assert!(
        calls[1].windows(2).any(|w| w == ["--network", "test-net"]),
        "{:?}",
        calls[1]
    );
    assert!(calls[1].contains(&"rancher/k3s:v1.33.4-k3s1".to_string()));
    assert_eq!(calls[2], ["kubeconfig", "get", "kafka-demo"]);
    assert_eq!(
        docker.calls(),
        [[
            "update",
            "--memory",
            "4096m",
            "--memory-swap",
            "4096m",
            "k3d-kafka-demo-server-0"
        ]]
    );
    // The admin kubeconfig points at the API server named in the settings.
    let admin = std::fs::read_to_string(kube_dir.join("config")).unwrap();
    assert_eq!(
        sandbox::kubeconfig::first_cluster(&admin).unwrap().0,
        fake.url()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(kube_dir.join("config"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // vibectl: configured, then memory update with the number, then auto.
    let calls = vibectl.calls();
    assert_eq!(
        calls[0],
        ["config", "set", "llm.model", "claude-3.7-sonnet"]
    );
    let agent_kubeconfig = kube_dir.join("agent.kubeconfig").display().to_string();
    assert!(calls.contains(&vec![
        "config".into(),
        "set".into(),
        "core.kubeconfig".into(),
        agent_kubeconfig
    ]));
    assert!(calls.contains(&vec!["instructions".to_string(), "set".to_string()]));
    let instructions = std::fs::read_to_string(tools.path().join("instructions.txt")).unwrap();
    assert!(instructions.contains("under 5 ms"), "{instructions}");
    assert!(
        instructions.contains("2 CPU and 2048 MiB"),
        "{instructions}"
    );
    let update = calls
        .iter()
        .find(|c| c[..2] == ["memory", "update"])
        .unwrap();
    assert!(
        update[2].starts_with("Latest consumer p99 latency: 12.5 ms"),
        "{}",
        update[2]
    );
    let auto = calls.iter().find(|c| c[0] == "auto").unwrap();
    assert_eq!(auto[..3], ["auto", "--limit", "3"]);
    assert!(auto[3].contains("under 5 ms"), "{}", auto[3]);

    let stop = std::time::Instant::now();
    std::fs::write(status.path().join(SHUTDOWN_FILE), "").unwrap();
    assert!(
        run.wait(Duration::from_secs(20)).success(),
        "{}",
        run.output()
    );
    println!(
        "stopped {:?} after the shutdown file appeared",
        stop.elapsed()
    );
    assert!(!healthcheck(status.path()), "kafka_ready removed on exit");
    let first_output = run.output();

    // Second start: the phase files say cluster and Kafka are done.
    let k3d_calls = k3d.calls().len();
    let applies = |fake: &FakeKube| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "PATCH" && !r.path.ends_with("/kafka-latency-metrics"))
            .count()
    };
    let applied = applies(&fake);
    let mut again = Sandbox::start(&["run"], home.path(), &path, &env);
    wait_until(
        "kafka_ready after the restart",
        Duration::from_secs(60),
        || healthcheck(status.path()) || !again.running(),
    );
    assert!(again.running(), "{}", again.output());
    std::fs::write(status.path().join(SHUTDOWN_FILE), "").unwrap();
    assert!(
        again.wait(Duration::from_secs(20)).success(),
        "{}",
        again.output()
    );
    assert_eq!(k3d.calls().len(), k3d_calls, "k3d not called again");
    assert_eq!(applies(&fake), applied, "manifests not applied again");
    assert!(
        again.output().contains("not re-applying"),
        "{}",
        again.output()
    );

    // The API key is in no argument, no log and no file.
    let mut places: Vec<(String, String)> = vec![
        ("first run log".into(), first_output),
        ("second run log".into(), again.output()),
    ];
    for dir in [tools.path(), home.path(), status.path()] {
        for file in files_under(dir) {
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            places.push((file.display().to_string(), text));
        }
    }
    for (place, text) in places {
        assert!(!text.contains(API_KEY), "the API key leaked into {place}");
    }
}

fn cluster() -> ClusterConfig {
    let env: std::collections::HashMap<&str, &str> = [("CLUSTER_NAME", "c1")].into();
    sandbox::Config::from_env(&env).unwrap().cluster
}

fn programs(dir: &Path) -> Programs {
    Programs {
        k3d: dir.join("k3d"),
        docker: dir.join("docker"),
        vibectl: dir.join("vibectl"),
    }
}

#[tokio::test]
async fn a_healthy_cluster_is_reused_and_a_stopped_one_started() {
    let cancel = CancellationToken::new();
    for (servers_running, expected) in [
        (1, sandbox::k3d::ClusterAction::Reused),
        (0, sandbox::k3d::ClusterAction::Started),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let k3d = StandIn::create(
            dir.path(),
            "k3d",
            &format!(
                r#"case "$1 $2" in
  "cluster list") echo '[{{"name":"c1","serversCount":1,"serversRunning":{servers_running}}}]' ;;
  "kubeconfig get") echo "apiVersion: v1" ;;
  "cluster start") exit 0 ;;
  *) exit 2 ;;
esac"#
            ),
        )
        .unwrap();
        StandIn::create(dir.path(), "docker", "exit 0").unwrap();
        let (action, kubeconfig) =
            sandbox::k3d::ensure_cluster(&cluster(), &programs(dir.path()), &cancel)
                .await
                .unwrap();
        assert_eq!(action, expected);
        assert_eq!(kubeconfig.trim(), "apiVersion: v1");
        let calls = k3d.calls();
        assert!(calls.iter().all(|c| c[1] != "create"), "{calls:?}");
        let started = calls.iter().any(|c| c[..3] == ["cluster", "start", "c1"]);
        assert_eq!(started, expected == sandbox::k3d::ClusterAction::Started);
    }
}

#[tokio::test]
async fn a_failing_k3d_create_is_an_error_with_its_output() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    StandIn::create(
        dir.path(),
        "k3d",
        r#"case "$1 $2" in
  "cluster list") echo '[]' ;;
  *) echo "ERRO[0003] Failed Cluster Creation: docker failed to create container" >&2; exit 1 ;;
esac"#,
    )
    .unwrap();
    let err = sandbox::k3d::ensure_cluster(&cluster(), &programs(dir.path()), &cancel)
        .await
        .unwrap_err();
    let text = sandbox::agent::error_chain(&err);
    assert!(text.contains("create the k3d cluster"), "{text}");
    assert!(text.contains("Failed Cluster Creation"), "{text}");
}

#[test]
fn bad_settings_stop_the_sandbox_with_exit_code_2() {
    let home = tempfile::tempdir().unwrap();
    let mut run = Sandbox::start(
        &["run"],
        home.path(),
        &path_with(home.path()),
        &[("KAFKA_NODE_PORT", "80".into())],
    );
    assert_eq!(run.wait(Duration::from_secs(20)).code(), Some(2));
    let out = run.output();
    assert_eq!(
        out.trim(),
        "error: invalid KAFKA_NODE_PORT=\"80\": expected a number from 30000 to 32767"
    );
}
