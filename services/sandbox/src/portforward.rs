//! Phase 3: the port-forward route to Kafka. A TCP listener (0.0.0.0:9092
//! by default); for every accepted connection, the current Ready broker pod
//! is looked up and a kube-rs port-forward opened to it, then bytes are
//! copied both ways. Because the pod is looked up per connection, new
//! connections reach the new pod after the agent restarts the broker (a
//! `kubectl port-forward` child would have died with the old pod).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::readiness::pick_ready_pod;

/// Why a connection could not be bridged to a pod.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no Ready pod matches {0}")]
    NoReadyPod(String),
    #[error("cannot list pods")]
    List(#[source] kube::Error),
    #[error("cannot open a port-forward to pod {pod}")]
    Open {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("port-forward to pod {0} gave no stream")]
    NoStream(String),
}

/// Counters for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub bridged: AtomicU64,
    pub gave_up: AtomicU64,
}

/// Where connections go.
#[derive(Debug, Clone)]
pub struct Target {
    pub pods: Api<Pod>,
    /// Label selector of the broker pods.
    pub selector: String,
    pub port: u16,
    /// How long one connection keeps trying to reach a Ready pod.
    pub retry_for: Duration,
}

/// The running listener.
#[derive(Debug)]
pub struct Listener {
    pub local_addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Bind `addr` and serve until `cancel`.
    pub async fn start(
        addr: SocketAddr,
        target: Target,
        cancel: CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(serve(listener, target, Arc::clone(&stats), cancel));
        tracing::info!("port-forward listening on {local_addr}");
        Ok(Self {
            local_addr,
            stats,
            task,
        })
    }

    /// Wait for the accept loop to end (after cancellation).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

async fn serve(
    listener: TcpListener,
    target: Target,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) {
    let target = Arc::new(target);
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let target = Arc::clone(&target);
                let stats = Arc::clone(&stats);
                let cancel = cancel.child_token();
                tokio::spawn(async move {
                    bridge(stream, peer, &target, &stats, &cancel).await;
                });
            }
            // Out of file descriptors and the like: log and keep serving.
            Err(e) => tracing::warn!("port-forward accept failed: {e}"),
        }
    }
    tracing::info!("port-forward listener stopped");
}

/// Look up a Ready pod and open a port-forward to it.
async fn open(target: &Target) -> Result<(String, kube::api::Portforwarder), ForwardError> {
    let pods = target
        .pods
        .list(&ListParams::default().labels(&target.selector))
        .await
        .map_err(ForwardError::List)?;
    let pod = pick_ready_pod(&pods.items)
        .ok_or_else(|| ForwardError::NoReadyPod(target.selector.clone()))?;
    let forwarder = target
        .pods
        .portforward(&pod, &[target.port])
        .await
        .map_err(|source| ForwardError::Open {
            pod: pod.clone(),
            source,
        })?;
    Ok((pod, forwarder))
}

/// Bridge one client connection to the broker, retrying the lookup and the
/// port-forward with backoff for `retry_for`, then giving up (closing the
/// connection; the Kafka client reconnects).
async fn bridge(
    mut client: TcpStream,
    peer: SocketAddr,
    target: &Target,
    stats: &Stats,
    cancel: &CancellationToken,
) {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        // Short enough that a client waiting through a broker restart gets
        // through soon after the new pod is Ready.
        .with_max_delay(Duration::from_secs(1))
        .without_max_times();
    let last_error = std::sync::Mutex::new(None::<String>);
    let attempt = || open(target);
    let opened = attempt.retry(backoff).notify(|e, next| {
        tracing::debug!("{peer}: {e}; retrying in {next:?}");
        if let Ok(mut last) = last_error.lock() {
            *last = Some(e.to_string());
        }
    });
    // The window bounds the whole effort, attempts included.
    let opened = tokio::time::timeout(target.retry_for, opened);
    let (pod, mut forwarder) = tokio::select! {
        () = cancel.cancelled() => return,
        opened = opened => match opened {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                stats.gave_up.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("{peer}: cannot reach the broker: {e}; closing the connection");
                return;
            }
            Err(_) => {
                stats.gave_up.fetch_add(1, Ordering::Relaxed);
                let last = last_error
                    .lock()
                    .ok()
                    .and_then(|l| l.clone())
                    .unwrap_or_else(|| "no answer".into());
                tracing::warn!(
                    "{peer}: no Ready broker pod within {:?} (last: {last}); closing the connection",
                    target.retry_for
                );
                return;
            }
        },
    };
    let Some(mut upstream) = forwarder.take_stream(target.port) else {
        tracing::warn!("{peer}: {}", ForwardError::NoStream(pod));
        forwarder.abort();
        return;
    };
    let pod_error = forwarder.take_error(target.port);
    stats.bridged.fetch_add(1, Ordering::Relaxed);
    tracing::debug!("{peer}: bridged to pod {pod}:{}", target.port);
    let copied = async {
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        match pod_error {
            Some(pod_error) => {
                tokio::select! {
                    res = copy => res.map(|_| ()),
                    // An error from the pod side (it restarted, the port
                    // closed) ends the connection; the client reconnects.
                    Some(msg) = pod_error => Err(std::io::Error::other(msg)),
                }
            }
            None => copy.await.map(|_| ()),
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        res = copied => match res {
            Ok(()) => tracing::debug!("{peer}: closed"),
            Err(e) => tracing::info!("{peer}: connection to pod {pod} ended: {e}"),
        },
    }
    forwarder.abort();
}
