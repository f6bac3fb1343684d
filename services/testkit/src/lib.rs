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

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// A name no other test (or test run) uses: for topics, groups, projects.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Poll `probe` until it returns `Some`, or panic naming what was awaited.
/// Prints how long it took, which CI logs keep.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = probe() {
            eprintln!("{what}: after {:.1?}", started.elapsed());
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Status code and body of a plain HTTP/1.0 GET of `url` (`http://host:port/path`).
/// `None` when nothing answers.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

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
