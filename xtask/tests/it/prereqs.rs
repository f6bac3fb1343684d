//! `check-prereqs` as a process: a machine without the docker CLI is told
//! what to install and gets exit code 1; a complete machine gets exit 0.

use crate::{need_docker, text, xtask};

#[test]
fn missing_docker_cli_fails_with_the_fix() {
    if !need_docker() {
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let out = xtask(&["check-prereqs", "--dashboard-port", "0"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("✗ docker CLI      not found on PATH"),
        "{stdout}"
    );
    assert!(stdout.contains("→ install Docker"), "{stdout}");
    assert!(stdout.contains("✗ Compose"), "{stdout}");
    // The daemon itself is reached through its socket, not the CLI.
    assert!(stdout.contains("✓ Docker daemon"), "{stdout}");
    assert!(stdout.contains("requirement(s) missing"), "{stdout}");
}

#[test]
fn complete_machine_passes() {
    if !need_docker() {
        return;
    }
    // Port 0 always binds: the check is about the port being free, and a
    // fixed port could be taken on a test machine.
    let out = xtask(&["check-prereqs", "--dashboard-port", "0"])
        .env("VIBECTL_ANTHROPIC_API_KEY", "sk-ant-test")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for line in [
        "✓ docker CLI",
        "✓ Docker daemon",
        "✓ Compose",
        "✓ dashboard port",
        "✓ API key",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    assert!(stdout.contains("Ready to run the demo"), "{stdout}");
    assert!(!stdout.contains('✗'), "{stdout}");

    let out = xtask(&["check-prereqs", "--dashboard-port", "0", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert!(report["docker_gid"].is_u64());
}

#[test]
fn busy_dashboard_port_fails() {
    if !need_docker() {
        return;
    }
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = xtask(&["check-prereqs", "--dashboard-port", &port])
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("✗ dashboard port  {port} is in use")),
        "{stdout}"
    );
    assert!(stdout.contains("--dashboard-port"), "{stdout}");
}
