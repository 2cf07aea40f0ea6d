//! The HTTP listener: `/metrics`, `/api/v1/{stations,temporal,regions}`, `/healthz`.
//!
//! The server takes its listener and shutdown future as arguments (as mini-redis does), so tests
//! bind `127.0.0.1:0` and stop it deterministically.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Registry;
use serde::Deserialize;
use tokio::net::TcpListener;

use super::output::{Snapshot, TemporalRow};
use crate::runtime::Shared;
use crate::sync::lock;

/// What the handlers read.
pub struct AppState {
    /// Views, config and metrics of the running pipeline.
    pub shared: Arc<Shared>,
    /// The health registry.
    pub registry: Registry,
}

impl AppState {
    fn snapshot(&self) -> Snapshot {
        Snapshot::collect(&self.shared.config, &self.shared.views)
    }
}

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/stations", get(stations))
        .route("/api/v1/temporal", get(temporal))
        .route("/api/v1/regions", get(regions))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let snapshot = state.snapshot();
    publish_state_sizes(&state);
    let body = super::prometheus::render(
        &state.registry,
        &snapshot,
        state.shared.config.config().export.metrics_buckets,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Live keys per family, read from the views at scrape time rather than per batch.
fn publish_state_sizes(state: &AppState) {
    let mut sizes = [0usize; 4];
    for view in &state.shared.views {
        let view = lock(view);
        for (total, n) in sizes.iter_mut().zip(view.key_counts()) {
            *total += n;
        }
    }
    for (family, n) in ["station", "temporal", "regional", "distinct"]
        .iter()
        .zip(sizes)
    {
        state
            .shared
            .metrics
            .state_keys
            .with_label_values(&[family])
            .set(n as i64);
    }
}

async fn stations(State(state): State<Arc<AppState>>) -> Response {
    Json(state.snapshot().stations).into_response()
}

/// Filters of `/api/v1/temporal`.
#[derive(Debug, Deserialize)]
struct TemporalQuery {
    /// Only this grouping (`hour`, `month_of_year`, ...).
    grouping: Option<String>,
    /// Only this station; `all` for the rows over all stations.
    station: Option<String>,
}

async fn temporal(
    State(state): State<Arc<AppState>>,
    Query(query): Query<TemporalQuery>,
) -> Response {
    let rows: Vec<TemporalRow> = state
        .snapshot()
        .temporal
        .into_iter()
        .filter(|r| query.grouping.as_deref().is_none_or(|g| r.grouping == g))
        .filter(|r| match query.station.as_deref() {
            None => true,
            Some("all") => r.station.is_none(),
            Some(s) => r.station.as_deref() == Some(s),
        })
        .collect();
    Json(rows).into_response()
}

async fn regions(State(state): State<Arc<AppState>>) -> Response {
    Json(state.snapshot().regions).into_response()
}

/// `ok` (200), or `degraded` (503) with the reasons: failed partitions, a failed or stale
/// checkpoint.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let failures = lock(&state.shared.failures).clone();
    let checkpoints = state.shared.checkpointer().map(|c| c.health());
    let checkpoint_problem = checkpoints.as_ref().and_then(|h| h.problem());
    let mut reasons = Vec::new();
    if !failures.is_empty() {
        reasons.push(format!("{} partition(s) failed", failures.len()));
    }
    reasons.extend(checkpoint_problem.iter().cloned());
    let checkpoint = checkpoints.map(|h| {
        serde_json::json!({
            "status": if checkpoint_problem.is_some() { "degraded" } else { "ok" },
            "last_error": h.last_error,
            "seconds_since_last_durable": h.any_succeeded.then_some(h.since_success.as_secs_f64()),
            "interval_seconds": h.interval.as_secs_f64(),
        })
    });
    let body = serde_json::json!({
        "status": if reasons.is_empty() { "ok" } else { "degraded" },
        "reasons": reasons,
        "shutting_down": state.shared.shutdown.load(Ordering::Relaxed),
        "failures": failures,
        "checkpoint": checkpoint,
    });
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
