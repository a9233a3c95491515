//! `GET /status`: the compute's status ([`ComputeStatusResponse`]).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use compute_spec::api::ComputeStatusResponse;

use crate::http::HttpState;
use crate::state::Compute;

/// The current status object.
pub(crate) fn status_response(compute: &Compute) -> ComputeStatusResponse {
    let activity = compute.activity.snapshot();
    let status = compute.status();
    compute.with(|s| {
        let storage = s.spec.as_ref().map(|spec| spec.storage());
        ComputeStatusResponse {
            start_time: humantime::format_rfc3339_micros(s.start_time).to_string(),
            tenant: storage.and_then(|st| st.tenant_id).map(|t| t.to_string()),
            timeline: storage.and_then(|st| st.timeline_id).map(|t| t.to_string()),
            status,
            last_active: activity.last_active_rfc3339(),
            error: s.error.clone(),
            activity_reason: activity.reason,
            last_apply: s.last_apply.clone(),
            dropped_settings: s.dropped_settings.clone(),
        }
    })
}

pub(crate) async fn get(State(state): State<HttpState>) -> Response {
    axum::Json(status_response(&state.compute)).into_response()
}
