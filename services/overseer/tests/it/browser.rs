//! The dashboard in headless Chromium, fed by the live setup: once the charts
//! are drawn, the numbers on the page equal the API's for the poll the page
//! shows, and a screenshot is saved under target/test-output/.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use demo_common::status::{self, AgentLogLine, BrokerSettings, Phase};

use crate::support::{Live, get_json, wait_for};

fn chromium() -> Option<PathBuf> {
    std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .or_else(|| which::which("chromium").ok())
}

fn headless(chromium: &PathBuf) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1400,1000",
        "--virtual-time-budget=8000",
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

/// Text content of the element with `id` in a dumped DOM.
fn text_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find('<').unwrap();
    dom[start..end].to_string()
}

fn attr_of(dom: &str, id: &str, attr: &str) -> String {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap();
    let tag_start = dom[..at].rfind('<').unwrap();
    let tag = &dom[tag_start..at + dom[at..].find('>').unwrap()];
    let key = format!("{attr}=\"");
    let from = tag
        .find(&key)
        .map(|i| i + key.len())
        .unwrap_or_else(|| panic!("no {attr} on #{id}"));
    tag[from..from + tag[from..].find('"').unwrap()].to_string()
}

/// What the sandbox would leave in the status directory.
fn write_sandbox_files(dir: &std::path::Path) {
    for phase in Phase::ALL {
        std::fs::write(dir.join(phase.file_name()), "").unwrap();
    }
    let settings = BrokerSettings {
        observed_at_ms: status::now_ms(),
        env: [
            ("KAFKA_NUM_IO_THREADS", "4"),
            ("KAFKA_NUM_NETWORK_THREADS", "1"),
            ("KAFKA_HEAP_OPTS", "-Xms256m -Xmx256m"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        resources: [("limits.cpu".to_string(), "2".to_string())].into(),
        ready_replicas: 1,
        replicas: 1,
    };
    status::write_atomic(
        dir,
        status::BROKER_SETTINGS_FILE,
        &serde_json::to_vec(&settings).unwrap(),
    )
    .unwrap();
    status::append_agent_log(
        dir,
        &[
            AgentLogLine::new(
                status::AGENT_MEMORY_UPDATE,
                "Latest consumer p99 latency: 12.0 ms",
            ),
            AgentLogLine::new(status::AGENT_AUTO_START, "vibectl auto --limit 3"),
            AgentLogLine::new(
                status::AGENT_SETTINGS_CHANGED,
                "KAFKA_NUM_IO_THREADS: 1 -> 4",
            ),
        ],
    )
    .unwrap();
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
    let live = Live::start(Duration::from_secs(1));
    write_sandbox_files(live.dir());
    wait_for("three polls with latency", Duration::from_secs(60), || {
        let hist: serde_json::Value = get_json(&live.url("/api/history"))?;
        let with_latency = hist["points"]
            .as_array()?
            .iter()
            .filter(|p| p["p99_ms"].is_number())
            .count();
        (with_latency >= 3).then_some(())
    });

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
        assert_eq!(text_of(&dom, "p99-value"), fmt_ms(num("p99_ms")));
        assert_eq!(text_of(&dom, "p50-value"), fmt_ms(num("p50_ms")));
        assert_eq!(text_of(&dom, "target-value"), fmt_ms(num("target_ms")));
        assert_eq!(
            text_of(&dom, "producer-rate"),
            fmt_rate(num("producer_rate"))
        );
        assert_eq!(
            text_of(&dom, "producer-target"),
            fmt_rate(num("producer_target_rate"))
        );
        assert_eq!(
            text_of(&dom, "consumer-rate"),
            fmt_rate(num("consumer_rate"))
        );
        assert_ne!(text_of(&dom, "p99-value"), "—", "the page shows a latency");
        for chart in ["latency-chart", "rate-chart"] {
            let points: usize = attr_of(&dom, chart, "data-points").parse().unwrap();
            assert!(points > 0, "{chart} drew nothing");
        }
        assert!(
            dom.matches("<path").count() >= 4,
            "the chart lines are drawn"
        );
        assert!(
            dom.contains("class=\"action\""),
            "the agent's change is marked on the chart:\n{dom}"
        );
        assert_eq!(dom.matches("<li class=\"done\">").count(), Phase::ALL.len());
        assert!(dom.contains("KAFKA_NUM_IO_THREADS"));
        assert!(dom.contains("settings-changed"));
        assert!(dom.contains("producer up") && dom.contains("consumer up"));
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
