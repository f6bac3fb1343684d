//! The binary as Compose runs it: a separate process against a broker on a
//! real socket (the mock cluster listens on loopback), stopped by SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::mocking::MockCluster;

use testkit::free_port;

use crate::support::{unique, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_both_roles_cleanly_with_exit_0() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let topic = unique("sigterm");
    mock.create_topic(&topic, 2, 1).unwrap();
    for role in ["consume", "produce"] {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .arg(role)
            .env("KAFKA_BROKER", &bootstrap)
            .env("KAFKA_TOPIC", &topic)
            .env("CONSUMER_GROUP", unique("group"))
            .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("STATS_WINDOW_S", "1")
            .env("STATUS_DIR", "/nonexistent-loadgen-status")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/stats");
        let http = reqwest::Client::new();
        wait_for(
            &format!("loadgen {role} to connect"),
            Duration::from_secs(30),
            || async {
                let stats: demo_common::stats::LoadStats =
                    http.get(&url).send().await.ok()?.json().await.ok()?;
                (stats.connected && (role == "consume" || stats.messages_total > 0)).then_some(())
            },
        )
        .await;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let output = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await
        .unwrap_or_else(|_| panic!("loadgen {role} did not exit within 20 s of SIGTERM"))
        .unwrap()
        .unwrap();
        let log = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{role}:\n{log}");
        assert!(log.contains("received SIGTERM"), "{log}");
        let stopped = if role == "produce" {
            "producer stopped"
        } else {
            "consumer stopped"
        };
        assert!(log.contains(stopped), "{log}");
        if role == "produce" {
            // Everything sent was delivered before exit: "N sent, N acknowledged, 0 failed".
            let line = log.lines().find(|l| l.contains(stopped)).unwrap();
            let words: Vec<&str> = line.split_whitespace().collect();
            let count = |label: &str| {
                words
                    .windows(2)
                    .find(|w| w[1].trim_end_matches(',') == label)
                    .map(|w| w[0].to_string())
                    .unwrap()
            };
            assert_eq!(count("sent"), count("acknowledged"), "{line}");
            assert_eq!(count("failed"), "0", "{line}");
        }
    }
}
