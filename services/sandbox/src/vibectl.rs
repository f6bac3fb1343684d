//! How the sandbox drives vibectl: its configuration (model, the agent's
//! kubeconfig, custom instructions), `memory update` and `auto`. The LLM
//! API key is never passed here: vibectl reads `VIBECTL_ANTHROPIC_API_KEY`
//! from the environment it inherits, so the key appears in no argument list
//! and no file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::program::{Captured, Ended, Invocation, ProgramError};

/// The custom-instructions template shipped with the sandbox.
pub const INSTRUCTIONS_TEMPLATE: &str = include_str!("../agent-instructions.md");

/// The instructions with the target and the real limits filled in.
pub fn render_instructions(config: &Config) -> String {
    let cpu = config.kafka.cpu_limit;
    let cpu = if cpu.fract() == 0.0 {
        format!("{cpu:.0}")
    } else {
        format!("{cpu}")
    };
    [
        (
            "TARGET_LATENCY_MS",
            config.agent.target_latency_ms.to_string(),
        ),
        ("KAFKA_CPU_LIMIT", cpu),
        (
            "KAFKA_MEMORY_LIMIT_MB",
            config.kafka.memory_limit_mb.to_string(),
        ),
        (
            "NODE_MEMORY_MB",
            config.cluster.server_memory_mb.to_string(),
        ),
        (
            "AGENT_INTERVAL_S",
            config.agent.interval.as_secs().to_string(),
        ),
        ("AUTO_LIMIT", config.agent.auto_limit.to_string()),
    ]
    .iter()
    .fold(INSTRUCTIONS_TEMPLATE.to_string(), |text, (name, value)| {
        text.replace(&format!("{{{{{name}}}}}"), value)
    })
}

/// The request every `vibectl auto` run gets. vibectl 0.11.6's planner
/// prompt holds only the memory and this request, not the custom
/// instructions (those reach the memory-update and summary prompts), so
/// the goal and where to look must be here too. One line, short.
pub fn auto_request(config: &Config) -> String {
    format!(
        "Tune the Kafka broker (StatefulSet kafka, namespace kafka) so consumer p99 \
         latency stays under {} ms while producer throughput grows. Latest numbers: your \
         memory and ConfigMap kafka-latency-metrics. Change only the KAFKA_* env vars your \
         instructions list, one change at a time, within the limits they give.",
        config.agent.target_latency_ms
    )
}

/// One configuration call: arguments and what to feed on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigureStep {
    pub args: Vec<String>,
    pub stdin: Option<String>,
}

/// vibectl as the agent loop runs it.
#[derive(Debug, Clone)]
pub struct Vibectl {
    pub program: PathBuf,
    /// Kubeconfig for vibectl's kubectl (the agent's ServiceAccount).
    pub kubeconfig: Option<PathBuf>,
}

impl Vibectl {
    fn invocation(&self, args: &[String]) -> Invocation {
        let mut inv = Invocation::new(&self.program)
            .args(args)
            // Plain lines for agent.log: no colours, wide enough not to wrap.
            .env("NO_COLOR", "1")
            .env("TERM", "dumb")
            .env("COLUMNS", "200");
        if let Some(path) = &self.kubeconfig {
            inv = inv.env("KUBECONFIG", path);
        }
        inv
    }

    /// The vibectl calls that configure it, in order. The instructions go
    /// in on stdin: they are long and multi-line.
    pub fn configure_steps(
        model: &str,
        kubeconfig: Option<&Path>,
        instructions: &str,
    ) -> Vec<ConfigureStep> {
        let set = |key: &str, value: &str| ConfigureStep {
            args: ["config", "set", key, value]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            stdin: None,
        };
        let mut all = vec![set("llm.model", model)];
        if let Some(path) = kubeconfig {
            all.push(set("core.kubeconfig", &path.to_string_lossy()));
        }
        // agent.log should show the kubectl commands the agent ran, and
        // streaming redraws make no sense in a log file.
        all.push(set("display.show_kubectl", "true"));
        all.push(set("display.show_streaming", "false"));
        all.push(ConfigureStep {
            args: vec!["instructions".into(), "set".into()],
            stdin: Some(instructions.to_string()),
        });
        all
    }

    /// Run one configuration step.
    pub async fn configure(
        &self,
        step: &ConfigureStep,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Captured, ProgramError> {
        let mut inv = self.invocation(&step.args);
        if let Some(text) = &step.stdin {
            inv = inv.stdin(text.as_bytes());
        }
        inv.run(timeout, cancel).await
    }

    /// Run to the end, capturing the output.
    pub async fn run_args(
        &self,
        args: &[String],
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Captured, ProgramError> {
        self.invocation(args).run(timeout, cancel).await
    }

    /// `vibectl memory update <text>`.
    pub fn memory_update_args(text: &str) -> Vec<String> {
        vec!["memory".into(), "update".into(), text.to_string()]
    }

    /// `vibectl auto --limit <n> <request>`.
    pub fn auto_args(limit: u32, request: &str) -> Vec<String> {
        vec![
            "auto".into(),
            "--limit".into(),
            limit.to_string(),
            request.to_string(),
        ]
    }

    /// Run with output streamed line by line.
    pub async fn stream(
        &self,
        args: &[String],
        timeout: Duration,
        cancel: &CancellationToken,
        on_line: impl FnMut(&str),
    ) -> Result<Ended, ProgramError> {
        self.invocation(args).stream(timeout, cancel, on_line).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> Config {
        let env: HashMap<&str, &str> = [
            ("TARGET_LATENCY_MS", "7.5"),
            ("KAFKA_CPU_LIMIT", "1.5"),
            ("KAFKA_MEMORY_LIMIT_MB", "1536"),
            ("K3D_SERVER_MEMORY_MB", "3072"),
        ]
        .into();
        Config::from_env(&env).unwrap()
    }

    #[test]
    fn instructions_carry_the_target_and_the_real_limits() {
        let text = render_instructions(&config());
        assert!(!text.contains("{{"), "unfilled placeholder in:\n{text}");
        assert!(text.contains("under 7.5 ms"), "{text}");
        assert!(text.contains("1.5 CPU and 1536 MiB"), "{text}");
        assert!(text.contains("3072 MiB"), "{text}");
        assert!(text.contains("kafka-latency-metrics"));
        assert!(text.contains("kafka-configs.sh"));
    }

    #[test]
    fn configuration_sets_model_kubeconfig_and_instructions() {
        let all = Vibectl::configure_steps(
            "claude-3.7-sonnet",
            Some(Path::new("/k/agent.kubeconfig")),
            "be good\nalways",
        );
        assert_eq!(
            all[0].args,
            ["config", "set", "llm.model", "claude-3.7-sonnet"]
        );
        assert_eq!(
            all[1].args,
            ["config", "set", "core.kubeconfig", "/k/agent.kubeconfig"]
        );
        let last = all.last().unwrap();
        assert_eq!(last.args, ["instructions", "set"]);
        assert_eq!(last.stdin.as_deref(), Some("be good\nalways"));
        // Nothing anywhere carries a key.
        assert!(all.iter().flat_map(|s| &s.args).all(|a| !a.contains("key")));
        let without = Vibectl::configure_steps("m", None, "i");
        assert!(
            without
                .iter()
                .all(|s| s.args.get(2).map(String::as_str) != Some("core.kubeconfig"))
        );
    }

    #[test]
    fn run_arguments() {
        assert_eq!(
            Vibectl::auto_args(3, "goal"),
            ["auto", "--limit", "3", "goal"]
        );
        let request = auto_request(&config());
        assert!(request.contains("under 7.5 ms"), "{request}");
        assert!(request.contains("kafka-latency-metrics"), "{request}");
        assert!(!request.contains('\n'));
        assert_eq!(
            Vibectl::memory_update_args("Latest consumer p99 latency: 1.0 ms"),
            ["memory", "update", "Latest consumer p99 latency: 1.0 ms"]
        );
    }
}
