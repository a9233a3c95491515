//! `POST /terminate[?mode=fast|immediate]`: stops Postgres and answers the shutdown LSN
//! ([`TerminateResponse`]) once `terminated`; 201 when already terminated, 412 unless `empty`
//! or `running`, as upstream, except that a call made while another is stopping the compute
//! waits and gets the same answer, and that a `failed` compute is stopped too (upstream
//! answers 412 there, leaving a compute whose reconfiguration failed running until a signal);
//! compute_ctl then exits 1.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use compute_spec::api::{ComputeStatus, TerminateMode, TerminateResponse};

use crate::http::{HttpState, error};
use crate::state::Compute;

fn response(compute: &Compute) -> TerminateResponse {
    TerminateResponse {
        lsn: compute.with(|s| s.terminate_lsn),
    }
}

pub(crate) async fn post(
    State(state): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mode = match query.get("mode").map(String::as_str) {
        None | Some("fast") => TerminateMode::Fast,
        Some("immediate") => TerminateMode::Immediate,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid mode {other:?}: fast or immediate"),
            );
        }
    };
    let status = state.compute.status();
    if status == ComputeStatus::Terminated {
        return (StatusCode::CREATED, axum::Json(response(&state.compute))).into_response();
    }
    let already_stopping = matches!(
        status,
        ComputeStatus::TerminationPendingFast | ComputeStatus::TerminationPendingImmediate
    );
    let stoppable = matches!(
        status,
        ComputeStatus::Empty | ComputeStatus::Running | ComputeStatus::Failed
    );
    if !already_stopping && !stoppable {
        return crate::http::invalid_status(status);
    }
    let mut rx = state.compute.subscribe();
    // A call that arrives while an earlier one is stopping the compute waits with it and gets
    // the same answer (upstream answers it 412): a retried request is not an error.
    if !already_stopping {
        state.compute.request_shutdown(mode.into(), true);
    }
    match rx.wait_for(|s| *s == ComputeStatus::Terminated).await {
        Ok(_) => axum::Json(response(&state.compute)).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "compute_ctl is exiting"),
    }
}
