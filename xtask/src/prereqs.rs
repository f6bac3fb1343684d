//! `cargo xtask check-prereqs`: everything the demo needs from this machine,
//! checked at once and reported together, each problem with its fix. It never
//! changes anything.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::Path;

use serde::Serialize;
use xshell::Shell;

use crate::docker::{self, Api, Endpoint};
use crate::gid::{self, DockerGid};
use crate::project::{API_KEY_VAR, DEFAULT_DASHBOARD_PORT};

const GIB: u64 = 1024 * 1024 * 1024;
/// k3d node + Kafka + four services; below this the broker gets OOM-killed.
pub const MIN_MEMORY: u64 = 6 * GIB;
/// Images (k3s, Kafka, Rust builds) need about this much.
pub const MIN_DISK: u64 = 10 * GIB;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Host port the dashboard will be published on.
    #[arg(long, env = "DASHBOARD_PORT", default_value_t = DEFAULT_DASHBOARD_PORT)]
    pub dashboard_port: u16,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let findings = probe(sh, self.dashboard_port);
        let report = Report::from(&findings);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.render());
        }
        if !report.ok {
            std::process::exit(1);
        }
        Ok(())
    }
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warning,
    Failed,
}

impl Level {
    fn symbol(self) -> &'static str {
        match self {
            Level::Ok => "✓",
            Level::Warning => "!",
            Level::Failed => "✗",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    /// What to do about it; present for warnings and failures.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            level: Level::Warning,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            level: Level::Failed,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The whole report; `ok` when no check failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
    /// Which Compose later commands will use, e.g. "docker compose 2.29.1".
    pub compose: Option<String>,
    pub docker_gid: Option<u32>,
}

impl Report {
    /// One line per check, then a verdict.
    pub fn render(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{} {:width$}  {}\n",
                c.level.symbol(),
                c.name,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("  {:width$}  → {fix}\n", ""));
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.level == Level::Failed)
            .count();
        let warned = self
            .checks
            .iter()
            .filter(|c| c.level == Level::Warning)
            .count();
        out.push_str(&match (failed, warned) {
            (0, 0) => "Ready to run the demo.\n".to_string(),
            (0, w) => format!("Ready to run the demo ({w} warning(s) above).\n"),
            (f, _) => {
                format!("{f} requirement(s) missing: fix the ✗ lines above, then run again.\n")
            }
        });
        out
    }
}

/// Raw observations; kept apart from judging them so the judging is testable.
#[derive(Debug, Clone)]
pub struct Findings {
    pub docker_cli: Option<std::path::PathBuf>,
    pub daemon: Result<DaemonInfo, String>,
    pub compose: Option<docker::Compose>,
    pub socket: Option<SocketAccess>,
    pub disk_free: Option<u64>,
    pub dashboard_port: u16,
    pub port_free: bool,
    pub api_key_set: bool,
    pub gid: Option<DockerGid>,
}

/// What the daemon said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonInfo {
    pub endpoint: String,
    pub server_version: String,
    pub api_version: String,
    /// Memory the daemon's containers can use (the VM's on Docker Desktop).
    pub memory: u64,
    pub cpus: i64,
}

/// Whether this user may use the socket, and which group owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketAccess {
    pub path: std::path::PathBuf,
    pub read_write: bool,
    pub group: Option<String>,
}

/// Look at the machine.
pub fn probe(sh: &Shell, dashboard_port: u16) -> Findings {
    let path: Option<OsString> = std::env::var_os("PATH");
    let docker_cli = which::which_in("docker", path.as_deref(), sh.current_dir()).ok();
    let api = Api::connect();
    let daemon = match &api {
        Ok(api) => daemon_info(api).map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("{e:#}")),
    };
    let endpoint = docker::endpoint();
    let socket = match &endpoint {
        Endpoint::Socket(p) => Some(socket_access(p)),
        Endpoint::Remote(_) => None,
    };
    let disk_free = api
        .as_ref()
        .ok()
        .and_then(|api| api.block_on(api.docker.info()).ok())
        .and_then(|info| info.docker_root_dir)
        .filter(|d| Path::new(d).exists())
        .or_else(|| std::env::var("HOME").ok())
        .and_then(|dir| rustix::fs::statvfs(dir.as_str()).ok())
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    let gid_override = std::env::var("DOCKER_GID")
        .ok()
        .and_then(|v| v.parse().ok());
    let gid = Some(gid::detect(sh, api.as_ref().ok(), gid_override));
    Findings {
        docker_cli,
        daemon,
        compose: docker::detect_compose(sh, path.as_deref()),
        socket,
        disk_free,
        dashboard_port,
        port_free: TcpListener::bind(("0.0.0.0", dashboard_port)).is_ok(),
        api_key_set: std::env::var(API_KEY_VAR).is_ok_and(|v| !v.trim().is_empty()),
        gid,
    }
}

fn daemon_info(api: &Api) -> anyhow::Result<DaemonInfo> {
    api.block_on(api.docker.ping())?;
    let version = api.block_on(api.docker.version())?;
    let info = api.block_on(api.docker.info())?;
    Ok(DaemonInfo {
        endpoint: api.endpoint.to_string(),
        server_version: version.version.unwrap_or_default(),
        api_version: version.api_version.unwrap_or_default(),
        memory: info.mem_total.unwrap_or(0).max(0) as u64,
        cpus: info.ncpu.unwrap_or(0),
    })
}

fn socket_access(path: &Path) -> SocketAccess {
    use std::os::unix::fs::MetadataExt;
    let read_write = rustix::fs::access(
        path,
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    )
    .is_ok();
    let group = std::fs::metadata(path).ok().map(|m| {
        let gid = m.gid();
        std::fs::read_to_string("/etc/group")
            .ok()
            .and_then(|t| gid::group_name(&t, gid))
            .unwrap_or_else(|| gid.to_string())
    });
    SocketAccess {
        path: path.to_path_buf(),
        read_write,
        group,
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

impl From<&Findings> for Report {
    fn from(f: &Findings) -> Self {
        let mut checks = Vec::new();
        checks.push(match &f.docker_cli {
            Some(p) => Check::ok("docker CLI", p.display().to_string()),
            None => Check::fail(
                "docker CLI",
                "not found on PATH",
                "install Docker (https://docs.docker.com/get-docker/) and make sure `docker` is on PATH",
            ),
        });
        checks.push(match &f.daemon {
            Ok(d) => Check::ok(
                "Docker daemon",
                format!("Docker {} (API {}) at {}", d.server_version, d.api_version, d.endpoint),
            ),
            Err(e) => Check::fail(
                "Docker daemon",
                format!("not answering: {e}"),
                "start Docker (Docker Desktop, or `sudo systemctl start docker`); set DOCKER_HOST if it listens elsewhere",
            ),
        });
        checks.push(match &f.compose {
            Some(c) if !c.is_v1() => Check::ok("Compose", format!("{c} (will be used)")),
            Some(c) => Check::ok(
                "Compose",
                format!("{c} (v1, will be used; v2 is preferred)"),
            ),
            None => Check::fail(
                "Compose",
                "neither `docker compose` nor `docker-compose` found",
                "install the Docker Compose plugin (https://docs.docker.com/compose/install/)",
            ),
        });
        if let Some(s) = &f.socket {
            checks.push(if s.read_write {
                Check::ok("Docker socket", format!("{} is readable and writable", s.path.display()))
            } else {
                let group = s.group.clone().unwrap_or_else(|| "docker".into());
                Check::fail(
                    "Docker socket",
                    format!("{} is not readable and writable by this user", s.path.display()),
                    format!("join its group: `sudo usermod -aG {group} $USER`, then log out and in again"),
                )
            });
        }
        if let Ok(d) = &f.daemon {
            checks.push(if d.memory >= MIN_MEMORY {
                Check::ok("memory", format!("{} for containers", gib(d.memory)))
            } else {
                Check::warn(
                    "memory",
                    format!("{} for containers, under {}", gib(d.memory), gib(MIN_MEMORY)),
                    "give Docker more memory (Docker Desktop: Settings → Resources); Kafka may be OOM-killed",
                )
            });
            checks.push(if d.cpus >= 2 {
                Check::ok("CPUs", format!("{} for containers", d.cpus))
            } else {
                Check::warn(
                    "CPUs",
                    format!("{} for containers", d.cpus),
                    "give Docker at least 2 CPUs; the demo will be slow",
                )
            });
        }
        checks.push(match f.disk_free {
            Some(free) if free >= MIN_DISK => {
                Check::ok("disk", format!("{} free for images", gib(free)))
            }
            Some(free) => Check::warn(
                "disk",
                format!("{} free for images, under {}", gib(free), gib(MIN_DISK)),
                "free some space (`docker system prune`) before building the images",
            ),
            None => Check::warn(
                "disk",
                "could not measure free space",
                "make sure about 10 GiB are free for images",
            ),
        });
        checks.push(if f.port_free {
            Check::ok("dashboard port", format!("{} is free", f.dashboard_port))
        } else {
            Check::fail(
                "dashboard port",
                format!("{} is in use", f.dashboard_port),
                "pick another with --dashboard-port (or DASHBOARD_PORT); is the demo already running? `cargo xtask status`",
            )
        });
        if let Some(g) = &f.gid {
            checks.push(match g.warning() {
                None => Check::ok("Docker GID", g.to_string()),
                Some(w) => Check::warn("Docker GID", g.to_string(), w),
            });
        }
        checks.push(if f.api_key_set {
            Check::ok("API key", format!("{API_KEY_VAR} is set"))
        } else {
            Check::warn(
                "API key",
                format!("{API_KEY_VAR} is not set"),
                format!("`cargo xtask demo` will ask for it, or `export {API_KEY_VAR}=sk-ant-...`"),
            )
        });
        Report {
            ok: checks.iter().all(|c| c.level != Level::Failed),
            checks,
            compose: f.compose.as_ref().map(|c| c.to_string()),
            docker_gid: f.gid.as_ref().map(|g| g.gid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gid::GidSource;

    fn healthy() -> Findings {
        Findings {
            docker_cli: Some("/usr/bin/docker".into()),
            daemon: Ok(DaemonInfo {
                endpoint: "unix:///var/run/docker.sock".into(),
                server_version: "20.10.24".into(),
                api_version: "1.41".into(),
                memory: 16 * GIB,
                cpus: 4,
            }),
            compose: Some(docker::Compose {
                program: "/usr/bin/docker".into(),
                prefix: vec!["compose".into()],
                version: "2.29.1".into(),
            }),
            socket: Some(SocketAccess {
                path: "/var/run/docker.sock".into(),
                read_write: true,
                group: Some("docker".into()),
            }),
            disk_free: Some(100 * GIB),
            dashboard_port: 8080,
            port_free: true,
            api_key_set: true,
            gid: Some(DockerGid {
                gid: 999,
                source: GidSource::Container,
            }),
        }
    }

    #[test]
    fn all_good_is_ok_with_no_fixes() {
        let r = Report::from(&healthy());
        assert!(r.ok);
        assert!(
            r.checks
                .iter()
                .all(|c| c.level == Level::Ok && c.fix.is_none())
        );
        let text = r.render();
        assert!(text.contains("✓ Docker daemon"));
        assert!(text.contains("Docker 20.10.24 (API 1.41)"));
        assert!(text.contains("docker compose 2.29.1 (will be used)"));
        assert!(text.ends_with("Ready to run the demo.\n"));
    }

    #[test]
    fn warnings_do_not_fail() {
        let mut f = healthy();
        f.api_key_set = false;
        f.disk_free = Some(2 * GIB);
        if let Ok(d) = &mut f.daemon {
            d.memory = 4 * GIB;
        }
        let r = Report::from(&f);
        assert!(r.ok);
        let text = r.render();
        assert!(text.contains("! API key"));
        assert!(text.contains("→ `cargo xtask demo` will ask for it"));
        assert!(text.contains("! memory"));
        assert!(text.contains("! disk"));
        assert!(text.contains("3 warning(s)"));
    }

    #[test]
    fn missing_pieces_fail_with_fixes() {
        let mut f = healthy();
        f.docker_cli = None;
        f.compose = None;
        f.port_free = false;
        f.socket.as_mut().unwrap().read_write = false;
        let r = Report::from(&f);
        assert!(!r.ok);
        let text = r.render();
        assert!(text.contains("✗ docker CLI"));
        assert!(text.contains("install Docker"));
        assert!(text.contains("✗ Compose"));
        assert!(text.contains("sudo usermod -aG docker $USER"));
        assert!(text.contains("--dashboard-port"));
        assert!(text.contains("4 requirement(s) missing"));
    }

    #[test]
    fn daemon_down_fails_and_json_is_machine_readable() {
        let mut f = healthy();
        f.daemon = Err("connection refused".into());
        let r = Report::from(&f);
        assert!(!r.ok);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ok"], false);
        let daemon = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "Docker daemon")
            .unwrap();
        assert_eq!(daemon["level"], "failed");
        assert!(daemon["fix"].as_str().unwrap().contains("start Docker"));
        assert_eq!(v["compose"], "docker compose 2.29.1");
        assert_eq!(v["docker_gid"], 999);
    }
}
