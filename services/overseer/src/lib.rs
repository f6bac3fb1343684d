//! The overseer: polls the producer's and consumer's `/stats`, turns them into
//! the number the agent acts on (`latency.txt`) and a full snapshot
//! (`metrics.json`), and serves a live dashboard, a JSON API and `/metrics`.

pub mod agent_log;
pub mod config;
pub mod history;
pub mod metrics;
pub mod sandbox_view;
pub mod window;

mod http;
mod poll;

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use demo_common::stats::{LoadStats, MetricsSnapshot};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::history::History;
use crate::sandbox_view::SandboxView;

/// Why the overseer stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the dashboard server failed")]
    Serve(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the poll loop publishes and the HTTP handlers read.
pub(crate) struct Shared {
    pub config: Config,
    live: Mutex<Live>,
    pub metrics: metrics::Metrics,
    /// When the poll loop last finished a poll (ms since the epoch); what
    /// `/healthz` judges the overseer by.
    pub last_poll_ms: AtomicU64,
}

/// The latest figures and the charts' history, replaced by each poll.
pub(crate) struct Live {
    /// `None` until the first poll.
    pub snapshot: Option<MetricsSnapshot>,
    /// The raw answers of the last poll, `None` for a source that did not answer.
    pub producer: Option<LoadStats>,
    pub consumer: Option<LoadStats>,
    pub history: History,
    pub sandbox: SandboxView,
}

impl Shared {
    /// The live state. A panic while it was held cannot leave it half
    /// updated in a way that matters to a reader, so a poisoned lock is used.
    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Run until `shutdown` resolves, listening on `config.dashboard_addr`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = TcpListener::bind(config.dashboard_addr)
        .await
        .map_err(|source| Error::Bind {
            addr: config.dashboard_addr,
            source,
        })?;
    serve(config, listener, shutdown).await
}

/// Run on an already bound listener (tests bind port 0).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shared = Arc::new(Shared {
        live: Mutex::new(Live {
            snapshot: None,
            producer: None,
            consumer: None,
            history: History::new(config.history_points(), config.history),
            sandbox: SandboxView::default(),
        }),
        metrics: metrics::Metrics::new(),
        // Counting from the start gives the first poll its time.
        last_poll_ms: AtomicU64::new(demo_common::status::now_ms()),
        config,
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            "dashboard on http://{addr}; polling {} and {} every {:?}; status files in {}",
            shared.config.producer_url,
            shared.config.consumer_url,
            shared.config.poll_interval,
            shared.config.status_dir.display(),
        );
    }
    let stop = CancellationToken::new();
    let poller = tokio::spawn(poll::poll_loop(shared.clone(), stop.clone()));
    let served = axum::serve(listener, http::router(shared))
        .with_graceful_shutdown(shutdown)
        .await;
    stop.cancel();
    if let Err(e) = poller.await {
        tracing::error!("the poll loop failed: {e}");
    }
    tracing::info!("overseer stopped");
    served.map_err(Error::Serve)
}
