//! `GET /dbs_and_roles`: the roles and databases of the running compute
//! ([`compute_spec::api::DbsAndRoles`], no password hashes).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::catalog;
use crate::http::{HttpState, error};

pub(crate) async fn get(State(state): State<HttpState>) -> Response {
    let result = async {
        let client =
            catalog::connect(&state.opts.pg_config, catalog::guards(&state.compute), None).await?;
        catalog::dbs_and_roles(&client).await
    }
    .await;
    match result {
        Ok(listing) => axum::Json(listing).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}
