//! Test support for the whole workspace, never linked into a binary. Each
//! module stands in for something that cannot run on a test machine, or
//! launches a real tool the test command installed:
//!
//! - [`tansu`]: a real, separate Kafka-compatible broker process (tansu);
//! - [`kube_api`]: a fake Kubernetes API server over real HTTP;
//! - [`llm`]: a scripted OpenAI-compatible endpoint for the real vibectl;
//! - [`exe`]: stand-in executables (k3d, kubectl, vibectl, docker) that record
//!   their arguments.
//!
//! Tests that need a tool the machine lacks call [`require`]: it skips loudly
//! when run by hand and fails under `CI=true`.

pub mod exe;
pub mod kube_api;
pub mod llm;
pub mod tansu;

/// Whether we run under CI, where a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Decide whether a test that needs `what` can run. `available` is the
/// outcome of looking for it; `fix` tells a person how to get it. Returns
/// `false` (the test should return early) after printing a loud SKIPPED line
/// when run by hand; panics under `CI=true`.
pub fn require(what: &str, available: bool, fix: &str) -> bool {
    if available {
        return true;
    }
    if in_ci() {
        panic!("{what} is required under CI=true but is not available: {fix}");
    }
    eprintln!("\n*** SKIPPED: {what} is not available ({fix}) ***\n");
    false
}

/// Whether a Docker daemon answers on this machine (`docker version` exits 0).
pub fn docker_available() -> bool {
    std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
