//! The HTTP endpoints: `/metrics` (Prometheus text), `/stats` (JSON
//! [`demo_common::stats::LoadStats`] of the last window) and `/healthz`
//! (200 once a broker has been reached, 503 before).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::metrics::Shared;

/// The router over the shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/healthz", get(healthz))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    // Refreshes the `connected` gauge before encoding.
    let _ = shared.load_stats();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn stats(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    Json(shared.load_stats())
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.link.ever_connected() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for the broker\n")
    }
}
