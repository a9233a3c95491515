//! `POST /check_writability`: writes the health-check row (412 unless `running`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::catalog;
use crate::http::{HttpState, error};

pub(crate) async fn post(State(state): State<HttpState>) -> Response {
    if let Some(refused) = crate::http::refuse_unless_running(&state) {
        return refused;
    }
    let result = async {
        let client =
            catalog::connect(&state.opts.pg_config, catalog::guards(&state.compute), None).await?;
        catalog::check_writability(&client).await
    }
    .await;
    match result {
        Ok(()) => axum::Json(true).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}
