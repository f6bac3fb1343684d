//! Phase 4: the agent loop. Each round: look at the broker's StatefulSet
//! (write `broker_settings.json`, log what changed), read `latency.txt` and
//! `metrics.json`, mirror them into ConfigMap `kafka-latency-metrics`,
//! refresh vibectl's memory with the latest numbers, run a bounded
//! `vibectl auto`, and wait for the next round. Everything goes to
//! `agent.log`. Nothing in a round stops the loop: a failing vibectl or an
//! unreachable API server is logged and the next round comes; only the
//! shutdown file or a signal (the cancellation token) ends it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use demo_common::stats::MetricsSnapshot;
use demo_common::status::{
    self, AGENT_AUTO_END, AGENT_AUTO_START, AGENT_MEMORY_UPDATE, AGENT_NOTE, AGENT_OUTPUT,
    AGENT_SETTINGS_CHANGED, AgentLogLine, BROKER_SETTINGS_FILE, BrokerSettings, LatencyReading,
    METRICS_FILE,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

use crate::broker;
use crate::config::Config;
use crate::manifests::{FIELD_MANAGER, METRICS_CONFIGMAP, NAMESPACE, STATEFULSET};
use crate::program::Ended;
use crate::vibectl::{Vibectl, auto_request, render_instructions};

/// vibectl keeps about 500 characters of memory; stay under it.
pub const MEMORY_MAX_CHARS: usize = 480;
/// Longest vibectl output line kept in agent.log.
const MAX_LINE: usize = 2000;

/// How the loop reaches Kubernetes. In the full sandbox the client exists
/// from phase 1; in agent-only mode there may be no API server at all, so
/// the client is (re)built on demand and failures are only logged.
pub enum KubeAccess {
    Client(kube::Client),
    /// Build from this kubeconfig if it exists, else from the default
    /// sources (`KUBECONFIG`, in-cluster); retried every round.
    Lazy {
        kubeconfig: PathBuf,
        client: Option<kube::Client>,
    },
}

impl KubeAccess {
    async fn client(&mut self) -> Result<kube::Client, String> {
        match self {
            KubeAccess::Client(c) => Ok(c.clone()),
            KubeAccess::Lazy {
                client: Some(c), ..
            } => Ok(c.clone()),
            KubeAccess::Lazy { kubeconfig, client } => {
                let built = if kubeconfig.exists() {
                    crate::kubeconfig::client_from_file(kubeconfig)
                        .await
                        .map_err(|e| error_chain(&e))?
                } else {
                    kube::Client::try_default().await.map_err(|e| {
                        format!("no Kubernetes API configured ({})", error_chain(&e))
                    })?
                };
                *client = Some(built.clone());
                Ok(built)
            }
        }
    }
}

/// An error with its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reports a failing source once, not every round, and says when it
/// recovers, so repeated errors do not push the agent's actions out of the
/// dashboard's log tail.
#[derive(Debug, Default)]
pub struct Latch {
    failing: Option<String>,
}

impl Latch {
    /// The log text for this outcome, if it is news.
    pub fn observe(&mut self, what: &str, outcome: Result<(), String>) -> Option<String> {
        match outcome {
            Err(msg) if self.failing.as_deref() == Some(msg.as_str()) => None,
            Err(msg) => {
                let text = format!("{what} failed (the loop goes on): {msg}");
                self.failing = Some(msg);
                Some(text)
            }
            Ok(()) => self.failing.take().map(|_| format!("{what} works again")),
        }
    }
}

/// The line for `vibectl memory update`: the latest numbers, or an honest
/// "unknown" with the reason. Never longer than [`MEMORY_MAX_CHARS`].
pub fn memory_text(
    latency: &LatencyReading,
    metrics: Option<&MetricsSnapshot>,
    target_ms: f64,
    max_age: Duration,
    broker: Option<&BrokerSettings>,
) -> String {
    let mut text = match latency {
        LatencyReading::Fresh { p99_ms, .. } => {
            let verdict = if *p99_ms > target_ms {
                "over target"
            } else {
                "under target"
            };
            format!(
                "Latest consumer p99 latency: {p99_ms:.1} ms (target {target_ms} ms, {verdict})."
            )
        }
        LatencyReading::Stale { p99_ms, age } => format!(
            "Latest consumer p99 latency: unknown; the last value ({p99_ms:.1} ms) is {}s old, \
             so load or measurement has stopped (target {target_ms} ms).",
            age.as_secs()
        ),
        LatencyReading::Missing => format!(
            "Latest consumer p99 latency: unknown; no measurement yet (target {target_ms} ms)."
        ),
        LatencyReading::Malformed(why) => format!(
            "Latest consumer p99 latency: unknown; the latency file is unreadable: {why} \
             (target {target_ms} ms)."
        ),
    };
    let fresh_metrics = metrics
        .filter(|m| status::now_ms().saturating_sub(m.timestamp_ms) <= max_age.as_millis() as u64);
    if let Some(m) = fresh_metrics {
        let mut parts = Vec::new();
        if let Some(rate) = m.producer_rate {
            let target = m
                .producer_target_rate
                .map(|t| format!(" of target {t:.0}"))
                .unwrap_or_default();
            parts.push(format!("producer {rate:.0} msg/s{target}"));
        }
        if let Some(rate) = m.consumer_rate {
            parts.push(format!("consumer {rate:.0} msg/s"));
        }
        if let Some(q) = m.latency_ms.filter(|_| latency.fresh_ms().is_some()) {
            parts.push(format!("p50 {:.1} ms, max {:.1} ms", q.p50, q.max));
        }
        if !parts.is_empty() {
            text.push_str(&format!(" {}.", capitalize(&parts.join(", "))));
        }
    }
    if let Some(b) = broker {
        let extra = format!(" Broker now: {}.", broker::summary(b));
        if text.chars().count() + extra.chars().count() <= MEMORY_MAX_CHARS {
            text.push_str(&extra);
        }
    }
    text.chars().take(MEMORY_MAX_CHARS).collect()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The agent loop's state across rounds.
pub struct AgentLoop {
    config: Config,
    kube: KubeAccess,
    vibectl: Vibectl,
    last_settings: Option<BrokerSettings>,
    statefulset_latch: Latch,
    mirror_latch: Latch,
}

impl AgentLoop {
    pub fn new(config: Config, kube: KubeAccess) -> Self {
        let agent_kubeconfig = config.agent_kubeconfig();
        let vibectl = Vibectl {
            program: config.programs.vibectl.clone(),
            kubeconfig: agent_kubeconfig.exists().then_some(agent_kubeconfig),
        };
        Self {
            config,
            kube,
            vibectl,
            last_settings: None,
            statefulset_latch: Latch::default(),
            mirror_latch: Latch::default(),
        }
    }

    fn status_dir(&self) -> &Path {
        &self.config.status_dir
    }

    /// Append to agent.log (and echo to the container log). A failing write
    /// is only warned about: the loop must go on.
    fn log(&self, kind: &str, text: &str) {
        tracing::info!("agent [{kind}] {text}");
        if let Err(e) =
            status::append_agent_log(self.status_dir(), &[AgentLogLine::new(kind, text)])
        {
            tracing::warn!("cannot append to agent.log: {e}");
        }
    }

    /// Configure vibectl, then run rounds until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.configure(&cancel).await;
        let a = &self.config.agent;
        self.log(
            AGENT_NOTE,
            &format!(
                "agent loop started: model {}, target {} ms, every {} s, vibectl auto --limit {}",
                a.model,
                a.target_latency_ms,
                a.interval.as_secs(),
                a.auto_limit
            ),
        );
        if let Err(e) = std::fs::write(
            self.status_dir().join(status::Phase::Agent.file_name()),
            b"",
        ) {
            tracing::warn!("cannot write the agent phase file: {e}");
        }
        while !cancel.is_cancelled() {
            self.round(&cancel).await;
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(self.config.agent.interval) => {}
            }
        }
        self.log(AGENT_NOTE, "agent loop stopped: shutting down");
    }

    /// Model, kubeconfig and instructions. A failure is logged; the loop
    /// still runs (vibectl may work with what it had).
    async fn configure(&self, cancel: &CancellationToken) {
        if std::env::var_os("VIBECTL_ANTHROPIC_API_KEY").is_none() {
            self.log(
                AGENT_NOTE,
                "VIBECTL_ANTHROPIC_API_KEY is not set; vibectl uses whatever key its own configuration has",
            );
        }
        if self.vibectl.kubeconfig.is_none() {
            self.log(
                AGENT_NOTE,
                &format!(
                    "no agent kubeconfig at {}; vibectl uses its default kubeconfig",
                    self.config.agent_kubeconfig().display()
                ),
            );
        }
        let instructions = render_instructions(&self.config);
        let steps = Vibectl::configure_steps(
            &self.config.agent.model,
            self.vibectl.kubeconfig.as_deref(),
            &instructions,
        );
        for step in steps {
            let shown = format!("vibectl {}", step.args.join(" "));
            match self
                .vibectl
                .configure(&step, self.config.agent.auto_timeout, cancel)
                .await
            {
                Ok(_) => tracing::info!("{shown}: done"),
                Err(e) => self.log(AGENT_NOTE, &format!("{shown} failed: {}", error_chain(&e))),
            }
        }
    }

    /// One round.
    pub async fn round(&mut self, cancel: &CancellationToken) {
        let dir = self.config.status_dir.clone();
        let max_age = self.config.agent.latency_max_age;
        self.observe_broker().await;
        let latency = status::read_latency(&dir, max_age);
        let metrics: Option<MetricsSnapshot> = status::read_json(&dir, METRICS_FILE);
        let text = memory_text(
            &latency,
            metrics.as_ref(),
            self.config.agent.target_latency_ms,
            max_age,
            self.last_settings.as_ref(),
        );
        self.mirror_metrics(&latency, metrics.as_ref(), &text).await;
        if cancel.is_cancelled() {
            return;
        }

        self.log(AGENT_MEMORY_UPDATE, &text);
        let args = Vibectl::memory_update_args(&text);
        let timeout = self.config.agent.auto_timeout;
        match self.vibectl.run_args(&args, timeout, cancel).await {
            Ok(out) => {
                for line in out.stdout.lines().chain(out.stderr.lines()) {
                    self.log_output(line);
                }
            }
            Err(e) => self.log(
                AGENT_NOTE,
                &format!("vibectl memory update failed: {}", error_chain(&e)),
            ),
        }
        if cancel.is_cancelled() {
            return;
        }

        let args = Vibectl::auto_args(self.config.agent.auto_limit, &auto_request(&self.config));
        self.log(
            AGENT_AUTO_START,
            &format!("vibectl auto --limit {}", self.config.agent.auto_limit),
        );
        let started = Instant::now();
        let ended = self
            .vibectl
            .stream(&args, timeout, cancel, |line| self.log_output(line))
            .await;
        let took = started.elapsed().as_secs_f64();
        let how = match ended {
            Ok(Ended::Exited(Some(0))) => format!("finished after {took:.1} s"),
            Ok(Ended::Exited(Some(code))) => {
                format!("failed with exit code {code} after {took:.1} s")
            }
            Ok(Ended::Exited(None)) => format!("killed by a signal after {took:.1} s"),
            Ok(Ended::TimedOut) => format!("stopped: no result within {timeout:?}"),
            Ok(Ended::Cancelled) => "stopped: the sandbox is shutting down".to_string(),
            Err(e) => format!("could not run: {}", error_chain(&e)),
        };
        self.log(AGENT_AUTO_END, &how);
        self.observe_broker().await;
    }

    fn log_output(&self, line: &str) {
        let line = line.trim_end();
        if line.trim().is_empty() {
            return;
        }
        let line: String = line.chars().take(MAX_LINE).collect();
        self.log(AGENT_OUTPUT, &line);
    }

    /// Read the StatefulSet, write broker_settings.json, log changes.
    async fn observe_broker(&mut self) {
        let read = async {
            let client = self.kube.client().await?;
            let api: Api<StatefulSet> = Api::namespaced(client, NAMESPACE);
            api.get(STATEFULSET).await.map_err(|e| error_chain(&e))
        };
        let sts = read.await;
        let outcome = sts.as_ref().map(|_| ()).map_err(Clone::clone);
        if let Some(text) = self.statefulset_latch.observe(
            &format!("reading statefulset {NAMESPACE}/{STATEFULSET}"),
            outcome,
        ) {
            self.log(AGENT_NOTE, &text);
        }
        let Ok(sts) = sts else { return };
        let settings = broker::settings_of(&sts);
        if let Some(before) = &self.last_settings {
            let changes = broker::describe_changes(before, &settings);
            if !changes.is_empty() {
                self.log(AGENT_SETTINGS_CHANGED, &changes.join("; "));
            }
        }
        match serde_json::to_vec_pretty(&settings) {
            Ok(json) => {
                if let Err(e) =
                    status::write_atomic(&self.config.status_dir, BROKER_SETTINGS_FILE, &json)
                {
                    tracing::warn!("cannot write {BROKER_SETTINGS_FILE}: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot encode broker settings: {e}"),
        }
        self.last_settings = Some(settings);
    }

    /// Put the latest numbers where the agent can read them with kubectl.
    async fn mirror_metrics(
        &mut self,
        latency: &LatencyReading,
        metrics: Option<&MetricsSnapshot>,
        summary: &str,
    ) {
        let data = metrics_configmap_data(
            latency,
            metrics,
            self.config.agent.target_latency_ms,
            summary,
        );
        let write = async {
            let client = self.kube.client().await?;
            let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
            let cm = serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": METRICS_CONFIGMAP, "namespace": NAMESPACE,
                             "labels": {"app.kubernetes.io/part-of": "kafka-throughput-demo"}},
                "data": data,
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch(METRICS_CONFIGMAP, &params, &Patch::Apply(&cm))
                .await
                .map(|_| ())
                .map_err(|e| error_chain(&e))
        };
        let outcome = write.await;
        if let Some(text) = self.mirror_latch.observe(
            &format!("mirroring metrics into configmap {NAMESPACE}/{METRICS_CONFIGMAP}"),
            outcome,
        ) {
            self.log(AGENT_NOTE, &text);
        }
    }
}

/// The data of ConfigMap `kafka-latency-metrics`.
pub fn metrics_configmap_data(
    latency: &LatencyReading,
    metrics: Option<&MetricsSnapshot>,
    target_ms: f64,
    summary: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    let (p99, state) = match latency {
        LatencyReading::Fresh { p99_ms, .. } => (format!("{p99_ms:.1}"), "fresh".to_string()),
        other => (String::new(), other.to_string()),
    };
    data.insert("consumer_p99_latency_ms".into(), p99.into());
    data.insert("latency_status".into(), state.into());
    data.insert("target_latency_ms".into(), target_ms.to_string().into());
    data.insert("summary".into(), summary.into());
    data.insert(
        "updated_at".into(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .into(),
    );
    let snapshot = metrics
        .and_then(|m| serde_json::to_string_pretty(m).ok())
        .unwrap_or_else(|| "null".into());
    data.insert("metrics.json".into(), snapshot.into());
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_common::stats::{Quantiles, Sources};

    fn snapshot(age_ms: u64) -> MetricsSnapshot {
        MetricsSnapshot {
            timestamp_ms: status::now_ms() - age_ms,
            latency_timestamp_ms: None,
            target_latency_ms: 5.0,
            window_s: 5.0,
            latency_ms: Some(Quantiles {
                count: 10,
                p50: 1.25,
                p95: 3.0,
                p99: 4.0,
                p999: 5.0,
                max: 9.0,
            }),
            producer_target_rate: Some(5000.0),
            producer_rate: Some(4500.4),
            consumer_rate: Some(4490.0),
            publish_delay_p99_ms: None,
            sources: Sources::default(),
        }
    }

    const AGE: Duration = Duration::from_secs(60);

    #[test]
    fn fresh_latency_is_stated_with_rates() {
        let latency = LatencyReading::Fresh {
            p99_ms: 12.34,
            age: Duration::from_secs(2),
        };
        let text = memory_text(&latency, Some(&snapshot(1000)), 5.0, AGE, None);
        assert!(
            text.starts_with("Latest consumer p99 latency: 12.3 ms (target 5 ms, over target)."),
            "{text}"
        );
        assert!(
            text.contains("Producer 4500 msg/s of target 5000"),
            "{text}"
        );
        assert!(text.contains("consumer 4490 msg/s"), "{text}");
    }

    #[test]
    fn missing_or_stale_latency_is_never_invented() {
        let stale = LatencyReading::Stale {
            p99_ms: 3.0,
            age: Duration::from_secs(95),
        };
        let text = memory_text(&stale, Some(&snapshot(120_000)), 5.0, AGE, None);
        assert!(
            text.starts_with("Latest consumer p99 latency: unknown;"),
            "{text}"
        );
        assert!(text.contains("95s old"), "{text}");
        // Stale metrics are left out rather than presented as current.
        assert!(!text.contains("msg/s"), "{text}");
        let text = memory_text(&LatencyReading::Missing, None, 5.0, AGE, None);
        assert!(text.contains("unknown; no measurement yet"), "{text}");
    }

    #[test]
    fn memory_text_stays_short() {
        let mut env = std::collections::BTreeMap::new();
        for i in 0..40 {
            env.insert(format!("KAFKA_SETTING_{i}"), "x".repeat(20));
        }
        let broker = BrokerSettings {
            env,
            ..Default::default()
        };
        let latency = LatencyReading::Fresh {
            p99_ms: 1.0,
            age: Duration::ZERO,
        };
        let text = memory_text(&latency, Some(&snapshot(0)), 5.0, AGE, Some(&broker));
        assert!(text.chars().count() <= MEMORY_MAX_CHARS);
        assert!(
            !text.contains("Broker now"),
            "oversized part dropped: {text}"
        );
        let small = BrokerSettings {
            env: [("KAFKA_NUM_IO_THREADS".to_string(), "1".to_string())].into(),
            ready_replicas: 1,
            replicas: 1,
            ..Default::default()
        };
        let text = memory_text(&latency, None, 5.0, AGE, Some(&small));
        assert!(
            text.ends_with("Broker now: NUM_IO_THREADS=1, pod ready 1/1."),
            "{text}"
        );
    }

    #[test]
    fn latch_reports_news_only() {
        let mut latch = Latch::default();
        assert_eq!(latch.observe("x", Ok(())), None);
        assert!(
            latch
                .observe("x", Err("down".into()))
                .unwrap()
                .contains("down")
        );
        assert_eq!(latch.observe("x", Err("down".into())), None);
        assert!(latch.observe("x", Err("other".into())).is_some());
        assert_eq!(latch.observe("x", Ok(())).as_deref(), Some("x works again"));
        assert_eq!(latch.observe("x", Ok(())), None);
    }

    #[test]
    fn configmap_data_holds_the_snapshot() {
        let latency = LatencyReading::Fresh {
            p99_ms: 2.25,
            age: Duration::ZERO,
        };
        let data = metrics_configmap_data(&latency, Some(&snapshot(0)), 5.0, "s");
        assert_eq!(data["consumer_p99_latency_ms"], "2.2");
        assert_eq!(data["latency_status"], "fresh");
        let snap: MetricsSnapshot =
            serde_json::from_str(data["metrics.json"].as_str().unwrap()).unwrap();
        assert_eq!(snap.producer_rate, Some(4500.4));
        let data = metrics_configmap_data(&LatencyReading::Missing, None, 5.0, "s");
        assert_eq!(data["consumer_p99_latency_ms"], "");
        assert!(data["latency_status"].as_str().unwrap().contains("missing"));
    }
}
