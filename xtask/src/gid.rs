//! Which group id the sandbox container needs (`group_add`) to use the Docker
//! socket. What the host says can differ from what a container sees (Docker
//! Desktop shows root:root inside containers), so ask a container first.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListImagesOptions, LogsOptions, RemoveContainerOptions,
    WaitContainerOptions,
};
use futures::StreamExt;
use xshell::{Shell, cmd};

use crate::docker::{Api, daemon_side_socket};

/// Used when nothing else answers; the usual docker group id on Debian/Ubuntu.
pub const FALLBACK_GID: u32 = 999;

/// How the GID was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GidSource {
    /// The `DOCKER_GID` variable.
    Override,
    /// `stat` of the socket inside a throwaway container.
    Container,
    /// `getent group docker` on the host.
    GroupDb,
    /// The socket file's group on the host.
    SocketStat,
    /// Nothing answered.
    Fallback,
}

/// The detected GID and how much to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerGid {
    pub gid: u32,
    pub source: GidSource,
}

impl DockerGid {
    /// A warning for the user, when the result needs one.
    pub fn warning(&self) -> Option<String> {
        match self.source {
            GidSource::Fallback => Some(format!(
                "could not detect the Docker socket's group; guessing {FALLBACK_GID}: if it is \
                 wrong the sandbox cannot reach Docker and k3d fails with 'permission denied' \
                 (set DOCKER_GID to the socket's group id)"
            )),
            _ => None,
        }
    }
}

impl fmt::Display for DockerGid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.source {
            GidSource::Override => "from DOCKER_GID",
            GidSource::Container => "as a container sees the socket",
            GidSource::GroupDb => "group 'docker' on this host",
            GidSource::SocketStat => "group of the socket on this host",
            GidSource::Fallback => "fallback guess",
        };
        if self.gid == 0 {
            // Docker Desktop: the socket is root:root inside containers and
            // joining group 0 is how a non-root user gets to it there.
            write!(
                f,
                "0 ({how}; Docker Desktop style, the sandbox joins group root)"
            )
        } else {
            write!(f, "{} ({how})", self.gid)
        }
    }
}

/// The gid of the `docker` group in `/etc/group`-format text
/// (`docker:x:999:alice,bob`).
pub fn parse_group_entry(text: &str, group: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        (fields.next()? == group).then_some(())?;
        fields.nth(1)?.trim().parse().ok()
    })
}

/// The name of group `gid` in `/etc/group`-format text.
pub fn group_name(text: &str, gid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let name = fields.next()?;
        (fields.nth(1)?.trim().parse::<u32>().ok()? == gid).then(|| name.to_string())
    })
}

/// A gid as printed by `stat -c %g` (Linux) or `stat -f %g` (macOS).
pub fn parse_stat_gid(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// Detect the GID, trying each method in turn. `override_gid` (the
/// `DOCKER_GID` variable) wins when set.
pub fn detect(sh: &Shell, api: Option<&Api>, override_gid: Option<u32>) -> DockerGid {
    if let Some(gid) = override_gid {
        return DockerGid {
            gid,
            source: GidSource::Override,
        };
    }
    if let Some(gid) = api.and_then(|api| gid_in_container(api).ok().flatten()) {
        return DockerGid {
            gid,
            source: GidSource::Container,
        };
    }
    let getent = cmd!(sh, "getent group docker")
        .quiet()
        .ignore_stderr()
        .read();
    if let Some(gid) = getent.ok().and_then(|t| parse_group_entry(&t, "docker")) {
        return DockerGid {
            gid,
            source: GidSource::GroupDb,
        };
    }
    let socket = match api {
        Some(api) => daemon_side_socket(&api.endpoint),
        None => daemon_side_socket(&crate::docker::endpoint()),
    };
    if let Ok(meta) = std::fs::metadata(&socket) {
        return DockerGid {
            gid: meta.gid(),
            source: GidSource::SocketStat,
        };
    }
    DockerGid {
        gid: FALLBACK_GID,
        source: GidSource::Fallback,
    }
}

/// Run `stat -c %g` on the mounted socket in a throwaway container made from
/// an image already in the daemon (nothing is pulled). `Ok(None)` when no
/// image can do it.
fn gid_in_container(api: &Api) -> anyhow::Result<Option<u32>> {
    let socket = daemon_side_socket(&api.endpoint);
    for image in candidate_images(api)? {
        if let Ok(Some(gid)) = stat_socket_in(api, &image, &socket) {
            return Ok(Some(gid));
        }
    }
    Ok(None)
}

/// Local images most likely to have `stat`: Debian-based ones first.
fn candidate_images(api: &Api) -> anyhow::Result<Vec<String>> {
    let images = api.block_on(api.docker.list_images(None::<ListImagesOptions>))?;
    let mut tags: Vec<String> = images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .filter(|t| t != "<none>:<none>")
        .collect();
    let rank = |t: &String| {
        if t.starts_with("debian:") || t.contains("kafka-throughput-demo") {
            0
        } else if t.starts_with("ubuntu:") || t.starts_with("busybox:") || t.starts_with("alpine:")
        {
            1
        } else {
            2
        }
    };
    tags.sort_by_key(rank);
    tags.truncate(3);
    Ok(tags)
}

fn stat_socket_in(api: &Api, image: &str, socket: &Path) -> anyhow::Result<Option<u32>> {
    let inside = "/var/run/docker.sock";
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec!["stat".into()]),
        cmd: Some(vec!["-c".into(), "%g".into(), inside.into()]),
        labels: Some(HashMap::from([(
            "dev.kafka-throughput-demo.purpose".to_string(),
            "gid-probe".to_string(),
        )])),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:{inside}", socket.display())]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let docker = &api.docker;
    api.block_on(async {
        let created = docker
            .create_container(None::<CreateContainerOptions>, body)
            .await?;
        let id = created.id;
        let result = async {
            docker.start_container(&id, None).await?;
            let mut wait = docker.wait_container(&id, None::<WaitContainerOptions>);
            while wait.next().await.transpose()?.is_some() {}
            let mut logs = docker.logs(
                &id,
                Some(LogsOptions {
                    stdout: true,
                    ..Default::default()
                }),
            );
            let mut out = String::new();
            while let Some(chunk) = logs.next().await.transpose()? {
                out.push_str(&chunk.to_string());
            }
            anyhow::Ok(parse_stat_gid(&out))
        }
        .await;
        let _ = docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_entry_parsing() {
        let etc_group = "root:x:0:\nadm:x:4:syslog\ndocker:x:998:alice,bob\n";
        assert_eq!(parse_group_entry(etc_group, "docker"), Some(998));
        assert_eq!(parse_group_entry("docker:x:0:\n", "docker"), Some(0));
        assert_eq!(parse_group_entry("dockerish:x:5:\n", "docker"), None);
        assert_eq!(parse_group_entry("docker:x:notanumber:\n", "docker"), None);
        assert_eq!(parse_group_entry("", "docker"), None);
        assert_eq!(group_name(etc_group, 998).as_deref(), Some("docker"));
        assert_eq!(group_name(etc_group, 5), None);
    }

    #[test]
    fn stat_output_parsing() {
        assert_eq!(parse_stat_gid("999\n"), Some(999));
        assert_eq!(parse_stat_gid("0"), Some(0));
        assert_eq!(parse_stat_gid("stat: cannot stat"), None);
    }

    #[test]
    fn gid_zero_and_fallback_are_explained() {
        let desktop = DockerGid {
            gid: 0,
            source: GidSource::Container,
        };
        assert!(desktop.to_string().contains("Docker Desktop"));
        assert!(desktop.warning().is_none());
        let guess = DockerGid {
            gid: FALLBACK_GID,
            source: GidSource::Fallback,
        };
        assert!(guess.warning().unwrap().contains("DOCKER_GID"));
    }

    #[test]
    fn override_wins() {
        let sh = Shell::new().unwrap();
        let gid = detect(&sh, None, Some(4242));
        assert_eq!((gid.gid, gid.source), (4242, GidSource::Override));
    }
}
