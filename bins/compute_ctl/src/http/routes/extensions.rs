//! Internal `POST /extensions` ([`ExtensionInstallRequest`]): has an extension at a version
//! in a database (nothing, `ALTER EXTENSION … UPDATE` or `CREATE EXTENSION` in `public`,
//! `crate::catalog_changes`); 412 unless `running`; **201** with
//! [`ExtensionInstallResponse`], as upstream. A bad name is 400, an unknown database or an
//! extension version this installation does not ship 404, an update the server refuses 400,
//! each with the reason; a refused body (not JSON 400, the wrong shape 422, not a JSON
//! content type 415) too, as the JSON `{"error"}` body.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use compute_spec::api::{ExtensionInstallRequest, ExtensionInstallResponse};

use crate::http::HttpState;

pub(crate) async fn post(
    State(state): State<HttpState>,
    request: Result<axum::Json<ExtensionInstallRequest>, JsonRejection>,
) -> Response {
    let axum::Json(request) = match request {
        Ok(request) => request,
        Err(rejection) => return crate::http::json_rejection(rejection),
    };
    if let Some(refused) = crate::http::refuse_unless_running(&state) {
        return refused;
    }
    let sessions = &state.catalog;
    let installed = sessions.bounded(crate::catalog_changes::install_extension(
        sessions,
        &state.opts.pg_config,
        crate::catalog::guards(&state.compute),
        &request,
    ));
    match installed.await {
        Ok(version) => {
            let body = ExtensionInstallResponse {
                extension: request.extension,
                version,
            };
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        Err(e) => e.response(format!("failed to install extension: {e}")),
    }
}
