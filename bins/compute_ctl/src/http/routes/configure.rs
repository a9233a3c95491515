//! `POST /configure`: a spec for an `empty` compute (which then starts) or a `running` one
//! (which is reconfigured); blocks until `running` (200, [`ComputeStatusResponse`]) or
//! `failed` (500). A body that is not JSON is 415, a document of the wrong shape 422, a spec
//! that breaks a rule 400 (with located diagnostics, [`ValidationErrorBody`]), as upstream.
//!
//! [`ComputeStatusResponse`]: compute_spec::api::ComputeStatusResponse

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use compute_spec::api::{ComputeStatus, ValidationErrorBody};
use compute_spec::{Severity, ValidationReport};

use crate::http::routes::status::status_response;
use crate::http::{HttpState, error};

/// Whether a `Content-Type` is JSON as axum's `Json` extractor (and so upstream) accepts it:
/// `application/json` (parameters allowed) or `application/*+json`.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Codes of findings about the document's shape (wrong JSON types, missing fields): upstream
/// answers those 422, as its JSON extractor does, and other invalid specs 400.
const SHAPE_CODES: &[&str] = &[
    compute_spec::codes::INVALID_TYPE,
    compute_spec::codes::MISSING_FIELD,
];

fn refused(report: ValidationReport) -> Response {
    let shape = report
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error && SHAPE_CODES.contains(&d.code));
    let code = if shape {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = ValidationErrorBody {
        error: report.to_string(),
        diagnostics: report.diagnostics,
    };
    (code, axum::Json(body)).into_response()
}

/// The body as text, or the status and message of the refusal: a body over the limit keeps
/// axum's status (413) and one that is not UTF-8 is 400; the caller answers with the
/// `{"error"}` body of every other refusal.
fn body_text(body: Result<Bytes, BytesRejection>) -> Result<String, (StatusCode, String)> {
    let bytes = body.map_err(|rejection| {
        (
            rejection.status(),
            rejection.body_text().to_ascii_lowercase(),
        )
    })?;
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "request body is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

pub(crate) async fn post(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !is_json_content_type(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected request with `content-type: application/json`",
        );
    }
    let body = match body_text(body) {
        Ok(text) => text,
        Err((code, message)) => return error(code, message),
    };
    let options = crate::spec_source::validation_options(&state.opts);
    let spec = match crate::spec_source::accept_json(&body, &options) {
        Ok(spec) => spec,
        Err(report) => return refused(report),
    };
    crate::spec_source::report_accepted(&spec, &state.opts);
    let mut rx = state.compute.subscribe();
    if let Err(e) = state
        .compute
        .transition_with(ComputeStatus::ConfigurationPending, |s| {
            s.pending_spec = Some(spec)
        })
    {
        return error(StatusCode::PRECONDITION_FAILED, e.to_string());
    }
    let outcome = rx
        .wait_for(|s| {
            !matches!(
                s,
                ComputeStatus::ConfigurationPending
                    | ComputeStatus::Configuration
                    | ComputeStatus::Init
            )
        })
        .await
        .map(|s| *s);
    match outcome {
        Ok(ComputeStatus::Running) => axum::Json(status_response(&state.compute)).into_response(),
        Ok(ComputeStatus::Failed) => {
            let err = state.compute.with(|s| s.error.clone()).unwrap_or_default();
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("compute configuration failed: {err:?}"),
            )
        }
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("compute is {other} instead of running"),
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "compute is shutting down",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_utf8_is_refused_with_the_offset() {
        assert_eq!(body_text(Ok(Bytes::from_static(b"{}"))).unwrap(), "{}");
        let (code, message) = body_text(Ok(Bytes::from_static(b"{\"a\": \"\xff\"}"))).unwrap_err();
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(
            message,
            "request body is not UTF-8 (invalid byte at offset 7)"
        );
    }
}
