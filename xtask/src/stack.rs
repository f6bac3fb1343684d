//! The running stack: Compose invocations with the demo's settings, the
//! services' containers (found by Compose labels, which v1 and v2 share, not by
//! name, which they spell differently), and the status volume's files as seen
//! through a container.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::{
    DownloadFromContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
};
use futures::StreamExt;
use xshell::Shell;

use crate::docker::{Api, Compose};
use crate::project::{COMPOSE_PROJECT_LABEL, Instance};

/// Compose's label naming a container's service.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// The services, in start order.
pub const SERVICES: [&str; 4] = ["k8s-sandbox", "producer", "consumer", "overseer"];
/// Where every service mounts the status volume.
pub const STATUS_MOUNT: &str = "/tmp/status";

/// How to run Compose for one demo instance.
pub struct Stack {
    pub compose: Compose,
    pub project: String,
    /// `compose.yml`, then any override files (tests add one).
    pub files: Vec<PathBuf>,
    /// Variables compose.yml interpolates; the API key travels here too, so
    /// it never appears in an argument list.
    pub env: Vec<(String, String)>,
}

impl Stack {
    pub fn new(compose: Compose, instance: &Instance, overrides: &[PathBuf]) -> Self {
        let mut files = vec![PathBuf::from("compose.yml")];
        files.extend(overrides.iter().cloned());
        Self {
            compose,
            project: instance.project.clone(),
            files,
            env: vec![("CLUSTER_NAME".into(), instance.cluster.clone())],
        }
    }

    /// `docker compose -p <project> -f ... <args>` with the stack's variables.
    pub fn cmd<'a>(&self, sh: &'a Shell, args: &[&str]) -> xshell::Cmd<'a> {
        let program = &self.compose.program;
        let mut cmd = xshell::cmd!(sh, "{program}")
            .args(&self.compose.prefix)
            .args(["-p", &self.project]);
        for file in &self.files {
            cmd = cmd.arg("-f").arg(file);
        }
        cmd = cmd.args(args);
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// The same as a duct expression, for long-running invocations that run
    /// while xtask watches progress.
    pub fn duct(&self, args: &[&str]) -> duct::Expression {
        let mut argv: Vec<std::ffi::OsString> =
            self.compose.prefix.iter().map(Into::into).collect();
        argv.extend(["-p".into(), self.project.clone().into()]);
        for file in &self.files {
            argv.extend(["-f".into(), file.clone().into()]);
        }
        argv.extend(args.iter().map(Into::into));
        let mut expr = duct::cmd(&self.compose.program, argv);
        for (k, v) in &self.env {
            expr = expr.env(k, v);
        }
        expr
    }
}

/// One service container's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServiceState {
    pub service: String,
    pub container: String,
    /// running, exited, restarting, ...
    pub state: String,
    /// healthy, unhealthy, starting, or none.
    pub health: String,
    pub exit_code: Option<i64>,
}

impl ServiceState {
    pub fn is_healthy(&self) -> bool {
        self.state == "running" && self.health == "healthy"
    }
    /// Gone for good: exited, dead, or crash-looping.
    pub fn has_failed(&self) -> bool {
        matches!(self.state.as_str(), "exited" | "dead" | "restarting")
    }
}

/// Every container of the project's services.
pub fn service_states(api: &Api, project: &str) -> anyhow::Result<Vec<ServiceState>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{COMPOSE_PROJECT_LABEL}={project}")],
    )]);
    let containers = api
        .block_on(api.docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        })))
        .context("list the demo's containers")?;
    let mut states = Vec::new();
    for c in containers {
        let Some(id) = c.id else { continue };
        let service = c
            .labels
            .as_ref()
            .and_then(|l| l.get(COMPOSE_SERVICE_LABEL))
            .cloned()
            .unwrap_or_default();
        let inspect = api
            .block_on(
                api.docker
                    .inspect_container(&id, None::<InspectContainerOptions>),
            )
            .with_context(|| format!("inspect container {id}"))?;
        let state = inspect.state.unwrap_or_default();
        let name = inspect
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        states.push(ServiceState {
            service,
            container: name,
            state: state
                .status
                .unwrap_or(ContainerStateStatusEnum::EMPTY)
                .to_string(),
            health: state
                .health
                .and_then(|h| h.status)
                .unwrap_or(HealthStatusEnum::NONE)
                .to_string(),
            exit_code: state.exit_code,
        });
    }
    states.sort_by_key(|s| {
        SERVICES
            .iter()
            .position(|x| *x == s.service)
            .unwrap_or(SERVICES.len())
    });
    Ok(states)
}

/// The container of `service`, if any.
pub fn find_service<'a>(states: &'a [ServiceState], service: &str) -> Option<&'a ServiceState> {
    states.iter().find(|s| s.service == service)
}

/// A running container that mounts the status volume (every service does;
/// containers an override adds may not), the overseer first.
pub fn status_reader(states: &[ServiceState]) -> Option<&ServiceState> {
    ["overseer", "k8s-sandbox", "producer", "consumer"]
        .iter()
        .filter_map(|s| find_service(states, s))
        .find(|s| s.state == "running")
}

/// Read a file from the status volume through a running container that
/// mounts it. `Ok(None)` when the file does not exist (yet).
pub fn read_status_file(api: &Api, container: &str, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let path = format!("{STATUS_MOUNT}/{name}");
    let options = DownloadFromContainerOptions { path: path.clone() };
    let result: Result<Vec<u8>, bollard::errors::Error> = api.block_on(async {
        let mut stream = api.docker.download_from_container(container, Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            tar.extend_from_slice(&chunk?);
        }
        Ok(tar)
    });
    let tar = match result {
        Ok(t) => t,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {path} in {container}")),
    };
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entries = archive
        .entries()
        .context("read the archive of a status file")?;
    let Some(entry) = entries.next() else {
        return Ok(None);
    };
    let mut data = Vec::new();
    entry?.read_to_end(&mut data)?;
    Ok(Some(data))
}

/// The last `lines` lines a container logged (stdout and stderr).
pub fn log_tail(api: &Api, container: &str, lines: usize) -> String {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: lines.to_string(),
        ..Default::default()
    };
    api.block_on(async {
        let mut stream = api.docker.logs(container, Some(options));
        let mut out = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&chunk.to_string());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(state: &str, health: &str) -> ServiceState {
        ServiceState {
            service: "producer".into(),
            container: "c".into(),
            state: state.into(),
            health: health.into(),
            exit_code: None,
        }
    }

    #[test]
    fn health_and_failure() {
        assert!(state("running", "healthy").is_healthy());
        assert!(!state("running", "starting").is_healthy());
        assert!(state("exited", "unhealthy").has_failed());
        assert!(state("restarting", "").has_failed());
        assert!(!state("running", "unhealthy").has_failed());
    }

    #[test]
    fn compose_command_line_has_project_files_and_env() {
        let compose = Compose {
            program: "docker".into(),
            prefix: vec!["compose".into()],
            version: "2.29.1".into(),
        };
        let instance = Instance {
            project: "p".into(),
            cluster: "c".into(),
        };
        let mut stack = Stack::new(compose, &instance, &[PathBuf::from("o.yml")]);
        stack
            .env
            .push(("VIBECTL_ANTHROPIC_API_KEY".into(), "sk-ant-secret".into()));
        let sh = Shell::new().unwrap();
        let line = stack.cmd(&sh, &["up", "-d"]).to_string();
        assert_eq!(line, "docker compose -p p -f compose.yml -f o.yml up -d");
        assert!(
            !line.contains("sk-ant"),
            "the key must not be on the command line"
        );
    }
}
