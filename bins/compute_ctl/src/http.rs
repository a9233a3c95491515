//! The HTTP API (axum): the external router for the control plane (JWT-authenticated when a
//! JWK set is configured, except `/metrics`) and the internal, read-only router. The routes
//! are listed in [`EXTERNAL_ROUTES`] and [`INTERNAL_ROUTES`], which a test checks against the
//! router and against `openapi.json`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use compute_spec::ComputeStatus;
use serde::Serialize;
use serde_json::json;

use crate::auth::Authenticator;
use crate::catalog;
use crate::cli::Options;
use crate::state::{ApplySummary, Compute, ShutdownMode};

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path.
    pub path: &'static str,
    /// Whether a JWT is required (when a JWK set is configured).
    pub authenticated: bool,
}

const fn route(method: &'static str, path: &'static str, authenticated: bool) -> Route {
    Route {
        method,
        path,
        authenticated,
    }
}

/// Routes of the external listener.
pub const EXTERNAL_ROUTES: &[Route] = &[
    route("GET", "/status", true),
    route("GET", "/metrics.json", true),
    route("GET", "/metrics", false),
    route("POST", "/configure", true),
    route("POST", "/terminate", true),
    route("POST", "/check_writability", true),
    route("GET", "/dbs_and_roles", true),
    route("GET", "/info", true),
];

/// Routes of the internal listener (never authenticated).
pub const INTERNAL_ROUTES: &[Route] = &[
    route("GET", "/status", false),
    route("GET", "/metrics.json", false),
    route("GET", "/metrics", false),
];

/// What handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The compute.
    pub compute: Arc<Compute>,
    /// Settings.
    pub opts: Arc<Options>,
    /// Token verification; `None`: unauthenticated.
    pub auth: Arc<RwLock<Option<Authenticator>>>,
}

/// The external router.
pub fn external_router(state: HttpState) -> Router {
    let authenticated = Router::new()
        .route("/status", get(status))
        .route("/metrics.json", get(metrics_json))
        .route("/configure", post(configure))
        .route("/terminate", post(terminate))
        .route("/check_writability", post(check_writability))
        .route("/dbs_and_roles", get(dbs_and_roles))
        .route("/info", get(info))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .route("/metrics", get(metrics))
        .merge(authenticated)
        .with_state(state)
}

/// The internal router.
pub fn internal_router(state: HttpState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics.json", get(metrics_json))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Binds `addr` and serves `router` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    name: &'static str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("bind the {name} HTTP API to {addr}: {e}"))?;
    tracing::info!(%addr, "{name} HTTP API listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "{name} HTTP API stopped");
        }
    }))
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": message.into() }))).into_response()
}

async fn require_auth(
    State(state): State<HttpState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let verdict = {
        let auth = state.auth.read().unwrap_or_else(|e| e.into_inner());
        auth.as_ref().map(|a| {
            a.authorize(
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            )
        })
    };
    match verdict {
        None | Some(Ok(())) => next.run(request).await,
        Some(Err(e)) => {
            tracing::info!(path = %request.uri().path(), status = e.status(), "request refused");
            error(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED),
                e.to_string(),
            )
        }
    }
}

/// Body of `GET /status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusResponse {
    /// RFC 3339.
    pub start_time: String,
    /// Tenant, hex.
    pub tenant: Option<String>,
    /// Timeline, hex.
    pub timeline: Option<String>,
    /// Status, snake_case.
    pub status: ComputeStatus,
    /// Last user activity (RFC 3339), `null` until the first.
    pub last_active: Option<String>,
    /// Why the compute failed.
    pub error: Option<String>,
    /// What kind of activity `last_active` is.
    pub activity_reason: Option<String>,
    /// Last reconciliation, per operation.
    pub last_apply: Option<ApplySummary>,
}

/// The current status object.
pub fn status_response(compute: &Compute) -> StatusResponse {
    let activity = compute.activity.snapshot();
    compute.with(|s| {
        let storage = s.spec.as_ref().map(|spec| spec.storage());
        StatusResponse {
            start_time: humantime::format_rfc3339_micros(s.start_time).to_string(),
            tenant: storage.and_then(|st| st.tenant_id).map(|t| t.to_string()),
            timeline: storage.and_then(|st| st.timeline_id).map(|t| t.to_string()),
            status: s.status,
            last_active: activity.last_active_rfc3339(),
            error: s.error.clone(),
            activity_reason: activity
                .reason
                .and_then(|r| serde_json::to_value(r).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
            last_apply: s.last_apply.clone(),
        }
    })
}

async fn status(State(state): State<HttpState>) -> Response {
    axum::Json(status_response(&state.compute)).into_response()
}

async fn metrics_json(State(state): State<HttpState>) -> Response {
    axum::Json(state.compute.with(|s| s.startup)).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let activity = state.compute.activity.snapshot();
    let m = &state.compute.metrics;
    m.pg_current_downtime_ms.set(activity.current_downtime_ms);
    m.pg_downtime_ms_total.set(activity.total_downtime_ms);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.compute.metrics.encode(),
    )
        .into_response()
}

async fn configure(State(state): State<HttpState>, body: String) -> Response {
    let options = crate::spec_source::validation_options(&state.opts);
    let spec = match crate::spec_source::accept_json(&body, &options) {
        Ok(spec) => spec,
        Err(report) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({ "error": report.to_string(), "diagnostics": report.diagnostics }),
                ),
            )
                .into_response();
        }
    };
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

async fn terminate(
    State(state): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mode = match query.get("mode").map(String::as_str) {
        None | Some("fast") => ShutdownMode::Fast,
        Some("immediate") => ShutdownMode::Immediate,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid mode {other:?}: fast or immediate"),
            );
        }
    };
    let lsn = |compute: &Compute| json!({ "lsn": compute.with(|s| s.terminate_lsn.clone()) });
    let status = state.compute.status();
    if status == ComputeStatus::Terminated {
        return (StatusCode::CREATED, axum::Json(lsn(&state.compute))).into_response();
    }
    if !matches!(status, ComputeStatus::Empty | ComputeStatus::Running) {
        return error(
            StatusCode::PRECONDITION_FAILED,
            format!("invalid compute status: {status}"),
        );
    }
    let mut rx = state.compute.subscribe();
    state.compute.request_shutdown(mode, true);
    match rx.wait_for(|s| *s == ComputeStatus::Terminated).await {
        Ok(_) => axum::Json(lsn(&state.compute)).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "compute_ctl is exiting"),
    }
}

async fn check_writability(State(state): State<HttpState>) -> Response {
    let status = state.compute.status();
    if status != ComputeStatus::Running {
        return error(
            StatusCode::PRECONDITION_FAILED,
            format!("invalid compute status: {status}"),
        );
    }
    let result = async {
        let client = catalog::connect(&state.opts.pg_config, None).await?;
        catalog::check_writability(&client).await
    }
    .await;
    match result {
        Ok(()) => axum::Json(true).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn dbs_and_roles(State(state): State<HttpState>) -> Response {
    let result = async {
        let client = catalog::connect(&state.opts.pg_config, None).await?;
        catalog::dbs_and_roles(&client).await
    }
    .await;
    match result {
        Ok(listing) => axum::Json(listing).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn info() -> Response {
    let num_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    axum::Json(json!({ "num_cpus": num_cpus })).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use clap::Parser;
    use tower::ServiceExt;

    use super::*;

    fn state() -> HttpState {
        let cli = crate::cli::Cli::try_parse_from([
            "compute_ctl",
            "-D",
            "/nonexistent/pgdata",
            "-C",
            "postgresql://cloud_admin@127.0.0.1:1/postgres",
            "-b",
            "/nonexistent/postgres",
        ])
        .unwrap();
        HttpState {
            compute: Arc::new(Compute::new()),
            opts: Arc::new(cli.into_options().unwrap()),
            auth: Arc::new(RwLock::new(None)),
        }
    }

    async fn call(router: &Router, method: &str, path: &str) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from("{}"))
            .unwrap();
        router.clone().oneshot(request).await.unwrap().status()
    }

    /// Every listed route answers its method (and 405 for the other one); unknown paths 404;
    /// the OpenAPI document lists exactly the external routes.
    #[tokio::test]
    async fn routes_match_router_and_openapi() {
        let router = external_router(state());
        for route in EXTERNAL_ROUTES {
            let other = if route.method == "GET" { "POST" } else { "GET" };
            assert_eq!(
                call(&router, other, route.path).await,
                StatusCode::METHOD_NOT_ALLOWED,
                "{route:?}"
            );
            // Safe in status `empty`: bad body (400), bad mode (400), not running (412).
            let path = if route.path == "/terminate" {
                "/terminate?mode=bogus"
            } else {
                route.path
            };
            let code = call(&router, route.method, path).await;
            assert!(
                code != StatusCode::NOT_FOUND && code != StatusCode::METHOD_NOT_ALLOWED,
                "{route:?}: {code}"
            );
        }
        assert_eq!(call(&router, "GET", "/nope").await, StatusCode::NOT_FOUND);
        let internal = internal_router(state());
        for route in INTERNAL_ROUTES {
            assert_eq!(
                call(&internal, route.method, route.path).await,
                StatusCode::OK,
                "{route:?}"
            );
        }
        assert_eq!(
            call(&internal, "POST", "/configure").await,
            StatusCode::NOT_FOUND
        );

        let doc: serde_json::Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let secured = op.get("security").is_some();
                documented.insert((method.to_uppercase(), path.clone(), secured));
            }
        }
        let routed: BTreeSet<_> = EXTERNAL_ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned(), r.authenticated))
            .collect();
        assert_eq!(documented, routed);
    }
}
