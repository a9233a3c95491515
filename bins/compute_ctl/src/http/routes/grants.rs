//! Internal `POST /grants` ([`SetRoleGrantsRequest`]): gives a role the schema privileges it
//! lacks (`crate::catalog_changes`); 412 unless `running`; **201** with the request echoed,
//! as upstream. A bad name is 400, an unknown database, schema or role 404, a privilege the
//! server refuses for a schema 400, each with the reason.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use compute_spec::api::{SetRoleGrantsRequest, SetRoleGrantsResponse};

use crate::http::HttpState;

pub(crate) async fn post(
    State(state): State<HttpState>,
    axum::Json(request): axum::Json<SetRoleGrantsRequest>,
) -> Response {
    if let Some(refused) = crate::http::refuse_unless_running(&state) {
        return refused;
    }
    let sessions = &state.catalog;
    let granted = sessions.bounded(crate::catalog_changes::set_role_grants(
        sessions,
        &state.opts.pg_config,
        crate::catalog::guards(&state.compute),
        &request,
    ));
    match granted.await {
        Ok(()) => {
            let body: SetRoleGrantsResponse = request;
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        Err(e) => e.response(format!(
            "failed to grant role privileges to the schema: {e}"
        )),
    }
}
