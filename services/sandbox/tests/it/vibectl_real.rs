//! The agent loop with the real vibectl (from PyPI, found via
//! `VIBECTL_BIN`), only the LLM replaced by a scripted OpenAI-compatible
//! endpoint (testkit::llm). This checks the loop's contract with vibectl:
//! configuration commands it accepts, `memory update` carrying the number,
//! `vibectl auto --limit 1` completing a planner round.

use std::path::PathBuf;
use std::time::Duration;

use demo_common::status::{AGENT_AUTO_END, AGENT_NOTE, LATENCY_FILE, SHUTDOWN_FILE};
use testkit::exe::path_with;
use testkit::llm::{ScriptedLlm, is_planner_request, request_text};

use crate::{Sandbox, agent_log, files_under, wait_until};

const API_KEY: &str = "sk-ant-real-vibectl-test-never-stored-0815";

/// The real vibectl, or `None` (the test skips, or fails under CI).
fn real_vibectl() -> Option<PathBuf> {
    let path = std::env::var_os("VIBECTL_BIN").map(PathBuf::from)?;
    path.is_file().then_some(path)
}

#[test]
fn the_agent_loop_drives_the_real_vibectl_against_a_scripted_llm() {
    let vibectl = real_vibectl();
    if !testkit::require(
        "the real vibectl 0.11.6",
        vibectl.is_some(),
        "run `cargo xtask test`, which installs it into target/tools/vibectl-venv, \
         or set VIBECTL_BIN to a vibectl executable",
    ) {
        return;
    }
    let vibectl = vibectl.unwrap();
    let llm = ScriptedLlm::start().unwrap();
    let home = tempfile::tempdir().unwrap();
    let llm_dir = home.path().join("llm");
    llm.write_llm_config(&llm_dir, "scripted").unwrap();
    let status = tempfile::tempdir().unwrap();
    std::fs::write(status.path().join(LATENCY_FILE), "7.3\n").unwrap();
    // vibectl's own directory first, so `vibectl` resolves to it.
    let path = path_with(vibectl.parent().unwrap());
    let env = vec![
        ("STATUS_DIR", status.path().display().to_string()),
        ("VIBECTL_MODEL", "scripted".to_string()),
        ("LLM_USER_PATH", llm_dir.display().to_string()),
        ("AGENT_INTERVAL_S", "1".to_string()),
        ("AGENT_AUTO_LIMIT", "1".to_string()),
        ("AGENT_AUTO_TIMEOUT_S", "120".to_string()),
        ("VIBECTL_ANTHROPIC_API_KEY", API_KEY.to_string()),
    ];
    let mut run = Sandbox::start(&["agent"], home.path(), &path, &env);

    let requests = llm.wait_for_requests(Duration::from_secs(180), |reqs| {
        reqs.iter()
            .any(|r| request_text(r).contains("Latest consumer p99 latency: 7.3 ms"))
            && reqs.iter().any(is_planner_request)
    });
    assert!(
        requests
            .iter()
            .any(|r| request_text(r).contains("Latest consumer p99 latency: 7.3 ms")),
        "no memory update reached the LLM; {} requests; sandbox log:\n{}\nagent.log: {:#?}",
        requests.len(),
        run.output(),
        agent_log(status.path())
    );
    let planner = requests.iter().find(|r| is_planner_request(r));
    assert!(planner.is_some(), "no planner call from vibectl auto");
    // The planner sees the goal through the auto request; the custom
    // instructions (knobs, limits) reach the memory-update prompt.
    let planner_text = request_text(planner.unwrap());
    assert!(
        planner_text.contains("Tune the Kafka broker")
            && planner_text.contains("kafka-latency-metrics"),
        "the auto request is missing from the planner prompt:\n{planner_text}"
    );
    let update = requests
        .iter()
        .find(|r| request_text(r).contains("Latest consumer p99 latency: 7.3 ms"))
        .unwrap();
    assert!(
        request_text(update).contains("REAL LIMITS")
            && request_text(update).contains("2 CPU and 2048 MiB"),
        "the custom instructions are missing from the memory-update prompt"
    );
    wait_until("vibectl auto to finish", Duration::from_secs(180), || {
        agent_log(status.path())
            .iter()
            .any(|l| l.kind == AGENT_AUTO_END)
    });
    std::fs::write(status.path().join(SHUTDOWN_FILE), "").unwrap();
    assert!(
        run.wait(Duration::from_secs(60)).success(),
        "{}",
        run.output()
    );

    let log = agent_log(status.path());
    let end = log.iter().find(|l| l.kind == AGENT_AUTO_END).unwrap();
    assert!(end.text.starts_with("finished"), "{log:#?}");
    let config_failures: Vec<_> = log
        .iter()
        .filter(|l| {
            l.kind == AGENT_NOTE && l.text.contains("failed") && l.text.starts_with("vibectl")
        })
        .collect();
    assert!(config_failures.is_empty(), "{config_failures:#?}");
    // The key went to vibectl through its environment only.
    for file in files_under(home.path())
        .into_iter()
        .chain(files_under(status.path()))
    {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(API_KEY),
            "the API key is in {}",
            file.display()
        );
    }
    println!(
        "real vibectl: {} LLM requests, agent.log {} lines",
        llm.requests().len(),
        log.len()
    );
}
