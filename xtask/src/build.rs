//! `cargo xtask build`: build the demo's images through the Docker API, with
//! each build step shown as it happens.
//!
//! Every image gets the same build context (a tar made here): the source tree
//! without `target/` and `.git/`, `bin/<component>/` (the host-built binary, or
//! empty) and `extra-ca.crt` (an extra CA bundle, or empty). Identical contexts
//! let the legacy builder's cache compile the workspace once for all images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use xshell::{Shell, cmd};

use crate::docker::Api;
use crate::project::{DEFAULT_PROJECT, IMAGE_LABEL};

/// Image tag: the workspace version, so images match the source that made them.
pub const IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");

/// One image of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// Short name; also the binary's name and the image name's suffix.
    pub name: &'static str,
    pub dockerfile: &'static str,
}

/// Every image, in build order.
pub const COMPONENTS: [Component; 3] = [
    Component {
        name: "loadgen",
        dockerfile: "services/loadgen/Dockerfile",
    },
    Component {
        name: "overseer",
        dockerfile: "services/overseer/Dockerfile",
    },
    Component {
        name: "sandbox",
        dockerfile: "services/sandbox/Dockerfile",
    },
];

/// `<prefix>-<component>:<version>`, the name compose.yml refers to.
pub fn image_name(prefix: &str, component: &str) -> String {
    format!("{prefix}-{component}:{IMAGE_TAG}")
}

/// Where the binaries in the images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Binaries {
    /// Compile in a Rust builder stage inside Docker (needs the rust image).
    Docker,
    /// Copy binaries built on this host with cargo (Linux hosts whose glibc is
    /// no newer than Debian bookworm's; the test machines).
    Host,
}

#[derive(clap::Args, Debug, Clone)]
#[group(skip)]
pub struct Args {
    /// Where the binaries come from.
    #[arg(long, value_enum, env = "DEMO_BINARIES", default_value = "docker")]
    pub binaries: Binaries,
    /// Cargo profile of host-built binaries (`--binaries host`).
    #[arg(long, env = "DEMO_HOST_PROFILE", default_value = "release")]
    pub host_profile: String,
    /// A PEM bundle of extra CA certificates to trust inside the images, for
    /// networks behind a TLS-intercepting proxy.
    #[arg(long, env = "DEMO_EXTRA_CA")]
    pub extra_ca: Option<PathBuf>,
    /// Leave k3d and kubectl out of the sandbox image (they are downloaded from
    /// github.com and dl.k8s.io). Such an image can only run the agent loop.
    #[arg(long, env = "DEMO_WITHOUT_RELEASE_DOWNLOADS")]
    pub without_release_downloads: bool,
    /// Image name prefix.
    #[arg(long, env = "DEMO_IMAGE_PREFIX", default_value = DEFAULT_PROJECT)]
    pub image_prefix: String,
    /// Show every line the builder prints, not just the steps.
    #[arg(long, short)]
    pub verbose: bool,
}

impl Args {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let api = Api::connect().context("connect to Docker")?;
        build_all(sh, &api, &self)
    }
}

/// Build every image.
pub fn build_all(sh: &Shell, api: &Api, args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.binaries == Binaries::Host {
        build_host_binaries(sh, &args.host_profile).context("build the binaries on the host")?;
    }
    let context = make_context(sh, args).context("make the build context")?;
    for component in COMPONENTS {
        build_image(api, args, component, &context)
            .with_context(|| format!("build the {} image", component.name))?;
    }
    println!(
        "built {} images in {:.0?}",
        COMPONENTS.len(),
        started.elapsed()
    );
    Ok(())
}

fn build_host_binaries(sh: &Shell, profile: &str) -> anyhow::Result<()> {
    // Every binary of the workspace, as `cargo xtask test` builds them: the
    // same feature set, so the two never make cargo relink each other's.
    cmd!(sh, "cargo build --profile {profile} --workspace --bins").run()?;
    Ok(())
}

/// Cargo names the output folder `debug` for the `dev` profile.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

/// The tar every image is built from.
fn make_context(sh: &Shell, args: &Args) -> anyhow::Result<Vec<u8>> {
    let root = sh.current_dir();
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    // The legacy builder rejects GNU sparse entries (linkers leave sparse files).
    tar.sparse(false);
    add_tree(&mut tar, &root, Path::new("")).context("add the source tree")?;

    for component in COMPONENTS {
        let dir = format!("bin/{}/", component.name);
        append_dir(&mut tar, &dir)?;
        if args.binaries == Binaries::Host {
            let built = root
                .join("target")
                .join(profile_dir(&args.host_profile))
                .join(component.name);
            tar.append_path_with_name(&built, format!("{dir}{}", component.name))
                .with_context(|| format!("add {}", built.display()))?;
        }
    }

    let ca = match &args.extra_ca {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("read the extra CA bundle {}", path.display()))?,
        None => Vec::new(),
    };
    if args.extra_ca.is_some() && !String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE") {
        bail!("--extra-ca file holds no PEM certificate (no BEGIN CERTIFICATE line)");
    }
    append_bytes(&mut tar, "extra-ca.crt", &ca, 0o644)?;
    tar.into_inner().context("finish the context tar")
}

/// Add the repository's source files: everything but build output, VCS data
/// and editor leftovers.
fn add_tree(tar: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &Path) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("list {}", root.join(rel).display()))?;
    // A stable order keeps the context (and so the build cache) identical.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let path = rel.join(&name);
        let skip = rel.as_os_str().is_empty()
            && matches!(
                name.to_str(),
                Some("target" | ".git" | "bin" | "extra-ca.crt")
            );
        if skip || name.to_string_lossy().ends_with(".swp") {
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            add_tree(tar, root, &path)?;
        } else if file_type.is_file() {
            tar.append_path_with_name(entry.path(), &path)
                .with_context(|| format!("add {}", path.display()))?;
        }
    }
    Ok(())
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, name: &str) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    tar.append_data(&mut header, name, std::io::empty())
        .with_context(|| format!("add {name}"))
}

fn append_bytes(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    tar.append_data(&mut header, name, data)
        .with_context(|| format!("add {name}"))
}

/// Build one image, showing the builder's steps; on failure, show its last
/// lines and the error.
fn build_image(api: &Api, args: &Args, component: Component, context: &[u8]) -> anyhow::Result<()> {
    let tag = image_name(&args.image_prefix, component.name);
    let target = match args.binaries {
        Binaries::Docker => "runtime",
        Binaries::Host => "prebuilt",
    };
    let mut buildargs = HashMap::new();
    if component.name == "sandbox" {
        buildargs.extend(sandbox_versions()?);
    }
    if args.without_release_downloads {
        buildargs.insert("WITH_RELEASE_DOWNLOADS".to_string(), "0".to_string());
    }
    let options = BuildImageOptions {
        dockerfile: component.dockerfile.to_string(),
        t: Some(tag.clone()),
        target: target.to_string(),
        rm: true,
        forcerm: true,
        buildargs: Some(buildargs),
        labels: Some(HashMap::from([(
            IMAGE_LABEL.to_string(),
            component.name.to_string(),
        )])),
        ..Default::default()
    };
    let bar = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template(
            "{spinner} {prefix} [{elapsed}] {wide_msg}",
        )?)
        .with_prefix(component.name);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(format!("building {tag}"));
    let body = bollard::body_full(context.to_vec().into());
    let mut recent: Vec<String> = Vec::new();
    let mut failure: Option<String> = None;
    api.block_on(async {
        let mut stream = api.docker.build_image(options, None, Some(body));
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        failure = Some(detail);
                    }
                    for line in info.stream.iter().flat_map(|s| s.lines()) {
                        let line = line.trim_end();
                        if line.is_empty() {
                            continue;
                        }
                        if line.starts_with("Step ") {
                            show(&bar, format!("  {}: {line}", component.name));
                            bar.set_message(line.to_string());
                        } else if args.verbose {
                            show(&bar, format!("  {}:   {line}", component.name));
                        }
                        recent.push(line.to_string());
                        if recent.len() > 25 {
                            recent.remove(0);
                        }
                    }
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
    });
    bar.finish_and_clear();
    if let Some(error) = failure {
        eprintln!("--- last lines of the {} build ---", component.name);
        for line in &recent {
            eprintln!("  {line}");
        }
        bail!("{error}");
    }
    println!("✓ {tag}");
    Ok(())
}

/// The sandbox's pinned versions and checksums (`KEY=VALUE` lines), passed
/// to its Dockerfile as build arguments.
fn sandbox_versions() -> anyhow::Result<Vec<(String, String)>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/sandbox/versions.env");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(demo_common::config::parse_key_values(&text))
}

/// Print a line above the spinner, or plainly when there is no terminal
/// (CI logs), where indicatif draws nothing.
pub(crate) fn show(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_carry_prefix_and_version() {
        assert_eq!(
            image_name("kafka-throughput-demo", "loadgen"),
            format!(
                "kafka-throughput-demo-loadgen:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn every_component_has_its_dockerfile_with_both_paths() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for c in COMPONENTS {
            let text = std::fs::read_to_string(root.join(c.dockerfile)).unwrap();
            assert!(text.contains("AS prebuilt"), "{}", c.dockerfile);
            assert!(text.contains("AS runtime"), "{}", c.dockerfile);
            assert!(text.contains(&format!("COPY bin/{}/ /usr/local/bin/", c.name)));
            // The legacy builder builds every stage up to the target, so the
            // host-binaries path must not have the Rust stage before it.
            let prebuilt = text.find("AS prebuilt").unwrap();
            let rust = text.find("FROM rust:").unwrap();
            assert!(
                prebuilt < rust,
                "{}: prebuilt must come before the rust stage",
                c.dockerfile
            );
            assert!(!text.contains(":latest"), "{}", c.dockerfile);
        }
    }

    /// The Dockerfile's ARG defaults (what a plain `docker build` uses) equal
    /// the pins xtask passes.
    #[test]
    fn sandbox_dockerfile_defaults_equal_versions_env() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dockerfile = std::fs::read_to_string(root.join("services/sandbox/Dockerfile")).unwrap();
        let pins = sandbox_versions().unwrap();
        let mut checked = 0;
        for line in dockerfile.lines() {
            let Some((key, default)) = line.strip_prefix("ARG ").and_then(|a| a.split_once('='))
            else {
                continue;
            };
            if key == "WITH_RELEASE_DOWNLOADS" {
                continue;
            }
            let pinned = pins.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            assert_eq!(pinned, Some(default), "ARG {key} differs from versions.env");
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} ARGs checked");
    }

    #[test]
    fn profile_dirs() {
        assert_eq!(profile_dir("dev"), "debug");
        assert_eq!(profile_dir("release"), "release");
    }
}
