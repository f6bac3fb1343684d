//! The binary refuses bad settings before connecting: exit code 2 and one
//! line naming the variable, the value and what is accepted.

use std::process::Command;

/// Every variable the load generator reads.
const VARS: &[&str] = &[
    "KAFKA_BROKER",
    "KAFKA_TOPIC",
    "TOPIC_PARTITIONS",
    "STATUS_DIR",
    "MESSAGE_RATE_PER_SECOND",
    "MIN_MESSAGE_RATE",
    "MAX_MESSAGE_RATE",
    "MESSAGE_SIZE_BYTES",
    "TARGET_LATENCY_MS",
    "PARTITION_SKEW",
    "CONSUMER_GROUP",
    "METRICS_ADDR",
    "STATS_WINDOW_S",
    "LATENCY_MAX_AGE_S",
    "MESSAGE_LIMIT",
    "LINGER_MS",
];

/// (variable, bad value, the variable the message must name).
const BAD: &[(&str, &str, &str)] = &[
    ("KAFKA_BROKER", "kafka", "KAFKA_BROKER"),
    ("KAFKA_BROKER", "", "KAFKA_BROKER"),
    ("KAFKA_TOPIC", "a topic", "KAFKA_TOPIC"),
    ("KAFKA_TOPIC", "", "KAFKA_TOPIC"),
    ("TOPIC_PARTITIONS", "0", "TOPIC_PARTITIONS"),
    ("TOPIC_PARTITIONS", "many", "TOPIC_PARTITIONS"),
    ("STATUS_DIR", "", "STATUS_DIR"),
    ("MESSAGE_RATE_PER_SECOND", "0", "MESSAGE_RATE_PER_SECOND"),
    ("MESSAGE_RATE_PER_SECOND", "1k", "MESSAGE_RATE_PER_SECOND"),
    (
        "MESSAGE_RATE_PER_SECOND",
        "200000",
        "MESSAGE_RATE_PER_SECOND",
    ),
    ("MIN_MESSAGE_RATE", "0", "MIN_MESSAGE_RATE"),
    ("MIN_MESSAGE_RATE", "160000", "MIN_MESSAGE_RATE"),
    ("MAX_MESSAGE_RATE", "-3", "MAX_MESSAGE_RATE"),
    ("MAX_MESSAGE_RATE", "50", "MIN_MESSAGE_RATE"),
    ("MESSAGE_SIZE_BYTES", "0", "MESSAGE_SIZE_BYTES"),
    ("MESSAGE_SIZE_BYTES", "1.5", "MESSAGE_SIZE_BYTES"),
    ("TARGET_LATENCY_MS", "-1", "TARGET_LATENCY_MS"),
    ("TARGET_LATENCY_MS", "soon", "TARGET_LATENCY_MS"),
    ("PARTITION_SKEW", "2", "PARTITION_SKEW"),
    ("PARTITION_SKEW", "half", "PARTITION_SKEW"),
    ("CONSUMER_GROUP", " ", "CONSUMER_GROUP"),
    ("METRICS_ADDR", "9100", "METRICS_ADDR"),
    ("METRICS_ADDR", "0.0.0.0:x", "METRICS_ADDR"),
    ("STATS_WINDOW_S", "0", "STATS_WINDOW_S"),
    ("LATENCY_MAX_AGE_S", "0", "LATENCY_MAX_AGE_S"),
    ("MESSAGE_LIMIT", "lots", "MESSAGE_LIMIT"),
    ("LINGER_MS", "2000", "LINGER_MS"),
];

fn loadgen(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    for var in VARS {
        cmd.env_remove(var);
    }
    let out = cmd.args(args).envs(env.iter().copied()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_bad_setting_exits_2_with_one_line_for_both_roles() {
    let mut covered: Vec<&str> = Vec::new();
    for role in ["produce", "consume"] {
        for (var, value, named) in BAD {
            let (code, stderr) = loadgen(&[role], &[(var, value)]);
            assert_eq!(code, Some(2), "{role} {var}={value:?}: {stderr}");
            assert_eq!(
                stderr.lines().count(),
                1,
                "{role} {var}={value:?}: {stderr}"
            );
            let prefix = format!("error: invalid {named}=");
            assert!(
                stderr.starts_with(&prefix),
                "{role} {var}={value:?}: {stderr}"
            );
            assert!(stderr.contains("expected"), "{stderr}");
            covered.push(var);
        }
    }
    for var in VARS {
        assert!(covered.contains(var), "no bad value tested for {var}");
    }
}

#[test]
fn flags_override_variables_and_are_validated_the_same_way() {
    let (code, stderr) = loadgen(
        &["produce", "--rate", "fast"],
        &[("MESSAGE_RATE_PER_SECOND", "500")],
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr.trim(),
        "error: invalid MESSAGE_RATE_PER_SECOND=\"fast\": expected a number from 1 to 10000000"
    );
    let (code, stderr) = loadgen(&["consume", "--partition-skew", "3"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("PARTITION_SKEW=\"3\""), "{stderr}");
}

#[test]
fn help_lists_roles_and_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["produce", "consume", "healthcheck"] {
        assert!(help.contains(word), "{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["produce", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in VARS {
        assert!(
            help.contains(var),
            "produce --help does not mention {var}:\n{help}"
        );
    }
}
