//! The demo's Kafka load generator, one library behind the `loadgen` binary
//! with two roles:
//!
//! - **produce**: paced, non-blocking sends of incompressible payloads
//!   carrying their send time, with an adaptive target rate driven by the
//!   consumer's p99 (`latency.txt` in the status directory) and the send
//!   backlog; publish latency and publish delay histograms.
//! - **consume**: group consumer from the latest offsets, end-to-end latency
//!   histogram per window, counts of records without a valid header.
//!
//! Both serve `/metrics`, `/stats` and `/healthz`, ride through broker
//! outages (logged once), and stop cleanly on the shutdown future.

pub mod config;
mod consume;
pub mod header;
pub mod histogram;
mod http;
pub mod kafka;
pub mod link;
pub mod metrics;
pub mod payload;
mod produce;
pub mod rate;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use demo_common::stats::{LoadStats, Role};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// What can stop the load generator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
    #[error("cannot create the Kafka {what}")]
    Client {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("internal task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Run the role in `config` until `shutdown` resolves (or, for the
/// producer, until `MESSAGE_LIMIT` messages were sent); serves HTTP on
/// `config.metrics_addr`. Returns the final figures.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<LoadStats> {
    let listener = TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|source| Error::Bind {
            addr: config.metrics_addr,
            source,
        })?;
    serve(config, listener, shutdown).await
}

/// [`run`] on a listener the caller bound (tests bind `127.0.0.1:0`).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<LoadStats> {
    let shared = Arc::new(metrics::Shared::new(config.role));
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let signal_task = tokio::spawn(async move {
        shutdown.await;
        on_signal.cancel();
    });

    let addr = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!("serving /metrics, /stats and /healthz on http://{addr}");
    let http_stop = CancellationToken::new();
    let server = {
        let stop = http_stop.clone();
        let app = http::router(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };

    let outcome = match config.role {
        Role::Producer => produce::run(&config, shared.clone(), cancel.clone()).await,
        Role::Consumer => consume::run(&config, shared.clone(), cancel.clone()).await,
    };
    http_stop.cancel();
    signal_task.abort();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::Serve(e)),
        Err(e) => return Err(Error::Task(e.to_string())),
    }
    outcome?;
    Ok(shared.load_stats())
}

/// The `/healthz` URL for a listen address: a wildcard host becomes
/// loopback, so the health check works inside the container.
pub fn healthz_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{host}:{}/healthz", addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_url_points_at_loopback_for_wildcards() {
        assert_eq!(
            healthz_url("0.0.0.0:9100".parse().unwrap()),
            "http://127.0.0.1:9100/healthz"
        );
        assert_eq!(
            healthz_url("[::]:80".parse().unwrap()),
            "http://[::1]:80/healthz"
        );
        assert_eq!(
            healthz_url("10.1.2.3:9".parse().unwrap()),
            "http://10.1.2.3:9/healthz"
        );
    }
}
