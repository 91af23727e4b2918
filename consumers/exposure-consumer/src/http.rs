//! `/health` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use prometheus_client::encoding::prometheus_text;

use crate::metrics::Metrics;

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .with_state(metrics)
}

async fn health(State(m): State<Arc<Metrics>>) -> Response {
    match m.unhealthy() {
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, Json(why)).into_response(),
        None => Json(serde_json::json!({
            "status": "ok",
            "assigned_partitions": m.assigned.get(),
        }))
        .into_response(),
    }
}

async fn prometheus(State(m): State<Arc<Metrics>>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        m.render(),
    )
        .into_response()
}
