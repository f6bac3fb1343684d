//! HTTP: the dashboard page (served from the binary, no CDN), the JSON API
//! it polls, `/metrics` and `/healthz`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use demo_common::stats::MetricsSnapshot;
use demo_common::status::AgentLogLine;
use serde::Serialize;

use crate::Shared;
use crate::sandbox_view::{self, SandboxView};
use crate::window::Point;

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/style.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    STYLE_CSS,
                )
            }),
        )
        .route("/api/snapshot", get(snapshot))
        .route("/api/history", get(history))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared)
}

/// `/api/snapshot`: everything the page's headline, panels and state show.
#[derive(Serialize)]
struct Snapshot {
    /// `None` until the first poll.
    metrics: Option<MetricsSnapshot>,
    target_latency_ms: f64,
    poll_interval_s: f64,
    sandbox: SandboxView,
}

async fn snapshot(State(shared): State<Arc<Shared>>) -> Json<Snapshot> {
    let metrics = shared.latest.lock().ok().and_then(|l| l.clone());
    let dir = shared.config.status_dir.clone();
    // File reads are small; keep them off the async workers anyway.
    let sandbox = tokio::task::spawn_blocking(move || sandbox_view::read(&dir))
        .await
        .unwrap_or_else(|_| sandbox_view::read(std::path::Path::new("/nonexistent")));
    Json(Snapshot {
        metrics,
        target_latency_ms: shared.config.target_latency_ms,
        poll_interval_s: shared.config.poll_interval.as_secs_f64(),
        sandbox,
    })
}

/// `/api/history`: the charts' points and the agent's actions to mark.
#[derive(Serialize)]
struct History {
    points: Vec<Point>,
    actions: Vec<AgentLogLine>,
}

async fn history(State(shared): State<Arc<Shared>>) -> Json<History> {
    let points: Vec<Point> = shared
        .history
        .lock()
        .map(|h| h.points().copied().collect())
        .unwrap_or_default();
    let oldest = points.first().map(|p| p.time_ms).unwrap_or(0);
    let dir = shared.config.status_dir.clone();
    let actions = tokio::task::spawn_blocking(move || sandbox_view::actions(&dir))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.time_ms >= oldest)
        .collect();
    Json(History { points, actions })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}
