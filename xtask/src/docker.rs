//! Reaching Docker: the daemon through bollard (for everything its API answers
//! directly) and the Compose CLI (v2 `docker compose` preferred, v1
//! `docker-compose` accepted).

use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// Where the daemon listens, as this process reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket on this machine.
    Socket(PathBuf),
    /// `DOCKER_HOST=tcp://...` or similar: no local socket to check.
    Remote(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Socket(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Remote(h) => f.write_str(h),
        }
    }
}

/// Decide which endpoint to use: `DOCKER_HOST` when set, else the standard
/// socket, else Docker Desktop's per-user socket.
pub fn find_endpoint(docker_host: Option<&str>, home: Option<&Path>) -> Endpoint {
    if let Some(host) = docker_host.filter(|h| !h.is_empty()) {
        return match host.strip_prefix("unix://") {
            Some(path) => Endpoint::Socket(PathBuf::from(path)),
            None => Endpoint::Remote(host.to_string()),
        };
    }
    let standard = PathBuf::from("/var/run/docker.sock");
    if standard.exists() {
        return Endpoint::Socket(standard);
    }
    if let Some(home) = home {
        let desktop = home.join(".docker/run/docker.sock");
        if desktop.exists() {
            return Endpoint::Socket(desktop);
        }
    }
    Endpoint::Socket(standard)
}

/// The endpoint for this process's environment.
pub fn endpoint() -> Endpoint {
    find_endpoint(
        std::env::var("DOCKER_HOST").ok().as_deref(),
        std::env::var_os("HOME").map(PathBuf::from).as_deref(),
    )
}

/// The socket path as the daemon (and so a container's bind mount) names it.
/// Docker Desktop serves `/var/run/docker.sock` inside its VM even though the
/// host-side socket lives under `~/.docker`.
pub fn daemon_side_socket(endpoint: &Endpoint) -> PathBuf {
    match endpoint {
        Endpoint::Socket(p) if !p.ends_with(".docker/run/docker.sock") => p.clone(),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// A bollard client with its own small runtime, so the synchronous xtask
/// commands can call the Docker API directly.
pub struct Api {
    rt: tokio::runtime::Runtime,
    pub docker: bollard::Docker,
    pub endpoint: Endpoint,
}

impl Api {
    /// Connect and negotiate the API version (bollard defaults to a newer API
    /// than older daemons such as Docker 20.10 speak).
    pub fn connect() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the Docker client runtime")?;
        let endpoint = endpoint();
        let docker = match &endpoint {
            Endpoint::Socket(path) => bollard::Docker::connect_with_unix(
                &path.to_string_lossy(),
                120,
                bollard::API_DEFAULT_VERSION,
            ),
            Endpoint::Remote(_) => bollard::Docker::connect_with_defaults(),
        }
        .with_context(|| format!("connect to Docker at {endpoint}"))?;
        let docker = rt
            .block_on(docker.negotiate_version())
            .with_context(|| format!("reach the Docker daemon at {endpoint}"))?;
        Ok(Self {
            rt,
            docker,
            endpoint,
        })
    }

    /// Run one Docker API future to completion.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }
}

/// Which Compose the demo drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    /// The program to run (`docker` or `docker-compose`).
    pub program: PathBuf,
    /// Arguments before Compose's own (`["compose"]` for the plugin).
    pub prefix: Vec<String>,
    /// Version as reported, e.g. `2.29.1`.
    pub version: String,
}

impl Compose {
    /// Major version 1 (Python `docker-compose`), which lacks some v2 syntax.
    pub fn is_v1(&self) -> bool {
        self.version.starts_with("1.")
    }

    /// How a person would type it.
    pub fn display_name(&self) -> String {
        if self.prefix.is_empty() {
            "docker-compose".to_string()
        } else {
            "docker compose".to_string()
        }
    }
}

impl fmt::Display for Compose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.display_name(), self.version)
    }
}

/// Extract the version from `docker compose version` / `docker-compose
/// version` output in any of its forms (`--short`, `v2.29.1`, `docker-compose
/// version 1.29.2, build unknown`, `Docker Compose version v2.29.1`).
pub fn parse_compose_version(output: &str) -> Option<String> {
    let first = output.lines().map(str::trim).find(|l| !l.is_empty())?;
    first
        .split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.strip_prefix('v').unwrap_or(w))
        .find(|w| {
            let mut parts = w.split('.');
            parts.next().is_some_and(|p| p.parse::<u32>().is_ok())
                && parts.next().is_some_and(|p| p.parse::<u32>().is_ok())
        })
        .map(str::to_string)
}

/// Find Compose on `path` (the `PATH` value to search): the v2 plugin first,
/// then a standalone `docker-compose` (v1, or v2 installed standalone).
pub fn detect_compose(sh: &Shell, path: Option<&OsStr>) -> Option<Compose> {
    let cwd = sh.current_dir();
    if let Ok(docker) = which::which_in("docker", path, &cwd) {
        let out = cmd!(sh, "{docker} compose version --short")
            .quiet()
            .ignore_stderr()
            .read();
        if let Some(version) = out.ok().as_deref().and_then(parse_compose_version) {
            return Some(Compose {
                program: docker,
                prefix: vec!["compose".to_string()],
                version,
            });
        }
    }
    let standalone = which::which_in("docker-compose", path, &cwd).ok()?;
    let out = cmd!(sh, "{standalone} version --short")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()?;
    Some(Compose {
        program: standalone,
        prefix: Vec::new(),
        version: parse_compose_version(&out)?,
    })
}

/// Compose on this process's `PATH`, or an error saying how to get it.
pub fn require_compose(sh: &Shell) -> anyhow::Result<Compose> {
    match detect_compose(sh, std::env::var_os("PATH").as_deref()) {
        Some(c) => Ok(c),
        None => bail!(
            "Docker Compose not found: install the Compose plugin (`docker compose`) or docker-compose"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_version_forms() {
        assert_eq!(parse_compose_version("2.29.1\n").as_deref(), Some("2.29.1"));
        assert_eq!(parse_compose_version("v2.40.3").as_deref(), Some("2.40.3"));
        assert_eq!(
            parse_compose_version("docker-compose version 1.29.2, build unknown\n").as_deref(),
            Some("1.29.2")
        );
        assert_eq!(
            parse_compose_version("Docker Compose version v2.29.1-desktop.1").as_deref(),
            Some("2.29.1-desktop.1")
        );
        assert_eq!(
            parse_compose_version("docker: 'compose' is not a docker command."),
            None
        );
        assert_eq!(parse_compose_version(""), None);
    }

    #[test]
    fn endpoint_honours_docker_host() {
        assert_eq!(
            find_endpoint(Some("unix:///run/user/1000/docker.sock"), None),
            Endpoint::Socket("/run/user/1000/docker.sock".into())
        );
        assert_eq!(
            find_endpoint(Some("tcp://10.0.0.5:2375"), None),
            Endpoint::Remote("tcp://10.0.0.5:2375".into())
        );
    }

    #[test]
    fn endpoint_finds_docker_desktop_socket() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".docker/run")).unwrap();
        let sock = home.path().join(".docker/run/docker.sock");
        std::fs::write(&sock, "").unwrap();
        let found = find_endpoint(None, Some(home.path()));
        if Path::new("/var/run/docker.sock").exists() {
            assert_eq!(found, Endpoint::Socket("/var/run/docker.sock".into()));
        } else {
            assert_eq!(found, Endpoint::Socket(sock.clone()));
        }
        // A container mounts the daemon's own path, not the host-side one.
        assert_eq!(
            daemon_side_socket(&Endpoint::Socket(sock)),
            PathBuf::from("/var/run/docker.sock")
        );
    }

    fn compose_stand_ins(dir: &Path, docker_body: &str, compose_body: Option<&str>) {
        testkit::exe::StandIn::create(dir, "docker", docker_body).unwrap();
        if let Some(body) = compose_body {
            testkit::exe::StandIn::create(dir, "docker-compose", body).unwrap();
        }
    }

    #[test]
    fn compose_v2_plugin_preferred() {
        let dir = tempfile::tempdir().unwrap();
        compose_stand_ins(
            dir.path(),
            r#"[ "$1 $2" = "compose version" ] && { echo "2.29.1"; exit 0; }; exit 1"#,
            Some(r#"echo "1.29.2""#),
        );
        let sh = Shell::new().unwrap();
        let c = detect_compose(&sh, Some(dir.path().as_os_str())).unwrap();
        assert_eq!(c.prefix, vec!["compose"]);
        assert_eq!(c.version, "2.29.1");
        assert!(!c.is_v1());
        assert_eq!(c.to_string(), "docker compose 2.29.1");
    }

    #[test]
    fn compose_v1_accepted_when_plugin_missing() {
        let dir = tempfile::tempdir().unwrap();
        compose_stand_ins(
            dir.path(),
            r#"echo "docker: 'compose' is not a docker command." >&2; exit 1"#,
            Some(r#"[ "$1" = "version" ] && echo "1.29.2""#),
        );
        let sh = Shell::new().unwrap();
        let c = detect_compose(&sh, Some(dir.path().as_os_str())).unwrap();
        assert!(c.prefix.is_empty());
        assert!(c.is_v1());
        assert_eq!(c.to_string(), "docker-compose 1.29.2");
    }

    #[test]
    fn no_compose_at_all() {
        let dir = tempfile::tempdir().unwrap();
        compose_stand_ins(dir.path(), "exit 1", None);
        let sh = Shell::new().unwrap();
        assert_eq!(detect_compose(&sh, Some(dir.path().as_os_str())), None);
    }
}
