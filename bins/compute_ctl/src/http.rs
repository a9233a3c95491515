//! The HTTP API (axum): the external router for the control plane (JWT-authenticated when a
//! JWK set is configured, except `/metrics`) and the internal, read-only router. The routes
//! are listed in [`EXTERNAL_ROUTES`] and [`INTERNAL_ROUTES`], which a test checks against the
//! router and against `openapi.json`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use compute_spec::ComputeStatus;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
    /// Token verification; `None`: unauthenticated (`--allow-unauthenticated`).
    pub auth: Arc<Option<Authenticator>>,
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
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// The internal router.
pub fn internal_router(state: HttpState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics.json", get(metrics_json))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// The header carrying a request's id (kept from the request, else a new UUID v4), returned
/// on the response as upstream does.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Each request runs in a span `request{method, uri, request_id}`; the outcome is logged at
/// INFO with its status code and latency (`/status` and `/metrics` polls at DEBUG).
async fn request_span(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        request_id = %id,
    );
    let poll = matches!(
        request.uri().path(),
        "/status" | "/metrics" | "/metrics.json"
    );
    async move {
        let started = Instant::now();
        let mut response = next.run(request).await;
        let code = response.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if poll && code < 400 {
            tracing::debug!(code, latency_ms, "request done");
        } else {
            tracing::info!(code, latency_ms, "request done");
        }
        if let Ok(value) = header::HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    }
    .instrument(span)
    .await
}

/// The two listeners, served until [`Servers::stop`].
#[derive(Debug)]
pub struct Servers {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Servers {
    /// Binds the external listener (`--http-bind`, default `::` for IPv4 and IPv6, falling
    /// back to `0.0.0.0` where IPv6 is unavailable) and the internal one
    /// (`--internal-http-bind`), and serves them.
    pub async fn start(opts: &Options, state: HttpState) -> anyhow::Result<Servers> {
        let external = match opts.http_bind {
            Some(ip) => bind(SocketAddr::new(ip, opts.external_http_port)).await,
            None => bind_dual_stack(opts.external_http_port).await,
        }
        .map_err(|e| anyhow::anyhow!("bind the external HTTP API: {e}"))?;
        let internal = bind(SocketAddr::new(
            opts.internal_http_bind,
            opts.internal_http_port,
        ))
        .await
        .map_err(|e| anyhow::anyhow!("bind the internal HTTP API: {e}"))?;
        let stop = CancellationToken::new();
        let tasks = vec![
            serve(external, external_router(state.clone()), "external", &stop),
            serve(internal, internal_router(state), "internal", &stop),
        ];
        Ok(Servers { stop, tasks })
    }

    /// Graceful shutdown: no new connections, requests in flight (an answer to
    /// `/terminate`) finish; bounded to 2 s.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{addr}: {e}")))
}

/// `[::]:port` accepting IPv4 too (`IPV6_V6ONLY` off), else `0.0.0.0:port` when the host has
/// no IPv6.
async fn bind_dual_stack(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    let dual = (|| {
        let socket = tokio::net::TcpSocket::new_v6()?;
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv6V6Only, &false)
            .map_err(std::io::Error::from)?;
        socket.set_reuseaddr(true)?;
        socket.bind(v6)?;
        socket.listen(1024)
    })();
    match dual {
        Ok(listener) => Ok(listener),
        Err(e)
            if e.raw_os_error().is_some_and(|code| {
                code == nix::libc::EAFNOSUPPORT || code == nix::libc::EADDRNOTAVAIL
            }) =>
        {
            tracing::info!(error = %e, "no IPv6: the external HTTP API listens on IPv4 only");
            bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).await
        }
        Err(e) => Err(std::io::Error::new(e.kind(), format!("{v6}: {e}"))),
    }
}

fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    name: &'static str,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "{name} HTTP API listening");
    }
    let stop = stop.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "{name} HTTP API stopped");
        }
    })
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
    let verdict = state.auth.as_ref().as_ref().map(|a| {
        a.authorize(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
    });
    match verdict {
        None | Some(Ok(())) => next.run(request).await,
        Some(Err(e)) => {
            let reason = match &e {
                crate::auth::AuthError::Unverified { reason } => reason.as_str(),
                _ => "",
            };
            tracing::info!(path = %request.uri().path(), status = e.status(), error = %e, reason, "request refused");
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
    /// Settings left out of postgresql.conf as unsupported by the postgres binary
    /// (`--drop-unsupported-settings`); absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_settings: Vec<pg_config::DroppedSetting>,
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
            dropped_settings: s.dropped_settings.clone(),
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

async fn configure(State(state): State<HttpState>, headers: HeaderMap, body: String) -> Response {
    if !is_json_content_type(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected request with `content-type: application/json`",
        );
    }
    let options = crate::spec_source::validation_options(&state.opts);
    let spec = match crate::spec_source::accept_json(&body, &options) {
        Ok(spec) => spec,
        Err(report) => {
            let shape = report.diagnostics.iter().any(|d| {
                d.severity == compute_spec::Severity::Error && SHAPE_CODES.contains(&d.code)
            });
            let code = if shape {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::BAD_REQUEST
            };
            return (
                code,
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
            auth: Arc::new(None),
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
