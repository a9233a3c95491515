//! `GET /insights`: the top statements of `pg_stat_statements` as a JSON string holding
//! `{"pg_stat_statements": […]}` (upstream's shape, `crate::insights`); 412 unless `running`,
//! 404 when the extension is not installed, 409 when its library is not preloaded.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::http::HttpState;

pub(crate) async fn get(State(state): State<HttpState>) -> Response {
    if let Some(refused) = crate::http::refuse_unless_running(&state) {
        return refused;
    }
    let sessions = &state.catalog;
    let collected = sessions.bounded(crate::insights::collect(
        sessions,
        &state.opts.pg_config,
        crate::catalog::guards(&state.compute),
    ));
    match collected.await {
        Ok(text) => axum::Json(text).into_response(),
        Err(e) => e.response(e.to_string()),
    }
}
