//! Bad settings stop the binary before it starts: exit code 2 and one line
//! naming the variable, the value and what is accepted.

use std::process::Command;

const VARS: &[&str] = &[
    "PRODUCER_STATS_URL",
    "CONSUMER_STATS_URL",
    "STATUS_DIR",
    "TARGET_LATENCY_MS",
    "POLL_INTERVAL_S",
    "STALE_AFTER_S",
    "HISTORY_MINUTES",
    "DASHBOARD_ADDR",
];

#[test]
fn every_bad_setting_exits_2_with_one_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "PRODUCER_STATS_URL",
            "producer:9100/stats",
            "an http:// or https:// URL",
        ),
        ("PRODUCER_STATS_URL", "", "an http:// or https:// URL"),
        (
            "CONSUMER_STATS_URL",
            "ftp://consumer/stats",
            "an http:// or https:// URL",
        ),
        ("STATUS_DIR", " ", "a non-empty value"),
        ("TARGET_LATENCY_MS", "fast", "a number from 0.1 to 60000"),
        ("TARGET_LATENCY_MS", "0", "a number from 0.1 to 60000"),
        ("POLL_INTERVAL_S", "0", "a number from 0.5 to 600"),
        ("POLL_INTERVAL_S", "-5", "a number from 0.5 to 600"),
        ("STALE_AFTER_S", "soon", "a number from 1 to 86400"),
        ("HISTORY_MINUTES", "0", "a number from 1 to 720"),
        ("DASHBOARD_ADDR", "8080", "an address like 0.0.0.0:9100"),
        (
            "DASHBOARD_ADDR",
            "localhost:8080",
            "an address like 0.0.0.0:9100",
        ),
    ];
    for (var, value, expected) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_overseer"));
        for v in VARS {
            cmd.env_remove(v);
        }
        let out = cmd.env(var, value).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value:?}: {stderr}");
        assert_eq!(
            stderr.trim(),
            format!("error: invalid {var}={value:?}: expected {expected}"),
            "{var}={value:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1);
    }
}

#[test]
fn healthcheck_fails_without_a_dashboard() {
    let port = testkit::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_overseer"))
        .arg("healthcheck")
        .env("DASHBOARD_ADDR", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("error: GET http://127.0.0.1:{port}/healthz")),
        "{stderr}"
    );
}
