//! The demo end to end on the real Docker daemon: `cargo xtask build` makes the
//! real images (host-built binaries on the local base image), `cargo xtask demo
//! --detach` starts the real Compose stack with `tests/e2e/compose.override.yml`
//! standing in for Kafka-in-k3d (a tansu container) and for the LLM (a scripted
//! endpoint served here), then the test checks that load flows, latency.txt is
//! written, the agent loop drives the real vibectl with that number, the
//! dashboard answers, the API key leaks nowhere, and `clean` leaves nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{free_port, http_get, unique, wait_for};

use crate::{need_docker, text, xtask};

/// Images of this test carry their own prefix so a developer's real demo
/// images are never replaced.
const IMAGE_PREFIX: &str = "ktd-e2e";
const TANSU_IMAGE: &str = "ktd-e2e-tansu:0.6.0";
const SERVICES: [&str; 4] = ["k8s-sandbox", "producer", "consumer", "overseer"];

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// Removes the stack, and stops the attached demo, whatever happens to the
/// test.
struct Cleanup {
    project: String,
    cluster: String,
    demo: Option<std::process::Child>,
}

impl Cleanup {
    /// `xtask clean` for this stack, with the names the test gave it.
    fn command(&self) -> Command {
        let mut cmd = xtask(&[
            "clean",
            "--project",
            &self.project,
            "--cluster",
            &self.cluster,
        ]);
        cmd.env("DEMO_NETWORK", format!("{}-net", self.project))
            .env("DEMO_STATUS_VOLUME", format!("{}-status", self.project));
        cmd
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(demo) = &mut self.demo {
            let _ = demo.kill();
            let _ = demo.wait();
        }
        let _ = self.command().output();
    }
}

/// A tansu broker image made from the locally installed binary.
fn build_tansu_image(tansu: &Path) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(tansu, dir.path().join("tansu")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM debian:bookworm-slim\nCOPY tansu /usr/local/bin/tansu\nENTRYPOINT [\"/usr/local/bin/tansu\"]\n",
    )
    .unwrap();
    let (ok, out) = docker(&[
        "build",
        "--label",
        "dev.kafka-throughput-demo.component=test-tansu",
        "-t",
        TANSU_IMAGE,
        &dir.path().to_string_lossy(),
    ]);
    assert!(ok, "build the tansu image: {out}");
}

/// vibectl's `llm` pointed at the scripted endpoint on the host, which the
/// sandbox reaches as host.docker.internal.
fn llm_config(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    testkit::llm::write_llm_config(
        dir.path(),
        "scripted",
        &format!("http://host.docker.internal:{port}/v1"),
    )
    .unwrap();
    // The sandbox runs as its own user and llm writes its log database here.
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::set_permissions(
            entry.unwrap().path(),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn container_of(project: &str, service: &str) -> String {
    let (ok, out) = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ]);
    assert!(ok, "{out}");
    out.lines().next().unwrap_or_default().trim().to_string()
}

fn status_file(container: &str, name: &str) -> Option<String> {
    let (ok, out) = docker(&["exec", container, "cat", &format!("/tmp/status/{name}")]);
    ok.then_some(out)
}

/// The number after "Latest consumer p99 latency: " in `text`.
/// Every number after "Latest consumer p99 latency: " in `text`, as written
/// (the first updates say "unknown" until the overseer has measured).
fn reported_latencies(text: &str) -> Vec<String> {
    text.split("Latest consumer p99 latency: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect::<String>()
        })
        .filter(|n| n.parse::<f64>().is_ok())
        .collect()
}

fn started_at(container: &str) -> std::time::SystemTime {
    let (ok, out) = docker(&["inspect", "-f", "{{.State.StartedAt}}", container]);
    assert!(ok, "{out}");
    humantime::parse_rfc3339_weak(out.trim()).unwrap_or_else(|e| panic!("{out}: {e}"))
}

#[test]
fn demo_runs_end_to_end_in_compose() {
    if !need_docker() {
        return;
    }
    let Some(tansu) = testkit::tansu::find_binary() else {
        assert!(
            !testkit::require("tansu", false, "run `cargo xtask test`, which installs it"),
            "unreachable"
        );
        return;
    };
    let id = unique("e2e");
    let project = format!("ktd-{id}");
    let cluster = format!("k{}", id.replace('-', ""));
    let key = format!("sk-ant-e2e-{}", id.replace('-', ""));
    let dashboard_port = free_port();

    build_tansu_image(&tansu);
    let mut build = xtask(&[
        "build",
        "--binaries",
        "host",
        "--host-profile",
        "dev",
        "--without-release-downloads",
        "--image-prefix",
        IMAGE_PREFIX,
    ]);
    // This machine reaches PyPI through a proxy whose CA only the host trusts;
    // users behind such proxies use the same option.
    let host_ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if host_ca.exists() {
        build.args(["--extra-ca", &host_ca.to_string_lossy()]);
    }
    let out = build.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "xtask build failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Step "), "build shows its steps:\n{stdout}");

    let llm = testkit::llm::ScriptedLlm::start_on("0.0.0.0:0".parse().unwrap()).unwrap();
    let llm_dir = llm_config(llm.addr().port());
    let override_file: PathBuf =
        testkit::exe::workspace_root().join("xtask/tests/e2e/compose.override.yml");

    let mut cleanup = Cleanup {
        project: project.clone(),
        cluster: cluster.clone(),
        demo: None,
    };
    let port = dashboard_port.to_string();
    // Attached, as a user runs it; stopped with Ctrl+C (SIGINT) at the end.
    let demo_log = tempfile::NamedTempFile::new().unwrap();
    let demo = xtask(&[
        "demo",
        "--no-build",
        "--project",
        &project,
        "--cluster",
        &cluster,
        "--image-prefix",
        IMAGE_PREFIX,
        "--compose-override",
        &override_file.to_string_lossy(),
        "--dashboard-port",
        &port,
        "--model",
        "scripted",
        "--agent-interval-s",
        "5",
        "--timeout-s",
        "600",
    ])
    .env("VIBECTL_ANTHROPIC_API_KEY", &key)
    .env("DEMO_NETWORK", format!("{project}-net"))
    .env("DEMO_STATUS_VOLUME", format!("{project}-status"))
    .env("E2E_TANSU_IMAGE", TANSU_IMAGE)
    .env("E2E_LLM_DIR", llm_dir.path())
    .stdout(demo_log.reopen().unwrap())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let demo = cleanup.demo.insert(demo);
    let read_log = || std::fs::read_to_string(demo_log.path()).unwrap_or_default();
    let demo_out = wait_for(
        "xtask demo to report readiness",
        Duration::from_secs(900),
        || {
            if let Ok(Some(status)) = demo.try_wait() {
                let mut stderr = String::new();
                demo.stderr
                    .take()
                    .map(|mut e| e.read_to_string(&mut stderr));
                panic!(
                    "xtask demo exited ({status}) before readiness:\n{}\n{stderr}",
                    read_log()
                );
            }
            let log = read_log();
            log.contains("The demo is running.").then_some(log)
        },
    );
    assert!(demo_out.contains("The demo is running."), "{demo_out}");
    assert!(
        demo_out.contains(&format!("http://localhost:{dashboard_port}")),
        "{demo_out}"
    );
    for line in [
        "✓ Kafka reachable",
        "✓ producer healthy",
        "✓ overseer healthy",
    ] {
        assert!(
            demo_out.contains(line),
            "progress line {line:?} missing:\n{demo_out}"
        );
    }

    let containers: Vec<String> = SERVICES.iter().map(|s| container_of(&project, s)).collect();
    for (service, c) in SERVICES.iter().zip(&containers) {
        assert!(!c.is_empty(), "no container for {service}");
    }
    let [sandbox, producer, consumer, overseer] = [0, 1, 2, 3].map(|i| containers[i].clone());

    // depends_on with service_healthy: each tier starts after the one before.
    assert!(started_at(&sandbox) < started_at(&producer));
    assert!(started_at(&sandbox) < started_at(&consumer));
    assert!(started_at(&producer) < started_at(&overseer));
    assert!(started_at(&consumer) < started_at(&overseer));

    let latency = wait_for("latency.txt", Duration::from_secs(120), || {
        status_file(&overseer, "latency.txt").and_then(|t| t.trim().parse::<f64>().ok())
    });
    assert!(
        latency > 0.0 && latency < 10_000.0,
        "implausible p99 {latency} ms"
    );

    let metrics: serde_json::Value = wait_for("messages flowing", Duration::from_secs(120), || {
        let m: serde_json::Value =
            serde_json::from_str(&status_file(&overseer, "metrics.json")?).ok()?;
        (m["consumer_rate"].as_f64()? > 0.0 && m["producer_rate"].as_f64()? > 0.0).then_some(m)
    });
    assert_eq!(metrics["sources"]["consumer"]["up"], true, "{metrics}");
    assert!(
        metrics["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{metrics}"
    );

    // A memory update carrying a measured number, then a vibectl auto run
    // that finished after it.
    let agent_log = wait_for(
        "an agent memory update with a number and a finished vibectl auto run after it",
        Duration::from_secs(240),
        || {
            let log = status_file(&overseer, "agent.log")?;
            let numbered = log
                .lines()
                .position(|l| l.contains("[memory-update]") && !reported_latencies(l).is_empty())?;
            log.lines()
                .skip(numbered)
                .any(|l| l.contains("[auto-end]"))
                .then_some(log)
        },
    );
    let logged = reported_latencies(&agent_log);
    for n in &logged {
        let v: f64 = n.parse().unwrap();
        assert!(
            v > 0.0 && v < 10_000.0,
            "implausible {v} in agent.log:\n{agent_log}"
        );
    }

    // vibectl sent one of the measured numbers on to the LLM (agent.log is
    // read again: the loop may have moved on while we waited).
    let carries_logged_latency = |requests: &[serde_json::Value]| {
        let logged = status_file(&overseer, "agent.log")
            .map(|log| reported_latencies(&log))
            .unwrap_or_default();
        requests
            .iter()
            .flat_map(|r| reported_latencies(&testkit::llm::request_text(r)))
            .any(|n| logged.contains(&n))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let requests = loop {
        let requests = llm.requests();
        if carries_logged_latency(&requests) {
            break requests;
        }
        if Instant::now() > deadline {
            let texts: Vec<String> = requests.iter().map(testkit::llm::request_text).collect();
            panic!(
                "no LLM request carried a latency from agent.log:\n{}\nrequests: {texts:#?}",
                status_file(&overseer, "agent.log").unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        requests.iter().any(testkit::llm::is_planner_request),
        "no planner call from vibectl auto among {} requests",
        requests.len()
    );

    let (status, body) = wait_for("the dashboard", Duration::from_secs(30), || {
        http_get(&format!("http://127.0.0.1:{dashboard_port}/"))
    });
    assert_eq!(status, 200, "{body}");
    let (status, _) =
        http_get(&format!("http://127.0.0.1:{dashboard_port}/healthz")).expect("healthz answers");
    assert_eq!(status, 200);

    let out = xtask(&[
        "status",
        "--project",
        &project,
        "--cluster",
        &cluster,
        "--json",
    ])
    .output()
    .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(
        status["services"].as_array().map(Vec::len),
        Some(5),
        "four services and kafka: {status}"
    );

    // The key must be nowhere: not in any image, any log, the status volume.
    for component in ["loadgen", "overseer", "sandbox"] {
        let image = format!("{IMAGE_PREFIX}-{component}:{}", env!("CARGO_PKG_VERSION"));
        let (_, history) = docker(&["history", "--no-trunc", &image]);
        let (_, inspect) = docker(&["image", "inspect", &image]);
        assert!(
            !history.contains(&key) && !inspect.contains(&key),
            "API key found in image {image}"
        );
    }
    for c in &containers {
        let (_, logs) = docker(&["logs", c]);
        assert!(!logs.contains(&key), "API key found in the logs of {c}");
    }
    assert!(!agent_log.contains(&key), "API key found in agent.log");

    // `logs`: a service's through Compose, and the agent's from the volume.
    let stack_args = ["--project", project.as_str(), "--cluster", cluster.as_str()];
    let out = xtask(&[&["logs", "agent"][..], &stack_args].concat())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "logs agent: {stderr}");
    assert!(stdout.contains("[memory-update]"), "{stdout}");
    let out = xtask(&[&["logs", "producer", "--tail", "20"][..], &stack_args].concat())
        .env("DEMO_NETWORK", format!("{project}-net"))
        .env("DEMO_STATUS_VOLUME", format!("{project}-status"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "logs producer: {stdout}\n{stderr}");
    assert!(stdout.contains("producer"), "{stdout}");
    let out = xtask(&[&["logs", "nonsense"][..], &stack_args].concat())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains("unknown service \"nonsense\""));

    // `down` stops the services but keeps the network and the status volume
    // for a fast restart.
    let out = xtask(
        &[
            &[
                "down",
                "--compose-override",
                &override_file.to_string_lossy(),
            ][..],
            &stack_args,
        ]
        .concat(),
    )
    .env("DEMO_NETWORK", format!("{project}-net"))
    .env("DEMO_STATUS_VOLUME", format!("{project}-status"))
    .env("E2E_TANSU_IMAGE", TANSU_IMAGE)
    .env("E2E_LLM_DIR", llm_dir.path())
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "down: {stdout}\n{stderr}");
    let label = format!("label=com.docker.compose.project={project}");
    let (_, left) = docker(&["ps", "-aq", "--filter", &label]);
    assert!(left.trim().is_empty(), "containers left after down: {left}");
    assert!(
        docker(&["network", "inspect", &format!("{project}-net")]).0,
        "down removed the network"
    );
    assert!(
        docker(&["volume", "inspect", &format!("{project}-status")]).0,
        "down removed the volume"
    );

    // Ctrl+C: the attached demo removes everything it created.
    let interrupted = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = wait_for(
        "xtask demo to stop after Ctrl+C",
        Duration::from_secs(180),
        || demo.try_wait().unwrap(),
    );
    let mut demo_err = String::new();
    demo.stderr
        .take()
        .map(|mut e| e.read_to_string(&mut demo_err));
    let stdout = read_log();
    assert!(
        status.success(),
        "xtask demo after Ctrl+C: {status}\n{stdout}\n{demo_err}"
    );
    assert!(
        stdout.contains("stopping: removing everything the demo created"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("removed network {project}-net")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("removed volume {project}-status")),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&key) && !demo_err.contains(&key),
        "API key printed by xtask demo"
    );
    for kind in [
        &["ps", "-aq"][..],
        &["network", "ls", "-q"],
        &["volume", "ls", "-q"],
    ] {
        let mut args = kind.to_vec();
        args.extend(["--filter", &label]);
        let (ok, out) = docker(&args);
        assert!(
            ok && out.trim().is_empty(),
            "left behind after clean ({kind:?}): {out}"
        );
    }
    // Nor in a file left on disk: the repository, the temp dir, and Docker's
    // container store (where a running container's environment lives).
    for dir in [
        testkit::exe::workspace_root(),
        std::env::temp_dir(),
        PathBuf::from("/var/lib/docker/containers"),
    ] {
        if !dir.exists() {
            continue;
        }
        let out = Command::new("grep")
            .args(["-rlF", "--exclude-dir=target", "--exclude-dir=.git", &key])
            .arg(&dir)
            .output()
            .unwrap();
        let found = String::from_utf8_lossy(&out.stdout);
        assert!(
            found.trim().is_empty(),
            "API key found on disk in:\n{found}"
        );
    }
}
