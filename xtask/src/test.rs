//! `cargo xtask test`: the one test command. On a fresh machine it first gets
//! what the tests need (each step skipped when already there), then runs the
//! project checks and the whole workspace's tests.
//!
//! Prepared: Debian packages (chromium for the dashboard test, debootstrap for
//! the base image), a local `debian:bookworm-slim` base image when the daemon
//! has none and cannot pull one, the tansu test broker, and vibectl in a
//! virtualenv.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::docker::Api;

/// The image name the Dockerfiles build on; made locally when absent.
pub const BASE_IMAGE: &str = "debian:bookworm-slim";
const TANSU_VERSION: &str = "0.6.0";
const VIBECTL_VERSION: &str = "0.11.6";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do not install or build anything first; use what is there.
    #[arg(long)]
    pub no_prepare: bool,
    /// Skip `cargo fmt --check` and `cargo clippy`.
    #[arg(long)]
    pub no_lint: bool,
    /// Arguments passed on to `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

/// Where the tools the tests use ended up.
#[derive(Debug, Default)]
pub struct Tools {
    pub tansu: Option<PathBuf>,
    pub vibectl: Option<PathBuf>,
    pub chromium: Option<PathBuf>,
}

impl Args {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let started = Instant::now();
        let tools = if self.no_prepare {
            find_tools(sh)
        } else {
            prepare(sh).context("prepare what the tests need")?
        };
        if !self.no_lint {
            step("cargo fmt --check");
            cmd!(sh, "cargo fmt --all -- --check")
                .run()
                .context("formatting differs: run `cargo fmt --all`")?;
            step("cargo clippy");
            cmd!(
                sh,
                "cargo clippy --workspace --all-targets --quiet -- -D warnings"
            )
            .run()
            .context("clippy found problems")?;
        }
        // Tests start our binaries as separate processes; build them once here.
        step("cargo build --workspace --bins");
        cmd!(sh, "cargo build --workspace --bins --quiet")
            .run()
            .context("build the workspace's binaries")?;
        step("cargo test --workspace");
        let extra = &self.cargo_test_args;
        let mut test = cmd!(sh, "cargo test --workspace {extra...}");
        for (var, path) in [
            ("TANSU_BIN", &tools.tansu),
            ("VIBECTL_BIN", &tools.vibectl),
            ("CHROMIUM_BIN", &tools.chromium),
        ] {
            if let Some(path) = path {
                test = test.env(var, path);
            }
        }
        test.run().context("tests failed")?;
        println!("== all tests passed in {:.0?}", started.elapsed());
        Ok(())
    }
}

fn step(what: &str) {
    println!("== {what}");
}

/// Get everything the tests need, skipping what is already there.
pub fn prepare(sh: &Shell) -> anyhow::Result<Tools> {
    let docker = Api::connect().ok();
    let need_base_image = match &docker {
        Some(api) => !image_exists(api, BASE_IMAGE)?,
        None => false,
    };
    let mut packages = vec![("chromium", "chromium")];
    if need_base_image {
        packages.push(("debootstrap", "debootstrap"));
    }
    ensure_debian_packages(sh, &packages)?;
    if let Some(api) = &docker {
        ensure_base_image(sh, api).context("make the base image")?;
    } else {
        step(
            "base image: skipped, Docker is not available (Docker tests will skip, or fail under CI=true)",
        );
    }
    ensure_tansu(sh).context("install the tansu test broker")?;
    ensure_vibectl(sh).context("install vibectl")?;
    Ok(find_tools(sh))
}

/// Locate the tools without installing anything.
pub fn find_tools(sh: &Shell) -> Tools {
    Tools {
        tansu: find_tansu(sh),
        vibectl: Some(vibectl_venv(sh).join("bin/vibectl")).filter(|p| p.exists()),
        chromium: which::which("chromium").ok(),
    }
}

fn image_exists(api: &Api, name: &str) -> anyhow::Result<bool> {
    match api.block_on(api.docker.inspect_image(name)) {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("inspect image {name}")),
    }
}

/// Install missing Debian packages; `(command, package)` pairs.
fn ensure_debian_packages(sh: &Shell, wanted: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(command, _)| which::which(command).is_err())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        step(&format!(
            "debian packages: {} present",
            wanted
                .iter()
                .map(|(_, p)| *p)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Ok(());
    }
    if which::which("apt-get").is_err() {
        bail!(
            "the tests need {} and this machine has no apt-get: install them by hand",
            missing.join(", ")
        );
    }
    step(&format!(
        "debian packages: installing {}",
        missing.join(", ")
    ));
    let install = || {
        as_root(sh, "apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
    };
    if install().is_err() {
        // A fresh machine may have no package lists yet.
        as_root(sh, "apt-get").args(["update", "-q"]).run()?;
        install().with_context(|| format!("apt-get install {}", missing.join(" ")))?;
    }
    Ok(())
}

/// Make `debian:bookworm-slim` from a debootstrap tree when the daemon lacks
/// it and cannot pull it. Never replaces an image that exists.
fn ensure_base_image(sh: &Shell, api: &Api) -> anyhow::Result<()> {
    if image_exists(api, BASE_IMAGE)? {
        step(&format!("base image {BASE_IMAGE}: present"));
        return Ok(());
    }
    if cmd!(sh, "docker pull {BASE_IMAGE}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
    {
        step(&format!("base image {BASE_IMAGE}: pulled"));
        return Ok(());
    }
    step(&format!(
        "base image {BASE_IMAGE}: cannot pull, making it with debootstrap (about a minute)"
    ));
    let root = tempfile::tempdir().context("make a directory for debootstrap")?;
    let dir = root.path().join("rootfs");
    as_root(sh, "debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg("http://deb.debian.org/debian")
        .quiet()
        .ignore_stdout()
        .run()
        .context("debootstrap bookworm")?;
    duct::cmd!("tar", "-C", &dir, "-c", ".")
        .pipe(duct::cmd!("docker", "import", "-", BASE_IMAGE))
        .stdout_null()
        .run()
        .context("docker import the debootstrap tree")?;
    // debootstrap's tree belongs to root; the tempdir guard cannot remove it.
    let _ = as_root(sh, "rm").arg("-rf").arg(&dir).quiet().run();
    Ok(())
}

/// `program` run as root: directly when we are root, else through sudo.
fn as_root<'a>(sh: &'a Shell, program: &str) -> xshell::Cmd<'a> {
    if rustix::process::geteuid().is_root() {
        cmd!(sh, "{program}")
    } else {
        cmd!(sh, "sudo {program}")
    }
}

fn find_tansu(sh: &Shell) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TANSU_BIN").map(PathBuf::from),
        which::which("tansu").ok(),
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/tansu")),
    ];
    candidates.into_iter().flatten().find(|p| {
        p.exists()
            && cmd!(sh, "{p} --version")
                .quiet()
                .ignore_stderr()
                .read()
                .is_ok_and(|v| v.contains(TANSU_VERSION))
    })
}

/// `cargo install tansu` (about 11 minutes on two cores; once per machine).
fn ensure_tansu(sh: &Shell) -> anyhow::Result<()> {
    if let Some(path) = find_tansu(sh) {
        step(&format!(
            "tansu {TANSU_VERSION}: present at {}",
            path.display()
        ));
        return Ok(());
    }
    step(&format!(
        "tansu {TANSU_VERSION}: installing with cargo install (about 11 minutes)"
    ));
    cmd!(
        sh,
        "cargo install tansu --version {TANSU_VERSION} --features dynostore --locked"
    )
    .run()?;
    Ok(())
}

fn vibectl_venv(sh: &Shell) -> PathBuf {
    sh.current_dir().join("target/tools/vibectl-venv")
}

/// vibectl from PyPI in a virtualenv under `target/tools`.
fn ensure_vibectl(sh: &Shell) -> anyhow::Result<()> {
    let venv = vibectl_venv(sh);
    let vibectl = venv.join("bin/vibectl");
    if vibectl.exists() {
        step(&format!("vibectl {VIBECTL_VERSION}: present"));
        return Ok(());
    }
    step(&format!(
        "vibectl {VIBECTL_VERSION}: installing into {}",
        venv.display()
    ));
    cmd!(sh, "python3 -m venv {venv}").run()?;
    let pip = venv.join("bin/pip");
    let mut install = cmd!(sh, "{pip} install --quiet vibectl=={VIBECTL_VERSION}");
    // pip trusts its own CA list, not the system's; machines behind a
    // TLS-intercepting proxy (the test machines) have the proxy's CA only in
    // the system bundle.
    let system_bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if std::env::var_os("PIP_CERT").is_none() && system_bundle.exists() {
        install = install.env("PIP_CERT", system_bundle);
    }
    install.run()?;
    Ok(())
}
