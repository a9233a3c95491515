//! Internal `POST /grants` ([`SetRoleGrantsRequest`]): gives a role the schema privileges it
//! lacks (`crate::catalog_changes`); 412 unless `running`; **201** with the request echoed,
//! as upstream. A bad name is 400, an unknown database, schema or role 404, a privilege the
//! server refuses for a schema 400, each with the reason; a refused body (not JSON 400, the
//! wrong shape 422, not a JSON content type 415) too, as the JSON `{"error"}` body.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use compute_spec::api::{SetRoleGrantsRequest, SetRoleGrantsResponse};

use crate::http::HttpState;

pub(crate) async fn post(
    State(state): State<HttpState>,
    request: Result<axum::Json<SetRoleGrantsRequest>, JsonRejection>,
) -> Response {
    let axum::Json(request) = match request {
        Ok(request) => request,
        Err(rejection) => return crate::http::json_rejection(rejection),
    };
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
