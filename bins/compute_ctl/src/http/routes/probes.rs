//! The Kubernetes probes, unauthenticated on both listeners ([`ProbeResponse`] bodies):
//! `GET /healthz` (liveness: 200 while the process answers and the postmaster's supervision
//! is not wedged, `crate::liveness`; 503 otherwise) and `GET /readyz` (readiness: 200 only in
//! `running`, 503 in every other status).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use compute_spec::api::{ComputeStatus, ProbeResponse};

use crate::http::HttpState;

pub(crate) async fn healthz(State(state): State<HttpState>) -> Response {
    let status = state.compute.status();
    let (code, reason) = match state.compute.supervision.check() {
        Ok(()) => (StatusCode::OK, None),
        Err(reason) => {
            tracing::warn!(%reason, "liveness probe refused");
            (StatusCode::SERVICE_UNAVAILABLE, Some(reason))
        }
    };
    (code, axum::Json(ProbeResponse { status, reason })).into_response()
}

pub(crate) async fn readyz(State(state): State<HttpState>) -> Response {
    let status = state.compute.status();
    let (code, reason) = match status {
        ComputeStatus::Running => (StatusCode::OK, None),
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(format!("the compute is {other}, not running")),
        ),
    };
    (code, axum::Json(ProbeResponse { status, reason })).into_response()
}
