//! `GET /metrics` (the Prometheus text format 0.0.4, or OpenMetrics 1.0 when `Accept` asks for
//! it: `crate::metrics::Format`) and `GET /metrics.json` (startup timings,
//! `compute_spec::api::ComputeMetrics`).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::http::HttpState;
use crate::metrics::Format;

pub(crate) async fn json(State(state): State<HttpState>) -> Response {
    axum::Json(state.compute.with(|s| s.metrics())).into_response()
}

pub(crate) async fn prometheus(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let activity = state.compute.activity.snapshot();
    let m = &state.compute.metrics;
    m.set_downtime(activity.current_downtime_ms, activity.total_downtime_ms);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        m.encode(format),
    )
        .into_response()
}
