//! The k8s-sandbox: creates a k3d cluster, runs Kafka in it, exposes Kafka
//! to the Compose network, and runs the vibectl agent loop that tunes the
//! broker. Each finished phase leaves a file in the status directory so a
//! restarted container resumes instead of redoing work.
//!
//! Entry points: [`run`] (all phases), [`run_agent_only`] (the agent loop
//! without k3d, for stacks where Kafka lives elsewhere) and [`is_ready`]
//! (the healthcheck).

pub mod agent;
pub mod broker;
pub mod config;
pub mod deploy;
pub mod k3d;
pub mod kubeconfig;
pub mod manifests;
pub mod portforward;
pub mod program;
pub mod readiness;
pub mod versions;
pub mod vibectl;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use demo_common::status::{Phase, SHUTDOWN_FILE};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Everything that can stop the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error(transparent)]
    K3d(#[from] k3d::K3dError),
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
    #[error(transparent)]
    Manifest(#[from] manifests::ManifestError),
    #[error("stopped while {0}")]
    Cancelled(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long the agent kubeconfig waits for its token.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the shutdown file is looked for.
const SHUTDOWN_POLL: Duration = Duration::from_millis(500);

/// Whether the healthcheck passes: Kafka is reachable (`kafka_ready`).
pub fn is_ready(status_dir: &Path) -> bool {
    Phase::KafkaReady.is_done(status_dir)
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn mark_done(status_dir: &Path, phase: Phase) -> Result<()> {
    std::fs::write(status_dir.join(phase.file_name()), b"")
        .map_err(io(format!("write phase file {}", phase.file_name())))?;
    tracing::info!("phase done: {}", phase.describe());
    Ok(())
}

/// Remove what must not survive a restart: `kafka_ready` (the listener
/// died with the old process) and a `shutdown` request from an earlier run.
fn clear_stale(status_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(status_dir)
        .map_err(io(format!("create status dir {}", status_dir.display())))?;
    for name in [Phase::KafkaReady.file_name(), SHUTDOWN_FILE] {
        match std::fs::remove_file(status_dir.join(name)) {
            Ok(()) => tracing::info!("removed stale {name} from an earlier run"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("remove stale {name}"))(e)),
        }
    }
    Ok(())
}

/// A token cancelled when `shutdown` resolves or the shutdown file appears.
fn shutdown_token(
    status_dir: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> CancellationToken {
    let token = CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => on_signal.cancel(),
            () = on_signal.cancelled() => {}
        }
    });
    let on_file = token.clone();
    let file = status_dir.join(SHUTDOWN_FILE);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SHUTDOWN_POLL);
        loop {
            tokio::select! {
                () = on_file.cancelled() => break,
                _ = tick.tick() => {
                    if file.exists() {
                        tracing::info!("shutdown file found; stopping");
                        on_file.cancel();
                        break;
                    }
                }
            }
        }
    });
    token
}

/// Run `fut` unless `cancel` fires first.
async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    what: &str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        () = cancel.cancelled() => Err(Error::Cancelled(what.to_string())),
        res = fut => res,
    }
}

/// All phases: cluster, Kafka, port-forward, agent loop; until the shutdown
/// file appears or `shutdown` resolves. Returns `Ok` on a clean stop.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let status_dir = config.status_dir.clone();
    clear_stale(&status_dir)?;
    let cancel = shutdown_token(&status_dir, shutdown);
    match run_phases(&config, &cancel).await {
        Err(Error::Cancelled(during)) => {
            tracing::info!("stopped while {during}");
            Ok(())
        }
        other => {
            cancel.cancel();
            other
        }
    }
}

async fn run_phases(config: &Config, cancel: &CancellationToken) -> Result<()> {
    let status_dir = &config.status_dir;
    let client = phase_cluster(config, cancel).await?;

    if Phase::Kafka.is_done(status_dir) {
        tracing::info!("Kafka was deployed by an earlier run; not re-applying");
    } else {
        let manifests = manifests::render(&manifests::Overrides::from_config(config))?;
        unless_cancelled(
            cancel,
            "applying manifests",
            deploy::apply_all(&client, &manifests),
        )
        .await?;
        unless_cancelled(
            cancel,
            "waiting for the broker",
            deploy::wait_broker_ready(&client, config.kafka.ready_timeout),
        )
        .await?;
        mark_done(status_dir, Phase::Kafka)?;
    }
    let admin = std::fs::read_to_string(config.admin_kubeconfig())
        .map_err(io("read the admin kubeconfig"))?;
    unless_cancelled(
        cancel,
        "writing the agent kubeconfig",
        deploy::write_agent_kubeconfig(&client, &admin, &config.agent_kubeconfig(), TOKEN_TIMEOUT),
    )
    .await?;

    let target = portforward::Target {
        pods: Api::<Pod>::namespaced(client.clone(), manifests::NAMESPACE),
        selector: manifests::POD_SELECTOR.into(),
        port: manifests::PORTFORWARD_PORT,
        retry_for: config.port_forward.retry_for,
    };
    let listener = portforward::Listener::start(config.port_forward.listen, target, cancel.clone())
        .await
        .map_err(io(format!(
            "listen on {} for the port-forward",
            config.port_forward.listen
        )))?;
    mark_done(status_dir, Phase::KafkaReady)?;

    agent::AgentLoop::new(config.clone(), agent::KubeAccess::Client(client))
        .run(cancel.clone())
        .await;
    listener.join().await;
    // The listener is gone; nobody should think Kafka is reachable here.
    let _ = std::fs::remove_file(status_dir.join(Phase::KafkaReady.file_name()));
    Ok(())
}

/// Phase 1: a running k3d cluster, its admin kubeconfig, an answering API.
async fn phase_cluster(config: &Config, cancel: &CancellationToken) -> Result<kube::Client> {
    let status_dir = &config.status_dir;
    let kubeconfig_path = config.admin_kubeconfig();
    if Phase::Cluster.is_done(status_dir) && kubeconfig_path.exists() {
        tracing::info!("k3d cluster was set up by an earlier run; checking it answers");
        let client = kubeconfig::client_from_file(&kubeconfig_path).await?;
        let answered = unless_cancelled(
            cancel,
            "waiting for the API server",
            deploy::wait_api(&client, config.cluster.api_timeout),
        )
        .await;
        match answered {
            Ok(version) => {
                tracing::info!("API server {version} answers");
                return Ok(client);
            }
            Err(Error::Cancelled(what)) => return Err(Error::Cancelled(what)),
            Err(e) => {
                tracing::warn!("the earlier cluster does not answer ({e}); setting it up again");
                let _ = std::fs::remove_file(status_dir.join(Phase::Cluster.file_name()));
            }
        }
    }
    let (action, raw) = k3d::ensure_cluster(&config.cluster, &config.programs, cancel)
        .await
        .map_err(|e| match e {
            k3d::K3dError::Program {
                source: program::ProgramError::Cancelled { .. },
                ..
            } => Error::Cancelled("setting up the k3d cluster".into()),
            other => Error::K3d(other),
        })?;
    tracing::info!("k3d cluster {}: {action:?}", config.cluster.name);
    let text = kubeconfig::rewrite_server(&raw, &config.cluster.api_server)?;
    kubeconfig::write_private(&kubeconfig_path, &text)?;
    let client = kubeconfig::client_from_file(&kubeconfig_path).await?;
    let version = unless_cancelled(
        cancel,
        "waiting for the API server",
        deploy::wait_api(&client, config.cluster.api_timeout),
    )
    .await?;
    tracing::info!(
        "API server {version} answers at {}",
        config.cluster.api_server
    );
    mark_done(status_dir, Phase::Cluster)?;
    Ok(client)
}

/// The agent loop alone, for stacks without k3d (Kafka elsewhere). Marks
/// `kafka_ready` once `KAFKA_BROKER` accepts a TCP connection (at once when
/// unset); Kubernetes calls that fail are logged to agent.log and the loop
/// goes on.
pub async fn run_agent_only(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let status_dir = config.status_dir.clone();
    clear_stale(&status_dir)?;
    let cancel = shutdown_token(&status_dir, shutdown);
    let probe = tokio::spawn(mark_ready_when_reachable(
        status_dir.clone(),
        config.agent.kafka_broker.clone(),
        cancel.clone(),
    ));
    let kube = agent::KubeAccess::Lazy {
        kubeconfig: config.admin_kubeconfig(),
        client: None,
    };
    agent::AgentLoop::new(config, kube)
        .run(cancel.clone())
        .await;
    cancel.cancel();
    let _ = probe.await;
    let _ = std::fs::remove_file(status_dir.join(Phase::KafkaReady.file_name()));
    Ok(())
}

/// Touch `kafka_ready` once `broker` accepts a TCP connection (retried
/// with backoff until `cancel`), or at once when there is none to probe.
async fn mark_ready_when_reachable(
    status_dir: std::path::PathBuf,
    broker: Option<String>,
    cancel: CancellationToken,
) {
    use backon::{ExponentialBuilder, Retryable};
    if let Some(addr) = broker {
        let connect = || async {
            tokio::time::timeout(
                Duration::from_secs(3),
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times();
        let reached = connect
            .retry(backoff)
            .notify(|e, _| tracing::debug!("Kafka at {addr} not reachable yet: {e}"));
        tokio::select! {
            () = cancel.cancelled() => return,
            res = reached => if let Err(e) = res {
                tracing::warn!("cannot reach Kafka at {addr}: {e}");
                return;
            },
        }
        tracing::info!("Kafka at {addr} accepts connections");
    }
    if let Err(e) = mark_done(&status_dir, Phase::KafkaReady) {
        tracing::warn!("{e}");
    }
}
