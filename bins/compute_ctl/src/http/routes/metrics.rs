//! `GET /metrics` (Prometheus text) and `GET /metrics.json` (startup timings,
//! `compute_spec::api::ComputeMetrics`).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::http::HttpState;

pub(crate) async fn json(State(state): State<HttpState>) -> Response {
    axum::Json(state.compute.with(|s| s.startup)).into_response()
}

pub(crate) async fn prometheus(State(state): State<HttpState>) -> Response {
    let activity = state.compute.activity.snapshot();
    let m = &state.compute.metrics;
    m.pg_current_downtime_ms.set(activity.current_downtime_ms);
    m.pg_downtime_ms_total.set(activity.total_downtime_ms);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}
