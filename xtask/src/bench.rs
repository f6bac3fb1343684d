//! `cargo xtask bench [loadgen]`: the benchmarks, which compare against
//! baselines measured in the same run and print the ratios (no timed tests).

use anyhow::Context;
use xshell::{Shell, cmd};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which benchmark: `loadgen` (producer CPU per message and maximum rate
    /// against a raw rdkafka loop and a Python confluent-kafka producer, all on
    /// one tansu broker).
    #[arg(default_value = "loadgen", value_parser = ["loadgen"])]
    pub which: String,
}

impl Args {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let tools = crate::test::find_tools(sh);
        let mut bench = cmd!(sh, "cargo bench --package loadgen");
        if let Some(tansu) = &tools.tansu {
            bench = bench.env("TANSU_BIN", tansu);
        }
        bench.run().context("run the loadgen benchmark")?;
        Ok(())
    }
}
