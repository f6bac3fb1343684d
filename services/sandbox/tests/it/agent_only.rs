//! `sandbox agent` (the agent loop alone, as the Compose end-to-end test
//! runs it) with a stand-in vibectl: readiness from a TCP probe, honest
//! memory updates, a failing vibectl survived, Kubernetes failures logged
//! once, settings changes noticed, shutdown by file and by SIGTERM.

use std::path::Path;
use std::time::Duration;

use demo_common::status::{
    AGENT_AUTO_END, AGENT_MEMORY_UPDATE, AGENT_NOTE, AGENT_SETTINGS_CHANGED, BROKER_SETTINGS_FILE,
    BrokerSettings, LATENCY_FILE, SHUTDOWN_FILE, read_json,
};
use sandbox::manifests::{self, Overrides};
use testkit::exe::{StandIn, path_with};
use testkit::kube_api::FakeKube;

use crate::phases::stand_in_vibectl;
use testkit::free_port;

use crate::{Sandbox, agent_log, client_for, healthcheck, wait_until};

const STS_PATH: &str = "/apis/apps/v1/namespaces/kafka/statefulsets/kafka";

/// vibectl whose first `auto` fails and later ones succeed.
fn flaky_vibectl(dir: &Path) -> StandIn {
    stand_in_vibectl(
        dir,
        r#"n=$(cat "$STANDIN_DIR/autos" 2>/dev/null || echo 0); echo $((n+1)) > "$STANDIN_DIR/autos"
    if [ "$n" = 0 ]; then echo "Error: LLM request failed: 529 overloaded" >&2; exit 3; fi
    echo "auto: nothing to change""#,
    )
}

fn base_env(status: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("STATUS_DIR", status.display().to_string()),
        ("AGENT_INTERVAL_S", "1".to_string()),
        ("AGENT_AUTO_TIMEOUT_S", "20".to_string()),
    ]
}

fn memory_updates(status: &Path) -> Vec<String> {
    agent_log(status)
        .into_iter()
        .filter(|l| l.kind == AGENT_MEMORY_UPDATE)
        .map(|l| l.text)
        .collect()
}

#[test]
fn the_loop_runs_without_kubernetes_and_survives_a_failing_vibectl() {
    let tools = tempfile::tempdir().unwrap();
    let vibectl = flaky_vibectl(tools.path());
    let home = tempfile::tempdir().unwrap();
    let status = tempfile::tempdir().unwrap();
    let broker_port = free_port();
    let mut env = base_env(status.path());
    env.push(("KAFKA_BROKER", format!("127.0.0.1:{broker_port}")));
    let mut run = Sandbox::start(&["agent"], home.path(), &path_with(tools.path()), &env);

    // No latency yet: the update says so instead of inventing a number.
    wait_until("a first memory update", Duration::from_secs(30), || {
        !memory_updates(status.path()).is_empty() || !run.running()
    });
    let first = &memory_updates(status.path())[0];
    assert!(
        first.starts_with("Latest consumer p99 latency: unknown; no measurement yet"),
        "{first}"
    );
    // Nothing listens on KAFKA_BROKER yet, so the sandbox is not ready.
    assert!(!healthcheck(status.path()));
    let broker = std::net::TcpListener::bind(("127.0.0.1", broker_port)).unwrap();
    wait_until(
        "kafka_ready once the broker accepts",
        Duration::from_secs(30),
        || healthcheck(status.path()),
    );
    drop(broker);

    std::fs::write(status.path().join(LATENCY_FILE), "12.5\n").unwrap();
    wait_until(
        "an update carrying the latency",
        Duration::from_secs(30),
        || {
            memory_updates(status.path())
                .iter()
                .any(|t| t.starts_with("Latest consumer p99 latency: 12.5 ms"))
        },
    );
    // vibectl gets exactly that text as its argument (agent.log says so
    // just before running it).
    wait_until(
        "vibectl memory update with the latency",
        Duration::from_secs(30),
        || {
            vibectl.calls().iter().any(|c| {
                c.len() == 3
                    && c[..2] == ["memory", "update"]
                    && c[2].starts_with(
                        "Latest consumer p99 latency: 12.5 ms (target 5 ms, over target)",
                    )
            })
        },
    );

    // The first auto failed; the loop went on and a later one finished.
    wait_until(
        "a successful auto after the failed one",
        Duration::from_secs(30),
        || {
            agent_log(status.path())
                .iter()
                .any(|l| l.kind == AGENT_AUTO_END && l.text.starts_with("finished"))
        },
    );
    let log = agent_log(status.path());
    let ends: Vec<&str> = log
        .iter()
        .filter(|l| l.kind == AGENT_AUTO_END)
        .map(|l| l.text.as_str())
        .collect();
    assert!(ends[0].starts_with("failed with exit code 3"), "{ends:?}");
    assert!(
        log.iter().any(|l| l.text.contains("529 overloaded")),
        "vibectl's output is in agent.log"
    );
    // Kubernetes is absent: each failing call is logged once, not per round.
    let notes: Vec<&str> = log
        .iter()
        .filter(|l| l.kind == AGENT_NOTE)
        .map(|l| l.text.as_str())
        .collect();
    let sts_notes = notes
        .iter()
        .filter(|t| t.starts_with("reading statefulset kafka/kafka failed"))
        .count();
    let mirror_notes = notes
        .iter()
        .filter(|t| {
            t.starts_with("mirroring metrics into configmap kafka/kafka-latency-metrics failed")
        })
        .count();
    assert_eq!((sts_notes, mirror_notes), (1, 1), "{notes:#?}");
    assert!(
        memory_updates(status.path()).len() >= 2,
        "more than one round"
    );

    std::fs::write(status.path().join(SHUTDOWN_FILE), "").unwrap();
    assert!(
        run.wait(Duration::from_secs(20)).success(),
        "{}",
        run.output()
    );
    let last = agent_log(status.path()).pop().unwrap();
    assert_eq!(last.text, "agent loop stopped: shutting down");
    assert!(!healthcheck(status.path()));
}

#[test]
fn sigterm_stops_the_loop_cleanly_even_during_a_vibectl_run() {
    let tools = tempfile::tempdir().unwrap();
    // An auto run that would take far longer than the test.
    stand_in_vibectl(tools.path(), "echo thinking; sleep 600");
    let home = tempfile::tempdir().unwrap();
    let status = tempfile::tempdir().unwrap();
    let mut run = Sandbox::start(
        &["agent"],
        home.path(),
        &path_with(tools.path()),
        &base_env(status.path()),
    );
    wait_until(
        "vibectl auto to be running",
        Duration::from_secs(30),
        || {
            agent_log(status.path())
                .iter()
                .any(|l| l.text == "thinking")
        },
    );
    // Without KAFKA_BROKER the agent-only sandbox is ready at once.
    assert!(healthcheck(status.path()));
    let pid = run.pid();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        run.wait(Duration::from_secs(20)).success(),
        "{}",
        run.output()
    );
    let log = agent_log(status.path());
    assert!(
        log.iter()
            .any(|l| l.kind == AGENT_AUTO_END && l.text.contains("shutting down")),
        "{log:#?}"
    );
}

#[test]
fn settings_changes_are_noticed_and_metrics_mirrored() {
    let fake = FakeKube::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env_defaults: std::collections::HashMap<&str, &str> = [("HOME", "/nonexistent")].into();
    let overrides = Overrides::from_config(&sandbox::Config::from_env(&env_defaults).unwrap());
    rt.block_on(async {
        let client = client_for(&fake);
        sandbox::deploy::apply_all(&client, &manifests::render(&overrides).unwrap())
            .await
            .unwrap();
    });
    let tools = tempfile::tempdir().unwrap();
    stand_in_vibectl(tools.path(), "echo ok");
    let home = tempfile::tempdir().unwrap();
    let kube_dir = home.path().join(".kube");
    std::fs::create_dir_all(&kube_dir).unwrap();
    std::fs::write(kube_dir.join("config"), fake.kubeconfig()).unwrap();
    let status = tempfile::tempdir().unwrap();
    std::fs::write(status.path().join(LATENCY_FILE), "3.5\n").unwrap();
    let mut run = Sandbox::start(
        &["agent"],
        home.path(),
        &path_with(tools.path()),
        &base_env(status.path()),
    );

    wait_until("broker_settings.json", Duration::from_secs(30), || {
        read_json::<BrokerSettings>(status.path(), BROKER_SETTINGS_FILE).is_some() || !run.running()
    });
    let settings: BrokerSettings = read_json(status.path(), BROKER_SETTINGS_FILE).unwrap();
    assert_eq!(settings.env["KAFKA_NUM_IO_THREADS"], "1");
    assert_eq!(settings.resources["limits.memory"], "2048Mi");
    assert!(!settings.env.contains_key("KAFKA_LISTENERS"));

    wait_until("the metrics config map", Duration::from_secs(60), || {
        // Keep the latency fresh, as the overseer does: on a loaded machine
        // the loop may first look later than the file's maximum age.
        std::fs::write(status.path().join(LATENCY_FILE), "3.5\n").unwrap();
        fake.object("/api/v1/namespaces/kafka/configmaps/kafka-latency-metrics")
            .is_some_and(|cm| cm["data"]["consumer_p99_latency_ms"] == "3.5")
    });

    // The agent (here: the test) changes the broker's env.
    let mut sts = fake.object(STS_PATH).unwrap();
    for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
    {
        if e["name"] == "KAFKA_NUM_IO_THREADS" {
            e["value"] = "4".into();
        }
    }
    fake.put_object(STS_PATH, sts).unwrap();
    wait_until("a settings-changed line", Duration::from_secs(30), || {
        agent_log(status.path())
            .iter()
            .any(|l| l.kind == AGENT_SETTINGS_CHANGED && l.text == "KAFKA_NUM_IO_THREADS: 1 -> 4")
    });
    wait_until(
        "broker_settings.json to follow",
        Duration::from_secs(30),
        || {
            read_json::<BrokerSettings>(status.path(), BROKER_SETTINGS_FILE)
                .is_some_and(|s| s.env["KAFKA_NUM_IO_THREADS"] == "4")
        },
    );
    std::fs::write(status.path().join(SHUTDOWN_FILE), "").unwrap();
    let stopping = std::time::Instant::now();
    assert!(
        run.wait(Duration::from_secs(20)).success(),
        "{}",
        run.output()
    );
    eprintln!("stopped after {:.1?}", stopping.elapsed());
    // No Kubernetes failure was logged.
    assert!(
        !agent_log(status.path())
            .iter()
            .any(|l| l.text.contains("failed")),
        "{:#?}",
        agent_log(status.path())
    );
}
