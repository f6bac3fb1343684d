//! Phase 3 against the fake API server: the listener bridges each accepted
//! connection through a kube-rs port-forward (websocket) to the pod, bytes
//! go both ways, and after the pod restarts new connections work again.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use sandbox::manifests::{self, Overrides};
use sandbox::portforward::{Listener, Target};
use testkit::kube_api::FakeKube;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::client_for;

/// Stands in for the broker's port. Speaks a framed protocol like Kafka's:
/// a 4-byte big-endian length, then the payload; answers `pod:` + payload,
/// so a reply proves both directions.
async fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                loop {
                    let Ok(len) = s.read_u32().await else { return };
                    let mut payload = vec![0u8; len as usize];
                    if s.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    let mut reply = b"pod:".to_vec();
                    reply.extend_from_slice(&payload);
                    if s.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A fake cluster with Kafka applied and Ready, and the listener in front.
async fn setup(retry_for: Duration) -> (FakeKube, Listener, CancellationToken) {
    let fake = FakeKube::start().unwrap();
    fake.set_pod_ready_delay(Duration::from_millis(100));
    fake.set_port_forward_backend(manifests::PORTFORWARD_PORT, start_backend().await);
    let client = client_for(&fake);
    let env: std::collections::HashMap<&str, &str> = [("HOME", "/nonexistent")].into();
    let overrides = Overrides::from_config(&sandbox::Config::from_env(&env).unwrap());
    sandbox::deploy::apply_all(&client, &manifests::render(&overrides).unwrap())
        .await
        .unwrap();
    sandbox::deploy::wait_broker_ready(&client, Duration::from_secs(20))
        .await
        .unwrap();
    let target = Target {
        pods: Api::<Pod>::namespaced(client, manifests::NAMESPACE),
        selector: manifests::POD_SELECTOR.into(),
        port: manifests::PORTFORWARD_PORT,
        retry_for,
    };
    let cancel = CancellationToken::new();
    let listener = Listener::start("127.0.0.1:0".parse().unwrap(), target, cancel.clone())
        .await
        .unwrap();
    (fake, listener, cancel)
}

/// Send one framed request on `s` and read the reply, bounded.
async fn exchange(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let io = async {
        s.write_u32(msg.len() as u32).await?;
        s.write_all(msg).await?;
        let mut reply = vec![0u8; msg.len() + 4];
        s.read_exact(&mut reply).await?;
        Ok(reply)
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .map_err(std::io::Error::other)?
}

/// A new connection through the listener, one request and its reply.
async fn round_trip(addr: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    exchange(&mut s, msg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_go_both_ways_through_the_pod_port_forward() {
    let (fake, listener, cancel) = setup(Duration::from_secs(5)).await;
    let reply = round_trip(listener.local_addr, b"ApiVersions")
        .await
        .unwrap();
    assert_eq!(reply, b"pod:ApiVersions");
    // A larger payload crosses several websocket frames each way.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let reply = round_trip(listener.local_addr, &big).await.unwrap();
    assert_eq!(&reply[..4], b"pod:");
    assert_eq!(&reply[4..], &big[..]);
    assert_eq!(listener.stats.bridged.load(Ordering::Relaxed), 2);
    // One port-forward per accepted connection, pod looked up each time.
    assert_eq!(fake.port_forwards_opened(), 2);
    let lookups = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/namespaces/kafka/pods")
        .filter(|r| r.query_param("labelSelector").as_deref() == Some(manifests::POD_SELECTOR))
        .count();
    assert_eq!(lookups, 2);
    let ws = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/pods/kafka-0/portforward"))
        .unwrap();
    assert_eq!(ws.query_param("ports").as_deref(), Some("9092"));
    cancel.cancel();
    listener.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_reach_the_restarted_pod() {
    let (fake, listener, cancel) = setup(Duration::from_secs(20)).await;
    let addr = listener.local_addr;

    // A connection open while the pod dies is closed (the client reconnects).
    let mut open = TcpStream::connect(addr).await.unwrap();
    assert_eq!(exchange(&mut open, b"before").await.unwrap(), b"pod:before");
    let old_uid = fake
        .object("/api/v1/namespaces/kafka/pods/kafka-0")
        .unwrap()["metadata"]["uid"]
        .clone();
    let mut buf = [0u8; 64];

    let restarted = Instant::now();
    fake.restart_pod("kafka", "kafka-0", Duration::from_millis(1500))
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), open.read(&mut buf))
        .await
        .expect("the old connection was not closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");

    // The first new connection waits (retrying inside the sandbox) until
    // the new pod is Ready, then works.
    let reply = round_trip(addr, b"after").await.unwrap();
    let recovery = restarted.elapsed();
    assert_eq!(reply, b"pod:after");
    println!(
        "port-forward recovery after a pod restart: {recovery:?} \
         (pod gone 1.5 s, then 0.1 s to Ready)"
    );
    assert!(recovery >= Duration::from_millis(1500), "{recovery:?}");
    let pod = fake
        .object("/api/v1/namespaces/kafka/pods/kafka-0")
        .unwrap();
    assert_ne!(pod["metadata"]["uid"], old_uid, "a new pod answered");
    cancel.cancel();
    listener.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_cannot_reach_a_pod_is_retried_then_closed() {
    let (fake, listener, cancel) = setup(Duration::from_millis(800)).await;
    fake.restart_pod("kafka", "kafka-0", Duration::from_secs(3600))
        .unwrap();
    let started = Instant::now();
    let mut s = TcpStream::connect(listener.local_addr).await.unwrap();
    s.write_u32(5).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without data");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "gave up too early: {waited:?}"
    );
    assert_eq!(listener.stats.gave_up.load(Ordering::Relaxed), 1);
    // It retried: several pod lookups for this one connection.
    let lookups = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/namespaces/kafka/pods")
        .filter(|r| r.query_param("labelSelector").as_deref() == Some(manifests::POD_SELECTOR))
        .count();
    assert!(lookups >= 3, "{lookups} lookups");
    cancel.cancel();
    listener.join().await;
}
