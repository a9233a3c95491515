//! Internal `POST /extension_server/{*filename}` (`?is_library=true` for a shared library):
//! downloads the remote extension that serves `filename` and installs it, as upstream (the
//! `neon` extension calls it when Postgres misses a file). 412 without
//! `--remote-ext-base-url`, 409 when the spec has no `remote_extensions`, 404 when the spec
//! does not serve the file (unknown library, extension not allowed), 500 when the download or
//! the install failed, 200 (empty body) once the files are in place.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::http::{HttpState, error};
use crate::remote_extensions::ExtensionRequestError;

/// The query string.
#[derive(Debug, Deserialize)]
pub(crate) struct Params {
    #[serde(default)]
    is_library: bool,
}

pub(crate) async fn post(
    State(state): State<HttpState>,
    Path(filename): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    if state.opts.remote_ext_base_url.is_none() {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "remote storage is not configured",
        );
    }
    let remote = state.compute.with(|s| {
        s.spec
            .as_ref()
            .and_then(|spec| spec.spec().remote_extensions.clone())
    });
    let Some(remote) = remote else {
        return error(
            StatusCode::CONFLICT,
            "information about remote extensions is unavailable",
        );
    };
    let request = state.compute.remote_extensions.request(
        &state.compute,
        &state.opts,
        &remote,
        &filename,
        params.is_library,
    );
    match request.await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e @ ExtensionRequestError::Lookup(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ ExtensionRequestError::Failed(_)) => {
            tracing::error!(filename, error = %e, "remote extension download failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}
