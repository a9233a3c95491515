//! `GET /dbs_and_roles`: the roles and databases of the running compute
//! ([`compute_spec::api::DbsAndRoles`], no password hashes), on a catalog session
//! (`crate::catalog_sessions`: 429 when they stay busy, 503 when postgres does not answer in
//! time).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::catalog;
use crate::catalog_request::RequestError;
use crate::http::HttpState;

pub(crate) async fn get(State(state): State<HttpState>) -> Response {
    let sessions = &state.catalog;
    let listed = sessions.bounded(async {
        let client = sessions
            .open(&state.opts.pg_config, catalog::guards(&state.compute), None)
            .await?;
        catalog::dbs_and_roles(&client)
            .await
            .map_err(RequestError::from_postgres)
    });
    match listed.await {
        Ok(listing) => axum::Json(listing).into_response(),
        Err(e) => e.response(format!("{e}")),
    }
}
