//! `cargo xtask clean`: remove everything the demo created, and nothing else.
//! What is the demo's is decided by labels only: Compose's project label, k3d's
//! cluster label, and the labels xtask puts on its own images and probes. That
//! works without a k3d binary on the host and whichever Compose made the stack.

use std::collections::HashMap;
use std::fmt;

use anyhow::Context;
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
};
use xshell::{Shell, cmd};

use crate::docker::{self, Api};
use crate::project::{COMPOSE_PROJECT_LABEL, IMAGE_LABEL, Instance, K3D_CLUSTER_LABEL};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub instance: Instance,
    /// Also remove the images `cargo xtask build` made.
    #[arg(long)]
    pub images: bool,
}

impl Args {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let api = Api::connect().context("connect to Docker")?;
        let outcome = clean(sh, &api, &self.instance, self.images)?;
        print!("{outcome}");
        if !outcome.failures.is_empty() {
            anyhow::bail!(
                "{} thing(s) could not be removed (see above)",
                outcome.failures.len()
            );
        }
        Ok(())
    }
}

/// What one `clean` removed and what it could not.
#[derive(Debug, Default)]
pub struct Outcome {
    pub removed: Vec<(Kind, String)>,
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Network,
    Volume,
    Image,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Container => "container",
            Kind::Network => "network",
            Kind::Volume => "volume",
            Kind::Image => "image",
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, name) in &self.removed {
            writeln!(f, "removed {kind} {name}")?;
        }
        for failure in &self.failures {
            writeln!(f, "could not remove {failure}")?;
        }
        if self.removed.is_empty() && self.failures.is_empty() {
            writeln!(
                f,
                "nothing to remove: no containers, networks or volumes of the demo"
            )?;
        } else {
            let count = |k| self.removed.iter().filter(|(kind, _)| *kind == k).count();
            writeln!(
                f,
                "clean: removed {} container(s), {} network(s), {} volume(s), {} image(s)",
                count(Kind::Container),
                count(Kind::Network),
                count(Kind::Volume),
                count(Kind::Image)
            )?;
        }
        Ok(())
    }
}

/// The label filters that select what belongs to this demo instance.
pub fn demo_label_filters(instance: &Instance) -> Vec<String> {
    vec![
        format!("{COMPOSE_PROJECT_LABEL}={}", instance.project),
        format!("{K3D_CLUSTER_LABEL}={}", instance.cluster),
    ]
}

fn label_filter(label: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![label.to_string()])])
}

/// Remove the demo: k3d's node containers first (they hang on the Compose
/// network, which Compose could otherwise not remove), then `compose down`,
/// then whatever is still labelled as the demo's. What was there before and
/// is gone after is reported as removed, whichever step removed it.
pub fn clean(sh: &Shell, api: &Api, instance: &Instance, images: bool) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let before = inventory(api, instance)?;
    let k3d_label = format!("{K3D_CLUSTER_LABEL}={}", instance.cluster);
    remove_containers(api, &k3d_label, &mut outcome)?;

    // Compose stops its containers gracefully (SIGTERM), so the sandbox can
    // finish its loop.
    if !before.is_empty() {
        compose_down(sh, &instance.project);
    }
    for label in demo_label_filters(instance) {
        remove_containers(api, &label, &mut outcome)?;
    }
    for label in demo_label_filters(instance) {
        remove_networks(api, &label, &mut outcome)?;
        remove_volumes(api, &label, &mut outcome)?;
    }
    let after = inventory(api, instance)?;
    outcome.removed = before.into_iter().filter(|x| !after.contains(x)).collect();
    if images {
        remove_images(api, &mut outcome)?;
    }
    Ok(outcome)
}

/// Every container, network and volume labelled as this instance's.
fn inventory(api: &Api, instance: &Instance) -> anyhow::Result<Vec<(Kind, String)>> {
    let mut found = Vec::new();
    for label in demo_label_filters(instance) {
        for name in list_container_names(api, &label)? {
            found.push((Kind::Container, name));
        }
        for name in list_network_names(api, &label)? {
            found.push((Kind::Network, name));
        }
        for name in list_volume_names(api, &label)? {
            found.push((Kind::Volume, name));
        }
    }
    found.dedup();
    Ok(found)
}

/// `docker compose down --volumes --remove-orphans` for the project, when
/// Compose and the compose file are there. Failure is not fatal: the label
/// sweep after it removes what Compose left.
fn compose_down(sh: &Shell, project: &str) {
    let Ok(compose) = docker::require_compose(sh) else {
        return;
    };
    if !sh.path_exists("compose.yml") {
        return;
    }
    let program = &compose.program;
    let prefix = &compose.prefix;
    let result = cmd!(
        sh,
        "{program} {prefix...} -p {project} -f compose.yml down --volumes --remove-orphans --timeout 20"
    )
    .quiet()
    .ignore_stdout()
    .ignore_stderr()
    .run();
    if let Err(e) = result {
        eprintln!("! compose down did not finish cleanly ({e}); removing what is left directly");
    }
}

fn list_container_names(api: &Api, label: &str) -> anyhow::Result<Vec<String>> {
    let list = api
        .block_on(api.docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(label)),
            ..Default::default()
        })))
        .with_context(|| format!("list containers labelled {label}"))?;
    Ok(list
        .into_iter()
        .map(|c| {
            c.names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .or(c.id)
                .unwrap_or_default()
        })
        .collect())
}

fn remove_containers(api: &Api, label: &str, outcome: &mut Outcome) -> anyhow::Result<()> {
    for name in list_container_names(api, label)? {
        // v: also the container's anonymous volumes (k3s keeps its state and
        // the broker's PersistentVolume data in those).
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match api.block_on(api.docker.remove_container(&name, Some(options))) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => outcome.failures.push(format!("container {name}: {e}")),
        }
    }
    Ok(())
}

fn list_network_names(api: &Api, label: &str) -> anyhow::Result<Vec<String>> {
    let networks = api
        .block_on(api.docker.list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(label)),
        })))
        .with_context(|| format!("list networks labelled {label}"))?;
    Ok(networks
        .into_iter()
        .filter_map(|n| n.name.or(n.id))
        .collect())
}

fn list_volume_names(api: &Api, label: &str) -> anyhow::Result<Vec<String>> {
    let volumes = api
        .block_on(api.docker.list_volumes(Some(ListVolumesOptions {
            filters: Some(label_filter(label)),
        })))
        .with_context(|| format!("list volumes labelled {label}"))?;
    Ok(volumes
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect())
}

fn remove_networks(api: &Api, label: &str, outcome: &mut Outcome) -> anyhow::Result<()> {
    for name in list_network_names(api, label)? {
        match api.block_on(api.docker.remove_network(&name)) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => outcome.failures.push(format!(
                "network {name}: {e} (containers that are not the demo's may still use it)"
            )),
        }
    }
    Ok(())
}

fn remove_volumes(api: &Api, label: &str, outcome: &mut Outcome) -> anyhow::Result<()> {
    for name in list_volume_names(api, label)? {
        match api.block_on(
            api.docker
                .remove_volume(&name, Some(RemoveVolumeOptions { force: true })),
        ) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => outcome.failures.push(format!("volume {name}: {e}")),
        }
    }
    Ok(())
}

fn remove_images(api: &Api, outcome: &mut Outcome) -> anyhow::Result<()> {
    let images = api
        .block_on(api.docker.list_images(Some(ListImagesOptions {
            all: false,
            filters: Some(label_filter(IMAGE_LABEL)),
            ..Default::default()
        })))
        .context("list the demo's images")?;
    for image in images {
        let name = image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        // Not forced: an image some other container still uses stays.
        match api.block_on(api.docker.remove_image(
            &image.id,
            Some(RemoveImageOptions {
                force: false,
                noprune: false,
                ..Default::default()
            }),
            None,
        )) {
            Ok(_) => outcome.removed.push((Kind::Image, name)),
            Err(e) if is_not_found(&e) => {}
            Err(e) => outcome.failures.push(format!("image {name}: {e}")),
        }
    }
    Ok(())
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_project_and_cluster() {
        let instance = Instance {
            project: "p".into(),
            cluster: "c".into(),
        };
        assert_eq!(
            demo_label_filters(&instance),
            vec!["com.docker.compose.project=p", "k3d.cluster=c"]
        );
    }

    #[test]
    fn outcome_reports_nothing_or_counts() {
        let empty = Outcome::default();
        assert!(empty.to_string().starts_with("nothing to remove"));
        let some = Outcome {
            removed: vec![
                (Kind::Container, "a".into()),
                (Kind::Container, "b".into()),
                (Kind::Volume, "v".into()),
            ],
            failures: vec![],
        };
        let text = some.to_string();
        assert!(text.contains("removed container a\n"));
        assert!(text.contains("removed 2 container(s), 0 network(s), 1 volume(s), 0 image(s)"));
    }
}
