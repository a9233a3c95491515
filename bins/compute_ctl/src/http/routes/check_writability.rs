//! `POST /check_writability`: writes the health-check row (412 unless `running`), on a catalog
//! session (`crate::catalog_sessions`: 429 when they stay busy, 503 when postgres does not
//! answer in time).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::catalog;
use crate::catalog_request::RequestError;
use crate::http::HttpState;

pub(crate) async fn post(State(state): State<HttpState>) -> Response {
    if let Some(refused) = crate::http::refuse_unless_running(&state) {
        return refused;
    }
    let sessions = &state.catalog;
    let checked = sessions.bounded(async {
        let client = sessions
            .open(&state.opts.pg_config, catalog::guards(&state.compute), None)
            .await?;
        catalog::check_writability(&client)
            .await
            .map_err(RequestError::from_postgres)
    });
    match checked.await {
        Ok(()) => axum::Json(true).into_response(),
        Err(e) => e.response(format!("{e}")),
    }
}
