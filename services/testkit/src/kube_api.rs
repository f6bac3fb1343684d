//! A small fake Kubernetes API server over real HTTP on 127.0.0.1, for
//! testing kube-rs code where no real API server can run.
//!
//! What it does, and what it stands in for:
//! - objects in memory, addressed by their REST path; `GET` (object or
//!   list, with equality label and field selectors), `POST` (create, 409
//!   when it exists), `PATCH` (server-side apply and the merge patches, all
//!   applied as a JSON merge), `DELETE`;
//! - `?watch=true` as newline-delimited JSON events, resumable from a
//!   `resourceVersion`, as kube-rs's watcher and `await_condition` use;
//! - `/version`;
//! - just enough controller behaviour for a StatefulSet: applying one
//!   creates pod `<name>-0`, which turns Ready after a configurable delay
//!   (the kubelet), and the StatefulSet's status follows; a Secret of type
//!   `kubernetes.io/service-account-token` gets a token (the token
//!   controller);
//! - the pod `portforward` subresource as a websocket, bridged to a local
//!   TCP server per port. Wire details verified with kube 5.0: the client
//!   offers `v5.channel.k8s.io, v4.channel.k8s.io` and exactly one is
//!   answered; the first message on each channel is `[channel, port low
//!   byte, port high byte]`; data frames are `[0, bytes...]`, errors
//!   `[1, text]`;
//! - [`FakeKube::restart_pod`]: the pod dies (open port-forwards get an
//!   error frame and close), is gone for a while (port-forward requests are
//!   refused), then comes back under a new uid and turns Ready again.
//!
//! Every request is recorded (method, path, query, content type, body) for
//! assertions. The server runs on its own thread and runtime, so sync and
//! async tests alike can use it.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, watch};

/// Base64 of the token the fake token controller hands out.
const FAKE_TOKEN_B64: &str = "ZmFrZS1zZXJ2aWNlLWFjY291bnQtdG9rZW4="; // "fake-service-account-token"
/// Base64 of a placeholder CA for token secrets.
const FAKE_CA_B64: &str = "ZmFrZS1jYQ=="; // "fake-ca"

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: String,
}

impl RecordedRequest {
    /// The value of query parameter `name`, if present.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where an object lives: API prefix (`api/v1`, `apis/apps/v1`), plural,
/// namespace (for namespaced kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    prefix: String,
    plural: String,
    namespace: Option<String>,
    name: String,
}

impl Key {
    fn path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(
                "/{}/namespaces/{ns}/{}/{}",
                self.prefix, self.plural, self.name
            ),
            None => format!("/{}/{}/{}", self.prefix, self.plural, self.name),
        }
    }
}

/// A parsed REST path.
#[derive(Debug, Clone)]
struct Target {
    prefix: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => (format!("api/{v}"), rest),
            ["apis", g, v, rest @ ..] => (format!("apis/{g}/{v}"), rest),
            _ => return None,
        };
        let s = |i: usize| rest.get(i).map(|x| x.to_string());
        let (namespace, plural, name, sub) =
            if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
                (s(1), s(2)?, s(3), s(4))
            } else {
                (None, s(0)?, s(1), s(2))
            };
        Some(Self {
            prefix,
            plural,
            namespace,
            name,
            subresource: sub,
        })
    }

    fn key(&self) -> Option<Key> {
        Some(Key {
            prefix: self.prefix.clone(),
            plural: self.plural.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone()?,
        })
    }

    fn matches_collection(&self, key: &Key) -> bool {
        key.prefix == self.prefix
            && key.plural == self.plural
            && (self.namespace.is_none() || self.namespace == key.namespace)
    }
}

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uid: u64,
    events: Vec<Event>,
    requests: Vec<RecordedRequest>,
    backends: HashMap<u16, SocketAddr>,
    pod_ready_delay: Duration,
    portforwards_opened: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Latest resourceVersion, for watchers to wake up on.
    latest: watch::Sender<u64>,
    /// Pods (namespace/name) that just died: open port-forwards close.
    killed: broadcast::Sender<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge the fake for the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store `object` under `key`, stamping metadata, and record the event.
    fn store(&self, key: &Key, mut object: Value, kind: &'static str) -> Value {
        let rv = {
            let mut inner = self.lock();
            inner.rv += 1;
            let rv = inner.rv;
            if object["metadata"]["uid"].is_null() {
                inner.uid += 1;
                object["metadata"]["uid"] = format!("uid-{}", inner.uid).into();
                object["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
            }
            object["metadata"]["resourceVersion"] = rv.to_string().into();
            if kind == "DELETED" {
                inner.objects.remove(key);
            } else {
                inner.objects.insert(key.clone(), object.clone());
            }
            inner.events.push(Event {
                rv,
                kind,
                key: key.clone(),
                object: object.clone(),
            });
            rv
        };
        self.latest.send_replace(rv);
        object
    }

    fn get(&self, key: &Key) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }
}

/// The fake API server. Dropping it stops the server.
pub struct FakeKube {
    url: String,
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKube {
    /// Start on a free port of 127.0.0.1. Pods turn Ready 200 ms after they
    /// appear unless [`FakeKube::set_pod_ready_delay`] says otherwise.
    pub fn start() -> anyhow::Result<Self> {
        let (latest, _) = watch::channel(0);
        let (killed, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                pod_ready_delay: Duration::from_millis(200),
                ..Default::default()
            }),
            latest,
            killed,
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fake-kube".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow::anyhow!("bind: {e}")));
                            return;
                        }
                    };
                    let addr = listener.local_addr().map_err(anyhow::Error::from);
                    let _ = ready_tx.send(addr.map(|a| (a, tokio::runtime::Handle::current())));
                    let app = axum::Router::new()
                        .fallback(handle)
                        .with_state(server_shared);
                    // Not a graceful shutdown: open watches and port-forwards
                    // would hold it for minutes. Dropping the runtime ends them.
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stop_rx => {}
                    }
                });
            })?;
        let (addr, handle) = ready_rx.recv()??;
        Ok(Self {
            url: format!("http://{addr}"),
            shared,
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig pointing at this server (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\ncurrent-context: fake\n",
            self.url
        )
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The object at REST path `path` (e.g.
    /// `/apis/apps/v1/namespaces/kafka/statefulsets/kafka`).
    pub fn object(&self, path: &str) -> Option<Value> {
        let key = Target::parse(path)?.key()?;
        self.shared.get(&key)
    }

    /// Create or replace the object at `path`, as another client would
    /// (watchers see ADDED or MODIFIED).
    pub fn put_object(&self, path: &str, object: Value) -> anyhow::Result<()> {
        let key = Target::parse(path)
            .and_then(|t| t.key())
            .ok_or_else(|| anyhow::anyhow!("not an object path: {path}"))?;
        let kind = if self.shared.get(&key).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.shared.store(&key, object, kind);
        Ok(())
    }

    /// How long a new pod takes to turn Ready.
    pub fn set_pod_ready_delay(&self, delay: Duration) {
        self.shared.lock().pod_ready_delay = delay;
    }

    /// Port-forwards to any pod's `port` are bridged to `addr`.
    pub fn set_port_forward_backend(&self, port: u16, addr: SocketAddr) {
        self.shared.lock().backends.insert(port, addr);
    }

    /// How many port-forward websockets were opened so far.
    pub fn port_forwards_opened(&self) -> u64 {
        self.shared.lock().portforwards_opened
    }

    /// The pod dies now: its open port-forwards get an error frame and
    /// close, and it is deleted. After `down_for` a new pod of that name
    /// appears (new uid), turning Ready after the pod-ready delay. Returns
    /// at once; the restart plays out on the server's runtime.
    pub fn restart_pod(
        &self,
        namespace: &str,
        name: &str,
        down_for: Duration,
    ) -> anyhow::Result<()> {
        let key = Key {
            prefix: "api/v1".into(),
            plural: "pods".into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        };
        let old = self
            .shared
            .get(&key)
            .ok_or_else(|| anyhow::anyhow!("no pod {namespace}/{name}"))?;
        let shared = Arc::clone(&self.shared);
        let _ = shared.killed.send(format!("{namespace}/{name}"));
        shared.store(&key, old.clone(), "DELETED");
        set_owner_ready(&shared, &old, false);
        self.handle.spawn(async move {
            // The fake's own clock for the pod's absence (the kubelet
            // restarting it), not a test waiting on something.
            tokio::time::sleep(down_for).await;
            let mut pod = old;
            pod["metadata"]["uid"] = Value::Null;
            pod["status"] = pod_status(false);
            let pod = shared.store(&key, pod, "ADDED");
            schedule_ready(shared, key, pod);
        });
        Ok(())
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn pod_status(ready: bool) -> Value {
    let status = if ready { "True" } else { "False" };
    json!({
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "ContainersReady", "status": status},
            {"type": "Ready", "status": status},
        ],
    })
}

/// Mark the StatefulSet owning `pod` (by the `<sts>-<n>` name) rolled out
/// or not.
fn set_owner_ready(shared: &Shared, pod: &Value, ready: bool) {
    let Some(pod_name) = pod["metadata"]["name"].as_str() else {
        return;
    };
    let Some((sts_name, _)) = pod_name.rsplit_once('-') else {
        return;
    };
    let key = Key {
        prefix: "apis/apps/v1".into(),
        plural: "statefulsets".into(),
        namespace: pod["metadata"]["namespace"].as_str().map(String::from),
        name: sts_name.into(),
    };
    let Some(mut sts) = shared.get(&key) else {
        return;
    };
    let generation = sts["metadata"]["generation"].as_i64().unwrap_or(1);
    let revision = format!("{sts_name}-rev{generation}");
    let n = i64::from(ready);
    sts["status"] = json!({
        "replicas": 1,
        "readyReplicas": n,
        "availableReplicas": n,
        "currentReplicas": 1,
        "updatedReplicas": 1,
        "observedGeneration": generation,
        "currentRevision": revision,
        "updateRevision": revision,
    });
    shared.store(&key, sts, "MODIFIED");
}

/// After the pod-ready delay, mark `pod` Ready (if it is still the same
/// pod) and its StatefulSet rolled out.
fn schedule_ready(shared: Arc<Shared>, key: Key, pod: Value) {
    let delay = shared.lock().pod_ready_delay;
    tokio::spawn(async move {
        // The fake kubelet's start-up time.
        tokio::time::sleep(delay).await;
        let Some(mut current) = shared.get(&key) else {
            return;
        };
        if current["metadata"]["uid"] != pod["metadata"]["uid"] {
            return;
        }
        current["status"] = pod_status(true);
        let current = shared.store(&key, current, "MODIFIED");
        set_owner_ready(&shared, &current, true);
    });
}

/// RFC 7386 JSON merge.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": reason, "message": message,
        "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok_json(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn query_map(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

/// Equality selectors: `a=b,c==d`.
fn selector_matches(selector: Option<&String>, lookup: impl Fn(&str) -> Option<String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| {
        let (k, v) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .unwrap_or((term, ""));
        lookup(k.trim()).as_deref() == Some(v.trim())
    })
}

fn object_matches(object: &Value, q: &HashMap<String, String>) -> bool {
    let labels_ok = selector_matches(q.get("labelSelector"), |k| {
        object["metadata"]["labels"][k].as_str().map(String::from)
    });
    let fields_ok = selector_matches(q.get("fieldSelector"), |k| {
        let mut v = object;
        for part in k.split('.') {
            v = &v[part];
        }
        v.as_str().map(String::from)
    });
    labels_ok && fields_ok
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    shared.lock().requests.push(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });

    if path == "/version" {
        return ok_json(
            StatusCode::OK,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.4+k3s1",
                "gitCommit": "fake", "gitTreeState": "clean",
                "buildDate": "2025-08-01T00:00:00Z", "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64",
            }),
        );
    }
    let Some(target) = Target::parse(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no route {path}"),
        );
    };
    let q = query_map(&query);

    if target.subresource.as_deref() == Some("portforward") {
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(e) => return e.into_response(),
        };
        return portforward(shared, target, q, ws);
    }

    match (parts.method, target.name.is_some()) {
        (Method::GET, false) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_collection(shared, target, q)
        }
        (Method::GET, false) => list(&shared, &target, &q),
        (Method::GET, true) => match target.key().and_then(|k| shared.get(&k)) {
            Some(obj) => ok_json(StatusCode::OK, &obj),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{path} not found"),
            ),
        },
        (Method::POST, false) => create(&shared, &target, &body),
        (Method::PATCH, true) => patch(&shared, &target, &body, content_type.as_deref(), &q),
        (Method::DELETE, true) => match target.key() {
            Some(key) => match shared.get(&key) {
                Some(obj) => {
                    let obj = shared.store(&key, obj, "DELETED");
                    ok_json(StatusCode::OK, &obj)
                }
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{path} not found"),
                ),
            },
            None => status(StatusCode::NOT_FOUND, "NotFound", &path),
        },
        (m, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{m} {path} is not supported by the fake"),
        ),
    }
}

fn list(shared: &Shared, target: &Target, q: &HashMap<String, String>) -> Response {
    let inner = shared.lock();
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|(k, v)| target.matches_collection(k) && object_matches(v, q))
        .map(|(_, v)| v.clone())
        .collect();
    ok_json(
        StatusCode::OK,
        &json!({
            "kind": "List", "apiVersion": "v1",
            "metadata": {"resourceVersion": inner.rv.to_string()},
            "items": items,
        }),
    )
}

fn create(shared: &Arc<Shared>, target: &Target, body: &Bytes) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
    };
    let Some(name) = object["metadata"]["name"].as_str().map(String::from) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name missing",
        );
    };
    let key = Key {
        prefix: target.prefix.clone(),
        plural: target.plural.clone(),
        namespace: target.namespace.clone(),
        name: name.clone(),
    };
    if shared.get(&key).is_some() {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", target.plural),
        );
    }
    if let Some(ns) = &target.namespace {
        object["metadata"]["namespace"] = ns.clone().into();
    }
    object["metadata"]["generation"] = 1.into();
    let stored = shared.store(&key, object, "ADDED");
    ok_json(StatusCode::CREATED, &stored)
}

fn patch(
    shared: &Arc<Shared>,
    target: &Target,
    body: &Bytes,
    content_type: Option<&str>,
    q: &HashMap<String, String>,
) -> Response {
    let Some(key) = target.key() else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no name");
    };
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
    };
    let apply = content_type == Some("application/apply-patch+yaml");
    if apply && q.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "fieldManager is required for apply patch",
        );
    }
    let existing = shared.get(&key);
    let created = existing.is_none();
    if created && !apply {
        return status(StatusCode::NOT_FOUND, "NotFound", &key.path());
    }
    let mut object = existing.clone().unwrap_or_else(|| json!({"metadata": {}}));
    let old_spec = object["spec"].clone();
    merge(&mut object, &patch);
    if let Some(ns) = &key.namespace {
        object["metadata"]["namespace"] = ns.clone().into();
    }
    object["metadata"]["name"] = key.name.clone().into();
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
    if created || object["spec"] != old_spec {
        object["metadata"]["generation"] = (generation + 1).into();
    }
    if let Some(manager) = q.get("fieldManager") {
        let operation = if apply { "Apply" } else { "Update" };
        object["metadata"]["managedFields"] =
            json!([{"manager": manager, "operation": operation, "apiVersion": "v1"}]);
    }
    // The token controller fills in service-account token secrets.
    if target.plural == "secrets"
        && object["type"] == "kubernetes.io/service-account-token"
        && object["data"]["token"].is_null()
    {
        object["data"]["token"] = FAKE_TOKEN_B64.into();
        object["data"]["ca.crt"] = FAKE_CA_B64.into();
    }
    let kind = if created { "ADDED" } else { "MODIFIED" };
    let stored = shared.store(&key, object, kind);
    if target.plural == "statefulsets" {
        reconcile_statefulset(shared, &key, &stored);
    }
    ok_json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &stored,
    )
}

/// The StatefulSet controller, reduced to one replica: make sure pod
/// `<name>-0` exists and report the rollout.
fn reconcile_statefulset(shared: &Arc<Shared>, key: &Key, sts: &Value) {
    let pod_key = Key {
        prefix: "api/v1".into(),
        plural: "pods".into(),
        namespace: key.namespace.clone(),
        name: format!("{}-0", key.name),
    };
    match shared.get(&pod_key) {
        Some(pod) => {
            let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            set_owner_ready(shared, &pod, ready);
        }
        None => {
            let template = &sts["spec"]["template"];
            let pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_key.name,
                    "namespace": pod_key.namespace,
                    "labels": template["metadata"]["labels"],
                },
                "spec": template["spec"],
                "status": pod_status(false),
            });
            let pod = shared.store(&pod_key, pod, "ADDED");
            set_owner_ready(shared, &pod, false);
            schedule_ready(Arc::clone(shared), pod_key, pod);
        }
    }
}

fn watch_collection(shared: Arc<Shared>, target: Target, q: HashMap<String, String>) -> Response {
    let since: u64 = q
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(290));
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let mut latest = shared.latest.subscribe();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut cursor = since;
        // From "0" (or no version), start with the current objects.
        if since == 0 {
            let current: Vec<Value> = {
                let inner = shared.lock();
                cursor = inner.rv;
                inner
                    .objects
                    .iter()
                    .filter(|(k, v)| target.matches_collection(k) && object_matches(v, &q))
                    .map(|(_, v)| v.clone())
                    .collect()
            };
            for object in current {
                let line = format!("{}\n", json!({"type": "ADDED", "object": object}));
                if tx.send(line.into()).await.is_err() {
                    return;
                }
            }
        }
        loop {
            let pending: Vec<Event> = {
                let inner = shared.lock();
                inner
                    .events
                    .iter()
                    .filter(|e| e.rv > cursor)
                    .cloned()
                    .collect()
            };
            for event in pending {
                cursor = event.rv;
                if !target.matches_collection(&event.key) || !object_matches(&event.object, &q) {
                    continue;
                }
                let line = format!("{}\n", json!({"type": event.kind, "object": event.object}));
                if tx.send(line.into()).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                changed = latest.changed() => if changed.is_err() { return },
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn portforward(
    shared: Arc<Shared>,
    target: Target,
    q: HashMap<String, String>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(key) = target.key() else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no pod name");
    };
    let Some(pod) = shared.get(&key) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{}\" not found", key.name),
        );
    };
    let running = pod["status"]["phase"] == "Running";
    let Some(port) = q.get("ports").and_then(|p| p.parse::<u16>().ok()) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "one numeric port expected",
        );
    };
    if !running {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "pod is not running");
    }
    let backend = {
        let mut inner = shared.lock();
        inner.portforwards_opened += 1;
        inner.backends.get(&port).copied()
    };
    let pod_id = format!("{}/{}", key.namespace.clone().unwrap_or_default(), key.name);
    let killed = shared.killed.subscribe();
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| bridge(socket, port, backend, pod_id, killed))
}

async fn bridge(
    mut socket: WebSocket,
    port: u16,
    backend: Option<SocketAddr>,
    pod_id: String,
    mut killed: broadcast::Receiver<String>,
) {
    let [lo, hi] = port.to_le_bytes();
    for channel in [0u8, 1u8] {
        let init = Bytes::from(vec![channel, lo, hi]);
        if socket.send(Message::Binary(init)).await.is_err() {
            return;
        }
    }
    let stream = match backend {
        Some(addr) => tokio::net::TcpStream::connect(addr).await.ok(),
        None => None,
    };
    let Some(stream) = stream else {
        let text = format!("error forwarding port {port} to pod {pod_id}: connection refused");
        let mut frame = vec![1u8];
        frame.extend_from_slice(text.as_bytes());
        let _ = socket.send(Message::Binary(frame.into())).await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    };
    let (mut from_pod, mut to_pod) = stream.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(data))) if data.len() > 1 && data[0] == 0 => {
                    if to_pod.write_all(&data[1..]).await.is_err() {
                        break;
                    }
                }
                // v5 close signal for a channel: the client is done writing.
                Some(Ok(Message::Binary(data))) if data.first() == Some(&255) => {
                    let _ = to_pod.shutdown().await;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            n = from_pod.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                Ok(n) => {
                    let mut frame = Vec::with_capacity(n + 1);
                    frame.push(0u8);
                    frame.extend_from_slice(&buf[..n]);
                    if socket.send(Message::Binary(frame.into())).await.is_err() {
                        break;
                    }
                }
            },
            gone = killed.recv() => {
                if matches!(&gone, Ok(id) if *id == pod_id) || matches!(gone, Err(broadcast::error::RecvError::Closed)) {
                    let mut frame = vec![1u8];
                    frame.extend_from_slice(format!("pod {pod_id} was restarted").as_bytes());
                    let _ = socket.send(Message::Binary(frame.into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_targets() {
        let t = Target::parse("/api/v1/namespaces/kafka/pods/kafka-0/portforward").unwrap();
        assert_eq!(t.prefix, "api/v1");
        assert_eq!(t.namespace.as_deref(), Some("kafka"));
        assert_eq!(t.plural, "pods");
        assert_eq!(t.name.as_deref(), Some("kafka-0"));
        assert_eq!(t.subresource.as_deref(), Some("portforward"));
        let t = Target::parse("/api/v1/namespaces/kafka").unwrap();
        assert_eq!(
            (t.plural.as_str(), t.name.as_deref()),
            ("namespaces", Some("kafka"))
        );
        assert!(t.namespace.is_none());
        let t = Target::parse("/apis/apps/v1/namespaces/kafka/statefulsets").unwrap();
        assert_eq!(t.prefix, "apis/apps/v1");
        assert!(t.name.is_none());
        assert_eq!(t.key(), None);
        assert!(Target::parse("/healthz").is_none());
    }

    #[test]
    fn merge_and_selectors() {
        let mut a = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut a, &json!({"b": {"c": null, "e": 4}, "f": [1]}));
        assert_eq!(a, json!({"a": 1, "b": {"d": 3, "e": 4}, "f": [1]}));
        let obj = json!({"metadata": {"name": "x", "labels": {"app": "kafka"}}});
        let q = query_map("labelSelector=app%3Dkafka&fieldSelector=metadata.name%3Dx");
        assert!(object_matches(&obj, &q));
        let q = query_map("labelSelector=app%3Dother");
        assert!(!object_matches(&obj, &q));
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
    }

    #[test]
    fn http_roundtrip_records_requests() {
        let fake = FakeKube::start().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let text = rt.block_on(async {
            let mut s = tokio::net::TcpStream::connect(fake.url().trim_start_matches("http://"))
                .await
                .unwrap();
            s.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        });
        assert!(text.contains("v1.33.4+k3s1"), "{text}");
        assert_eq!(fake.requests()[0].path, "/version");
    }
}
