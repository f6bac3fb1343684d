//! `cargo xtask down`: stop the services but keep the k3d cluster, the network
//! and the status volume, so the next `demo` resumes from the sandbox's phase
//! files instead of creating the cluster again.

use std::path::PathBuf;

use anyhow::Context;
use xshell::Shell;

use crate::docker;
use crate::project::Instance;
use crate::stack::Stack;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub instance: Instance,
    /// Compose override file(s) the stack was started with.
    #[arg(long = "compose-override", value_name = "FILE")]
    pub overrides: Vec<PathBuf>,
}

impl Args {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let stack = Stack::new(
            docker::require_compose(sh)?,
            &self.instance,
            &self.overrides,
        );
        // `rm --stop` rather than `down`: down would also try to remove the
        // network, which the k3d nodes are still attached to.
        stack
            .cmd(sh, &["rm", "--stop", "--force"])
            .run()
            .context("stop the services")?;
        println!(
            "stopped. The k3d cluster (k3d-{}-*) and the status volume are kept: \
             `cargo xtask demo` resumes, `cargo xtask clean` removes them.",
            self.instance.cluster
        );
        Ok(())
    }
}
