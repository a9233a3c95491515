//! The HTTP API (axum): the external router for the control plane (JWT-authenticated, except
//! `/metrics` and the probes `/healthz` and `/readyz`) and the internal router
//! (unauthenticated: status, metrics, the probes, the catalog
//! changes `/grants` and `/extensions`, and the remote extension download
//! `/extension_server/{filename}`); the listeners and their graceful stop; the
//! request-id and request-span middleware. Connections are bounded in number and time
//! ([`listener`]). Handlers are in [`routes`], one file per route;
//! every body is a `compute_spec::api` type. The routes are listed in [`EXTERNAL_ROUTES`] and
//! [`INTERNAL_ROUTES`], which a test checks against the router and against `openapi.json`,
//! whose component schemas a test checks against the API types.

pub(crate) mod listener;
pub(crate) mod routes;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use compute_spec::api::ErrorBody;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::catalog_sessions::CatalogSessions;
use crate::cli::Options;
use crate::process::RunAs;
use crate::state::Compute;

/// One route of the API.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    /// `GET` or `POST`.
    pub(crate) method: &'static str,
    /// The path.
    pub(crate) path: &'static str,
    /// Whether a JWT is required (when a JWK set is configured).
    pub(crate) authenticated: bool,
}

#[cfg(test)]
const fn route(method: &'static str, path: &'static str, authenticated: bool) -> Route {
    Route {
        method,
        path,
        authenticated,
    }
}

/// Routes of the external listener.
#[cfg(test)]
pub(crate) const EXTERNAL_ROUTES: &[Route] = &[
    route("GET", "/status", true),
    route("GET", "/metrics.json", true),
    route("GET", "/metrics", false),
    route("GET", "/healthz", false),
    route("GET", "/readyz", false),
    route("POST", "/configure", true),
    route("POST", "/terminate", true),
    route("POST", "/check_writability", true),
    route("GET", "/dbs_and_roles", true),
    route("GET", "/database_schema", true),
    route("GET", "/insights", true),
    route("GET", "/info", true),
];

/// Routes of the internal listener (never authenticated).
#[cfg(test)]
pub(crate) const INTERNAL_ROUTES: &[Route] = &[
    route("GET", "/status", false),
    route("GET", "/metrics.json", false),
    route("GET", "/metrics", false),
    route("GET", "/healthz", false),
    route("GET", "/readyz", false),
    route("POST", "/grants", false),
    route("POST", "/extensions", false),
    route("POST", "/extension_server/{filename}", false),
];

/// What handlers share.
#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    /// The compute.
    pub(crate) compute: Arc<Compute>,
    /// Settings.
    pub(crate) opts: Arc<Options>,
    /// Token verification; `None`: unauthenticated (`--allow-unauthenticated`).
    pub(crate) auth: Arc<Option<Authenticator>>,
    /// The user Postgres programs (`pg_dump`) run as when compute_ctl is root.
    pub(crate) run_as: Option<RunAs>,
    /// The catalog routes' shared session budget.
    pub(crate) catalog: Arc<CatalogSessions>,
}

/// The external router.
pub(crate) fn external_router(state: HttpState) -> Router {
    let authenticated = Router::new()
        .route("/status", get(routes::status::get))
        .route("/metrics.json", get(routes::metrics::json))
        // A spec is accepted up to validation's own limit (64 MiB, as `-S`), not axum's 2 MB.
        .route(
            "/configure",
            post(routes::configure::post).layer(axum::extract::DefaultBodyLimit::max(
                compute_spec::ValidationOptions::default().max_bytes,
            )),
        )
        .route("/terminate", post(routes::terminate::post))
        .route("/check_writability", post(routes::check_writability::post))
        .route("/dbs_and_roles", get(routes::dbs_and_roles::get))
        .route("/database_schema", get(routes::database_schema::get))
        .route("/insights", get(routes::insights::get))
        .route("/info", get(routes::info::get))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .route("/metrics", get(routes::metrics::prometheus))
        .route("/healthz", get(routes::probes::healthz))
        .route("/readyz", get(routes::probes::readyz))
        .merge(authenticated)
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// The internal router.
pub(crate) fn internal_router(state: HttpState) -> Router {
    Router::new()
        .route("/status", get(routes::status::get))
        .route("/metrics.json", get(routes::metrics::json))
        .route("/metrics", get(routes::metrics::prometheus))
        .route("/healthz", get(routes::probes::healthz))
        .route("/readyz", get(routes::probes::readyz))
        .route("/grants", post(routes::grants::post))
        .route("/extensions", post(routes::extensions::post))
        .route(
            "/extension_server/{*filename}",
            post(routes::extension_server::post),
        )
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// The header carrying a request's id (kept from the request, else a new UUID v4), returned
/// on the response as upstream does.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

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
        "/status" | "/metrics" | "/metrics.json" | "/healthz" | "/readyz"
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
pub(crate) struct Servers {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Servers {
    /// Binds the external listener (`--http-bind`, default `::` for IPv4 and IPv6, falling
    /// back to `0.0.0.0` where IPv6 is unavailable) and the internal one
    /// (`--internal-http-bind`), and serves them.
    pub(crate) async fn start(opts: &Options, state: HttpState) -> anyhow::Result<Servers> {
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
        let limits = listener::ListenerLimits::from_options(opts);
        let tasks = vec![
            serve(
                external,
                external_router(state.clone()),
                limits,
                "external",
                &stop,
            ),
            serve(internal, internal_router(state), limits, "internal", &stop),
        ];
        Ok(Servers { stop, tasks })
    }

    /// Graceful shutdown: no new connections, requests in flight (an answer to
    /// `/terminate`) finish; bounded to 2 s.
    pub(crate) async fn stop(self) {
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
    limits: listener::ListenerLimits,
    name: &'static str,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, max_connections = limits.max_connections, "{name} HTTP API listening");
    }
    tokio::spawn(listener::serve(
        listener,
        router,
        limits,
        name,
        stop.clone(),
    ))
}

/// An error answer: `code` with upstream's `{"error": "…"}` body.
/// The 412 answer (upstream's text) when the compute is not `running`, else `None`.
pub(crate) fn refuse_unless_running(state: &HttpState) -> Option<Response> {
    match state.compute.status() {
        compute_spec::api::ComputeStatus::Running => None,
        status => Some(invalid_status(status)),
    }
}

/// 412 `invalid compute status: <status>`, upstream's answer to a request the status forbids.
pub(crate) fn invalid_status(status: compute_spec::api::ComputeStatus) -> Response {
    error(
        StatusCode::PRECONDITION_FAILED,
        format!("invalid compute status: {status}"),
    )
}

pub(crate) fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: message.into(),
    };
    (code, axum::Json(body)).into_response()
}

/// A body axum's `Json` extractor refused (not JSON or not UTF-8: 400, the wrong shape: 422,
/// not a JSON content type: 415, too large: 413): its status and message, in the
/// `{"error"}` body of every other refusal instead of axum's plain text.
pub(crate) fn json_rejection(rejection: axum::extract::rejection::JsonRejection) -> Response {
    error(rejection.status(), rejection.body_text())
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
            run_as: None,
            catalog: Arc::new(CatalogSessions::new(
                crate::catalog_sessions::CatalogLimits {
                    max_sessions: 4,
                    queue_timeout: std::time::Duration::from_secs(1),
                    statement_timeout: std::time::Duration::from_secs(1),
                },
            )),
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

    /// Without `--http-bind` the external listener is `::` with IPv4 mapped in (an IPv4
    /// client connects), or `0.0.0.0` where the host has no IPv6.
    #[tokio::test]
    async fn the_default_external_bind_is_dual_stack() {
        let listener = bind_dual_stack(0).await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_unspecified(), "{addr}");
        let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port());
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(v4), listener.accept());
        connected.unwrap();
        accepted.unwrap();
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
            // Reads answer; the catalog changes refuse a body without a JSON content type; the
            // extension server route refuses without a base URL.
            let want = if route.path == "/readyz" {
                // Status `empty`: not ready.
                StatusCode::SERVICE_UNAVAILABLE
            } else if route.method == "GET" {
                StatusCode::OK
            } else if route.path.starts_with("/extension_server/") {
                StatusCode::PRECONDITION_FAILED
            } else {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            };
            assert_eq!(
                call(&internal, route.method, route.path).await,
                want,
                "{route:?}"
            );
        }
        assert_eq!(
            call(&internal, "POST", "/configure").await,
            StatusCode::NOT_FOUND
        );

        // The document lists the external routes, and the internal-only ones marked
        // `x-internal: true` (the internal copies of the external reads are described in
        // `info.description`).
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let secured = op.get("security").is_some();
                let internal = op.get("x-internal") == Some(&serde_json::Value::Bool(true));
                documented.insert((method.to_uppercase(), path.clone(), secured, internal));
            }
        }
        let external = EXTERNAL_ROUTES.iter().map(|r| {
            (
                r.method.to_owned(),
                r.path.to_owned(),
                r.authenticated,
                false,
            )
        });
        let internal_only = INTERNAL_ROUTES
            .iter()
            .filter(|r| !EXTERNAL_ROUTES.iter().any(|e| e.path == r.path))
            .map(|r| (r.method.to_owned(), r.path.to_owned(), false, true));
        let routed: BTreeSet<_> = external.chain(internal_only).collect();
        assert_eq!(documented, routed);
    }

    /// The JSON Schema of an API type, as schemars derives it.
    fn derived<T: schemars::JsonSchema>() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(T)).unwrap()
    }

    fn names(value: &serde_json::Value, key: &str) -> BTreeSet<String> {
        if key == "enum" {
            // schemars spells an enum with documented variants as `oneOf` of `const`s.
            let variants = value["oneOf"].as_array().into_iter().flatten();
            let consts = variants.flat_map(|v| {
                let one = v["const"].as_str().map(str::to_owned);
                one.into_iter().chain(names(v, "enum"))
            });
            let mut all: BTreeSet<String> = consts.collect();
            if let Some(items) = value["enum"].as_array() {
                all.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned)));
            }
            return all;
        }
        match &value[key] {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Every body type of the API has a component schema of its name in `openapi.json` with
    /// the same properties, required properties and enum values as the type derives.
    #[test]
    fn openapi_components_match_the_api_types() {
        use compute_spec::api::*;
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        let components = &doc["components"]["schemas"];
        let types = [
            ("ComputeStatus", derived::<ComputeStatus>()),
            ("ComputeStatusResponse", derived::<ComputeStatusResponse>()),
            ("ApplySummary", derived::<ApplySummary>()),
            ("OperationResult", derived::<OperationResult>()),
            ("OperationOutcome", derived::<OperationOutcome>()),
            ("ActivityReason", derived::<ActivityReason>()),
            ("ComputeMetrics", derived::<ComputeMetrics>()),
            ("StartupPhase", derived::<StartupPhase>()),
            ("TerminateResponse", derived::<TerminateResponse>()),
            ("DbsAndRoles", derived::<DbsAndRoles>()),
            ("ListedRole", derived::<ListedRole>()),
            ("ListedDatabase", derived::<ListedDatabase>()),
            ("Privilege", derived::<Privilege>()),
            ("SetRoleGrantsRequest", derived::<SetRoleGrantsRequest>()),
            (
                "ExtensionInstallRequest",
                derived::<ExtensionInstallRequest>(),
            ),
            (
                "ExtensionInstallResponse",
                derived::<ExtensionInstallResponse>(),
            ),
            ("ErrorBody", derived::<ErrorBody>()),
            ("ProbeResponse", derived::<ProbeResponse>()),
            ("ValidationErrorBody", derived::<ValidationErrorBody>()),
            ("DroppedSetting", derived::<DroppedSetting>()),
        ];
        let mut mismatches = Vec::new();
        for (name, schema) in &types {
            if std::env::var_os("PRINT_API_SCHEMAS").is_some() {
                println!("{name}: {schema}");
            }
            let documented = &components[*name];
            if !documented.is_object() {
                mismatches.push(format!("openapi.json has no component {name}"));
                continue;
            }
            for key in ["properties", "required", "enum"] {
                let (got, want) = (names(documented, key), names(schema, key));
                if got != want {
                    mismatches.push(format!("{name} {key}: openapi {got:?}, type {want:?}"));
                }
            }
        }
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }
}
