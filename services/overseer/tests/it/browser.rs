//! The dashboard in headless Chromium, fed by the live setup while the test
//! plays the sandbox (phases, broker settings, an agent run that changes a
//! setting): once the charts are drawn, the numbers on the page equal the
//! API's for the poll the page shows, and a screenshot is saved under
//! target/test-output/.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use demo_common::status::{self, AgentLogLine, BrokerSettings, Phase};

use testkit::wait_for;

use crate::support::{Live, Options, get_json};

const TARGET_MS: f64 = 20.0;

fn chromium() -> Option<PathBuf> {
    std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .or_else(|| which::which("chromium").ok())
}

fn headless(chromium: &Path) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1400,1000",
        // The page polls every 2 s; this lets its first poll and drawing
        // finish before the DOM or the screenshot is taken.
        "--virtual-time-budget=5000",
    ]);
    cmd
}

/// The page's number formats (static/app.js `fmtMs`, `fmtRate`).
fn fmt_ms(x: Option<f64>) -> String {
    match x {
        None => "—".into(),
        Some(x) if x < 10.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.1}"),
    }
}

fn fmt_rate(x: Option<f64>) -> String {
    let Some(x) = x else { return "—".into() };
    let digits = (x.round() as i64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text content of the element with `id` in a dumped DOM (a leaf element).
fn text_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find('<').unwrap();
    dom[start..end].to_string()
}

fn attr_of(dom: &str, id: &str, attr: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let tag_start = dom[..at].rfind('<').unwrap();
    let tag = &dom[tag_start..at + dom[at..].find('>').unwrap()];
    let key = format!("{attr}=\"");
    let from = tag
        .find(&key)
        .map(|i| i + key.len())
        .unwrap_or_else(|| panic!("no {attr} on #{id}"));
    tag[from..from + tag[from..].find('"').unwrap()].to_string()
}

fn write_broker_settings(dir: &Path, io_threads: &str) {
    let env: BTreeMap<String, String> = [
        ("KAFKA_NUM_IO_THREADS", io_threads),
        ("KAFKA_NUM_NETWORK_THREADS", "3"),
        ("KAFKA_HEAP_OPTS", "-Xms512m -Xmx512m"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = BrokerSettings {
        observed_at_ms: status::now_ms(),
        env,
        resources: [
            ("limits.cpu".to_string(), "2".to_string()),
            ("limits.memory".to_string(), "1Gi".to_string()),
        ]
        .into(),
        ready_replicas: 1,
        replicas: 1,
    };
    status::write_atomic(
        dir,
        status::BROKER_SETTINGS_FILE,
        &serde_json::to_vec(&settings).unwrap(),
    )
    .unwrap();
}

fn log(dir: &Path, kind: &str, text: &str) {
    status::append_agent_log(dir, &[AgentLogLine::new(kind, text)]).unwrap();
}

/// How many history points carry a latency.
fn latency_points(live: &Live) -> Option<usize> {
    let hist: serde_json::Value = get_json(&live.url("/api/history"))?;
    Some(
        hist["points"]
            .as_array()?
            .iter()
            .filter(|p| p["p99_ms"].is_number())
            .count(),
    )
}

/// What the sandbox would do over a few polls: phases, the broker's
/// settings, then an agent run that changes one of them.
fn play_sandbox(live: &Live) {
    let dir = live.dir();
    for phase in Phase::ALL {
        std::fs::write(dir.join(phase.file_name()), "").unwrap();
    }
    write_broker_settings(dir, "2");
    log(dir, status::AGENT_NOTE, "agent loop started");
    let at_least = |n: usize, what: &str| {
        wait_for(what, Duration::from_secs(60), || {
            latency_points(live).filter(|&c| c >= n)
        });
    };
    at_least(6, "six polls with latency");
    log(
        dir,
        status::AGENT_MEMORY_UPDATE,
        "Latest consumer p99 latency: 21.3 ms (target 20 ms)",
    );
    log(dir, status::AGENT_AUTO_START, "vibectl auto --limit 3");
    log(
        dir,
        status::AGENT_OUTPUT,
        "kubectl get statefulset kafka -n kafka -o yaml",
    );
    at_least(12, "twelve polls with latency");
    log(
        dir,
        status::AGENT_OUTPUT,
        "kubectl set env statefulset/kafka -n kafka KAFKA_NUM_IO_THREADS=8",
    );
    log(dir, status::AGENT_AUTO_END, "finished after 6.1 s");
    write_broker_settings(dir, "8");
    log(
        dir,
        status::AGENT_SETTINGS_CHANGED,
        "KAFKA_NUM_IO_THREADS: 2 -> 8",
    );
    at_least(24, "twenty-four polls with latency");
}

#[test]
fn dashboard_shows_the_api_numbers_and_draws_the_charts() {
    let found = chromium();
    if !testkit::require(
        "Chromium",
        found.is_some(),
        "install Debian's `chromium` (`cargo xtask test` does) or set CHROMIUM_BIN",
    ) {
        return;
    }
    let chromium = found.unwrap();
    let live = Live::start(Options {
        poll_interval: Duration::from_millis(500),
        target_latency_ms: TARGET_MS,
    });
    play_sandbox(&live);

    let url = live.url("/");
    let mut checked = false;
    for _ in 0..5 {
        let out = headless(&chromium)
            .arg("--dump-dom")
            .arg(&url)
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            dom.contains("data-rendered=\"true\""),
            "the page did not render:\n{dom}"
        );
        let shown: u64 = attr_of(&dom, "updated", "data-snapshot-ts")
            .parse()
            .unwrap();
        let hist: serde_json::Value = get_json(&live.url("/api/history")).unwrap();
        let Some(point) = hist["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["time_ms"].as_u64() == Some(shown))
            .cloned()
        else {
            continue; // that poll already left the history; try again
        };
        let num = |k: &str| point[k].as_f64();
        for (id, key) in [
            ("p99-value", "p99_ms"),
            ("p50-value", "p50_ms"),
            ("p95-value", "p95_ms"),
            ("p999-value", "p999_ms"),
            ("max-value", "max_ms"),
            ("target-value", "target_ms"),
        ] {
            assert_eq!(text_of(&dom, id), fmt_ms(num(key)), "#{id} vs {key}");
        }
        for (id, key) in [
            ("producer-rate", "producer_rate"),
            ("producer-target", "producer_target_rate"),
            ("consumer-rate", "consumer_rate"),
        ] {
            assert_eq!(text_of(&dom, id), fmt_rate(num(key)), "#{id} vs {key}");
        }
        let p99 = num("p99_ms").expect("the shown poll has a latency");
        let verdict = text_of(&dom, "p99-verdict");
        let expected = if p99 <= TARGET_MS {
            "within target"
        } else {
            "over target"
        };
        assert!(verdict.starts_with(expected), "{verdict:?} for p99 {p99}");

        for chart in ["latency-chart", "rate-chart"] {
            let points: usize = attr_of(&dom, chart, "data-points").parse().unwrap();
            assert!(points >= 24, "{chart} drew {points} values");
        }
        assert!(
            dom.matches("<path d=\"M").count() >= 5,
            "p50, p99, producer target, producer and consumer lines"
        );
        // The agent's run is a band and its change a labelled marker, on
        // both charts.
        assert_eq!(dom.matches("class=\"run-band\"").count(), 2, "{dom}");
        assert_eq!(dom.matches("class=\"action\"").count(), 2);
        assert!(dom.contains("NUM_IO_THREADS 2→8"), "the marker's label");
        // Panels.
        assert_eq!(dom.matches("<li class=\"done\"").count(), Phase::ALL.len());
        assert!(
            dom.contains("<span class=\"was\">2</span>8"),
            "changed setting"
        );
        assert!(dom.contains("KAFKA_NUM_NETWORK_THREADS"));
        assert!(dom.contains("settings-changed") && dom.contains("auto-end"));
        for (id, text) in [
            ("service-producer", "producer up"),
            ("service-consumer", "consumer up"),
            ("service-kafka", "Kafka 1/1 ready"),
            ("service-agent", "agent waiting"),
        ] {
            assert_eq!(text_of(&dom, id), text);
        }
        checked = true;
        break;
    }
    assert!(
        checked,
        "never caught the page and the API on the same poll"
    );

    let dir = testkit::exe::workspace_root().join("target/test-output");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let out = headless(&chromium)
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "screenshot too small"
    );
    eprintln!("dashboard screenshot: {}", png.display());
}
