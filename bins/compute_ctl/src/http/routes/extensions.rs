//! Internal `POST /extensions` ([`ExtensionInstallRequest`]): has an extension at a version
//! in a database (nothing, `ALTER EXTENSION … UPDATE` or `CREATE EXTENSION` in `public`,
//! `crate::catalog_changes`); 412 unless `running`; **201** with
//! [`ExtensionInstallResponse`], as upstream. A bad name is 400, an unknown database or an
//! extension version this installation does not ship 404, an update the server refuses 400,
//! each with the reason.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use compute_spec::api::{ExtensionInstallRequest, ExtensionInstallResponse};

use crate::http::HttpState;

pub(crate) async fn post(
    State(state): State<HttpState>,
    axum::Json(request): axum::Json<ExtensionInstallRequest>,
) -> Response {
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
