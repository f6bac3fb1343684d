//! A scripted OpenAI-compatible endpoint that stands in for the LLM, so the
//! real vibectl (through the `llm` library it uses) can run in tests.
//!
//! It serves `POST /v1/chat/completions`, streaming (server-sent events) or
//! not, and `GET /v1/models`; it records every request body. Planner calls
//! (vibectl sends `response_format` of type `json_schema`) are answered with
//! the planner answer, by default a FEEDBACK action, which vibectl accepts
//! without running kubectl; every other call gets the text answer.
//!
//! ```no_run
//! let llm = testkit::llm::ScriptedLlm::start()?;
//! let user_dir = tempfile::tempdir()?;
//! llm.write_llm_config(user_dir.path(), "scripted")?; // LLM_USER_PATH
//! // run vibectl with LLM_USER_PATH=user_dir and `vibectl config set llm.model scripted`
//! assert!(llm.requests().iter().any(testkit::llm::is_planner_request));
//! # anyhow::Ok(())
//! ```
//!
//! The server runs on its own thread and runtime, so sync and async tests
//! alike can use it; [`ScriptedLlm::start_on`] binds another address (e.g.
//! `0.0.0.0:0` so containers can reach it).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The planner answer vibectl accepts without acting on the cluster.
pub fn feedback_action(message: &str) -> Value {
    json!({"action": {"action_type": "FEEDBACK", "message": message}})
}

/// Whether a recorded request body is a vibectl planner call.
pub fn is_planner_request(body: &Value) -> bool {
    body["response_format"]["type"] == "json_schema"
}

/// All message texts of a recorded request, joined, for assertions.
pub fn request_text(body: &Value) -> String {
    let mut out = Vec::new();
    for msg in body["messages"].as_array().into_iter().flatten() {
        match &msg["content"] {
            Value::String(s) => out.push(s.clone()),
            // The newer content-part form: [{"type": "text", "text": ...}].
            Value::Array(parts) => out.extend(
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str().map(String::from)),
            ),
            _ => {}
        }
    }
    out.join("\n")
}

struct Script {
    requests: Vec<Value>,
    planner_answer: Value,
    text_answer: String,
}

struct Shared {
    script: Mutex<Script>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running endpoint; dropping it stops the server.
pub struct ScriptedLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedLlm {
    /// Start on a free port of 127.0.0.1.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Start on `addr` (port 0 picks a free one).
    pub fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                requests: Vec::new(),
                planner_answer: feedback_action(
                    "Scripted endpoint: latency noted, no change needed this round.",
                ),
                text_answer: "Scripted endpoint: noted.".into(),
            }),
            arrived: Condvar::new(),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("scripted-llm".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
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
                    let listener = match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow::anyhow!("bind {addr}: {e}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(listener.local_addr().map_err(anyhow::Error::from));
                    let app = axum::Router::new()
                        .route("/v1/chat/completions", post(chat))
                        .route("/v1/models", get(models))
                        .with_state(server_shared);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stop_rx => {}
                    }
                });
            })?;
        let addr = ready_rx.recv()??;
        Ok(Self {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1`, the `api_base` for llm.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request body so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().requests.clone()
    }

    /// Block until `done(requests)` holds or `timeout` passes; returns the
    /// requests either way (check them). Do not call it from the thread
    /// that drives the program sending the requests.
    pub fn wait_for_requests(
        &self,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut script = self.shared.lock();
        while !done(&script.requests) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            script = match self.shared.arrived.wait_timeout(script, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
        script.requests.clone()
    }

    /// The answer to planner calls (a JSON value vibectl's schema accepts).
    pub fn set_planner_answer(&self, answer: Value) {
        self.shared.lock().planner_answer = answer;
    }

    /// The answer to every other call.
    pub fn set_text_answer(&self, answer: &str) {
        self.shared.lock().text_answer = answer.to_string();
    }

    /// Write `extra-openai-models.yaml` and `keys.json` into `dir` (use it
    /// as `LLM_USER_PATH`) so that llm model `model_id` is this endpoint.
    /// `supports_schema: true` matters: without it vibectl's planner refuses
    /// the model.
    pub fn write_llm_config(&self, dir: &Path, model_id: &str) -> anyhow::Result<()> {
        write_llm_config(dir, model_id, &self.base_url())
    }
}

/// [`ScriptedLlm::write_llm_config`] for an endpoint at `api_base`, e.g. one
/// a container reaches under another host name.
pub fn write_llm_config(dir: &Path, model_id: &str, api_base: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let models = format!(
        "- model_id: {model_id}\n  model_name: {model_id}\n  api_base: \"{api_base}\"\n  \
         api_key_name: {model_id}\n  supports_schema: true\n"
    );
    std::fs::write(dir.join("extra-openai-models.yaml"), models)?;
    let keys = json!({ model_id: "scripted-test-key" });
    std::fs::write(dir.join("keys.json"), serde_json::to_vec_pretty(&keys)?)?;
    Ok(())
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": []}))
}

async fn chat(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    let answer = {
        let mut script = shared.lock();
        script.requests.push(request.clone());
        if is_planner_request(&request) {
            script.planner_answer.to_string()
        } else {
            script.text_answer.clone()
        }
    };
    shared.arrived.notify_all();
    let model = request["model"].as_str().unwrap_or("scripted").to_string();
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20});
    if request["stream"] != true {
        return Json(json!({
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }],
            "usage": usage,
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": answer}), Value::Null),
        chunk(json!({}), json!("stop")),
    ];
    if request["stream_options"]["include_usage"] == true {
        events.push(json!({
            "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [], "usage": usage,
        }));
    }
    let mut text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    text.push_str("data: [DONE]\n\n");
    let stream = futures::stream::iter([Ok::<Bytes, Infallible>(Bytes::from(text))]);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn post(addr: SocketAddr, body: &Value) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let body = body.to_string();
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        })
    }

    #[test]
    fn answers_planner_and_text_calls_and_records_them() {
        let llm = ScriptedLlm::start().unwrap();
        let planner = json!({
            "model": "scripted", "stream": false,
            "messages": [{"role": "user", "content": "plan: Latest consumer p99 latency: 3.0 ms"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        });
        let out = post(llm.addr(), &planner);
        assert!(out.contains("FEEDBACK"), "{out}");
        let text = json!({"model": "scripted", "stream": true,
                          "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
        let out = post(llm.addr(), &text);
        assert!(out.contains("text/event-stream"), "{out}");
        assert!(out.contains("Scripted endpoint: noted."), "{out}");
        assert!(out.contains("data: [DONE]"), "{out}");
        let requests = llm.wait_for_requests(Duration::from_secs(5), |r| r.len() == 2);
        assert_eq!(requests.len(), 2);
        assert!(is_planner_request(&requests[0]));
        assert!(request_text(&requests[0]).contains("3.0 ms"));
        assert_eq!(request_text(&requests[1]), "hi");
    }

    #[test]
    fn llm_config_files_name_the_endpoint() {
        let llm = ScriptedLlm::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        llm.write_llm_config(dir.path(), "scripted").unwrap();
        let models = std::fs::read_to_string(dir.path().join("extra-openai-models.yaml")).unwrap();
        assert!(models.contains(&llm.base_url()));
        assert!(models.contains("supports_schema: true"));
        let keys: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("keys.json")).unwrap()).unwrap();
        assert!(keys["scripted"].is_string());
    }
}
