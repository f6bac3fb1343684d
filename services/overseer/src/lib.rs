//! The overseer: polls the producer's and consumer's `/stats`, turns them into
//! the number the agent acts on (`latency.txt`) and a full snapshot
//! (`metrics.json`), and serves a live dashboard, a JSON API and `/metrics`.

pub mod config;
pub mod history;
pub mod metrics;
pub mod sandbox_view;
pub mod window;

mod http;
mod poll;

use std::future::Future;
use std::sync::{Arc, Mutex};

use demo_common::stats::MetricsSnapshot;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

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
    pub latest: Mutex<Option<MetricsSnapshot>>,
    pub history: Mutex<history::History>,
    pub metrics: metrics::Metrics,
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
    run_on(listener, config, shutdown).await
}

/// Run on an already bound listener (tests bind port 0).
pub async fn run_on(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shared = Arc::new(Shared {
        latest: Mutex::new(None),
        history: Mutex::new(history::History::new(config.history_points())),
        metrics: metrics::Metrics::new(),
        config,
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            "dashboard on http://{addr}; polling {} and {} every {:?}",
            shared.config.producer_url,
            shared.config.consumer_url,
            shared.config.poll_interval
        );
    }
    let stop = CancellationToken::new();
    let poller = tokio::spawn(poll::poll_loop(shared.clone(), stop.clone()));
    let served = axum::serve(listener, http::router(shared))
        .with_graceful_shutdown(shutdown)
        .await;
    stop.cancel();
    let _ = poller.await;
    tracing::info!("overseer stopped");
    served.map_err(Error::Serve)
}
