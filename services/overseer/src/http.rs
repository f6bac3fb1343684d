//! HTTP: the dashboard page (served from the binary, no CDN), the JSON API
//! it polls, `/metrics` and `/healthz`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use demo_common::stats::{LoadStats, MetricsSnapshot};
use demo_common::status::{self, AgentLogLine};
use serde::Serialize;

use crate::sandbox_view::SandboxView;
use crate::window::Point;
use crate::{Shared, poll};

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");

/// Most points one history answer carries; longer histories are thinned
/// evenly (a chart is at most about this many pixels wide anyway).
const MAX_CHART_POINTS: usize = 1500;

/// The API changes every poll; a cached answer would freeze the page.
const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");

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
        .route("/healthz", get(healthz))
        .with_state(shared)
}

/// `/api/snapshot`: everything the page's headline, panels and states show.
#[derive(Serialize)]
struct Snapshot {
    /// What metrics.json holds; `None` until the first poll.
    metrics: Option<MetricsSnapshot>,
    /// The sources' own `/stats` from the last poll; `None` when down.
    producer: Option<LoadStats>,
    consumer: Option<LoadStats>,
    target_latency_ms: f64,
    poll_interval_s: f64,
    /// Consumer figures older than this are not written to latency.txt.
    stale_after_s: f64,
    /// What the charts cover.
    history_s: f64,
    sandbox: SandboxView,
}

async fn snapshot(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let config = &shared.config;
    let live = shared.live();
    let body = Snapshot {
        metrics: live.snapshot.clone(),
        producer: live.producer.clone(),
        consumer: live.consumer.clone(),
        target_latency_ms: config.target_latency_ms,
        poll_interval_s: config.poll_interval.as_secs_f64(),
        stale_after_s: config.stale_after.as_secs_f64(),
        history_s: config.history.as_secs_f64(),
        sandbox: live.sandbox.clone(),
    };
    ([NO_STORE], Json(body))
}

/// `/api/history`: the charts' points and the agent's actions to mark.
#[derive(Serialize)]
struct History {
    points: Vec<Point>,
    actions: Vec<AgentLogLine>,
}

async fn history(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let live = shared.live();
    let stride = live.history.len().div_ceil(MAX_CHART_POINTS).max(1);
    let points: Vec<Point> = live.history.points().step_by(stride).copied().collect();
    // Actions over the whole span the charts cover, including those from
    // before the first poll (the sandbox may have started first).
    let span_ms = shared.config.history.as_millis() as u64;
    let oldest = points
        .last()
        .map_or(0, |p| p.time_ms.saturating_sub(span_ms));
    let actions = live
        .sandbox
        .actions
        .iter()
        .filter(|a| a.time_ms >= oldest)
        .cloned()
        .collect();
    ([NO_STORE], Json(History { points, actions }))
}

/// `/healthz`: 200 while the poll loop keeps polling, 503 once it stalls
/// (the page would still load, but nothing would be written).
async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let last = shared.last_poll_ms.load(Ordering::Relaxed);
    if poll::poll_loop_alive(status::now_ms(), last, shared.config.poll_interval) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the poll loop has stalled\n",
        )
    }
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
