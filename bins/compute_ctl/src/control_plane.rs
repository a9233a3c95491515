//! The control-plane client: `GET {base}/compute/api/v2/computes/{id}/spec` over http or
//! https (rustls with the ring provider; trusted roots from the system store or
//! `SSL_CERT_FILE`), with a connect timeout and a total timeout per attempt, upstream's
//! retries, and errors that say what happened (refused, TLS, timed out waiting, closed before
//! answering, status and body).
//!
//! Cancellation is the caller's: dropping the future (SIGTERM during the start) ends the
//! request at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use compute_spec::ControlPlaneConfigResponse;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// How one request is bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// TCP connection.
    pub(crate) connect: Duration,
    /// The whole attempt: connection, TLS handshake, response and body.
    pub(crate) request: Duration,
}

/// Attempts made, as upstream: 3, 100 ms apart, for network errors, timeouts, an unparsable
/// 200 body, 502 and 503.
const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// The largest answer read: the largest spec validation accepts (64 MiB, as `-S` and
/// `/configure`), plus room for the envelope around it.
fn body_limit() -> usize {
    compute_spec::ValidationOptions::default().max_bytes + (1 << 20)
}

/// The longest body excerpt quoted in an error.
const BODY_EXCERPT: usize = 300;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Fetches compute_ctl's config for `compute_id`, with `Authorization: Bearer $token` when a
/// token is given.
pub(crate) async fn fetch_config(
    base_url: &str,
    compute_id: &str,
    token: Option<&str>,
    timeouts: Timeouts,
) -> anyhow::Result<ControlPlaneConfigResponse> {
    let url = format!(
        "{}/compute/api/v2/computes/{compute_id}/spec",
        base_url.trim_end_matches('/')
    );
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("parse control plane URL {url}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => bail!("control plane URL {url}: only http:// and https:// are supported"),
    };
    let client = client(timeouts.connect, https)?;
    let mut last_error = None;
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(RETRY_DELAY).await;
        }
        match get_config(&client, &uri, token, timeouts.request).await {
            Ok(parsed) => return Ok(parsed),
            Err(Attempt::Retry(e)) => {
                tracing::warn!(attempt, "GET {url}: {e}");
                last_error = Some(e);
            }
            Err(Attempt::Final(e)) => bail!("GET {url}: {e}"),
        }
    }
    let last = last_error.unwrap_or_default();
    bail!("GET {url}: {last} ({ATTEMPTS} attempts)")
}

/// The client: http, and https trusting the system's roots (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` replace them when set).
fn client(connect_timeout: Duration, https: bool) -> anyhow::Result<HttpsClient> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!("loading trusted CA certificates: {error}");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 {
            tracing::warn!(ignored, "unusable CA certificates skipped");
        }
        if added == 0 {
            bail!(
                "no trusted CA certificate found for the https control plane (looked in the \
                 system store, or SSL_CERT_FILE / SSL_CERT_DIR when set)"
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS settings")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// Why one request did not give a config.
enum Attempt {
    /// Worth another try (network, timeout, 502/503, an unparsable body).
    Retry(String),
    /// Not: any status other than 200, 502 and 503.
    Final(String),
}

/// One `GET`, bounded by `timeout` as a whole.
async fn get_config(
    client: &HttpsClient,
    uri: &hyper::Uri,
    token: Option<&str>,
    timeout: Duration,
) -> Result<ControlPlaneConfigResponse, Attempt> {
    let mut request = hyper::Request::get(uri.clone());
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| Attempt::Final(format!("build the request: {e}")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
        Err(_) => {
            return Err(Attempt::Retry(format!(
                "timed out after {timeout:?} waiting for the response"
            )));
        }
        Ok(Err(e)) => return Err(Attempt::Retry(describe(&e, uri))),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let limit = body_limit();
    let body = Limited::new(response.into_body(), limit).collect();
    let body = match tokio::time::timeout_at(deadline, body).await {
        Err(_) => {
            return Err(Attempt::Retry(format!(
                "status {status}, then timed out after {timeout:?} reading the body"
            )));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Attempt::Final(format!(
                "status {status}, then a body larger than the {limit}-byte limit"
            )));
        }
        Ok(Err(e)) => {
            return Err(Attempt::Retry(format!(
                "status {status}, then reading the body failed: {}",
                chain(&*e)
            )));
        }
        Ok(Ok(body)) => body.to_bytes(),
    };
    classify(status, &body)
}

/// What a complete answer means.
fn classify(status: hyper::StatusCode, body: &[u8]) -> Result<ControlPlaneConfigResponse, Attempt> {
    match status.as_u16() {
        200 => serde_json::from_slice(body)
            .map_err(|e| Attempt::Retry(format!("status 200 with an unparsable body: {e}"))),
        502 | 503 => Err(Attempt::Retry(format!(
            "status {status}: {}",
            excerpt(body)
        ))),
        _ => Err(Attempt::Final(format!(
            "unexpected control plane response status {status}: {}",
            excerpt(body)
        ))),
    }
}

/// The start of a body, as text on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None if one_line.is_empty() => "(empty body)".to_owned(),
        None => one_line,
    }
}

/// What went wrong with a request that got no response: the connection or TLS handshake
/// failed, or the peer closed the connection before answering.
fn describe(e: &hyper_util::client::legacy::Error, uri: &hyper::Uri) -> String {
    let peer = uri.authority().map_or("the control plane", |a| a.as_str());
    let causes = || std::iter::successors(std::error::Error::source(e), |c| c.source());
    if let Some(tls) = causes().find_map(rustls_error) {
        return format!(
            "TLS handshake with {peer} failed: {tls} (trusted CAs: the system store, or \
             SSL_CERT_FILE when set)"
        );
    }
    if e.is_connect() {
        return format!("could not connect to {peer}: {}", sources(e));
    }
    let closed = causes()
        .filter_map(|c| c.downcast_ref::<hyper::Error>())
        .any(|h| h.is_incomplete_message() || h.is_closed() || h.is_canceled());
    if closed {
        return format!("{peer} accepted the connection, then closed it before responding");
    }
    format!("request to {peer} failed: {}", sources(e))
}

/// A rustls error, itself or carried by (nested) I/O errors.
fn rustls_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = cause.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_error(inner)
}

/// The causes of `e` (not `e` itself), each once, joined by `": "`.
fn sources(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        next = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// `e` and its causes, each once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let rest = sources(e);
    let top = e.to_string();
    if rest == top {
        top
    } else {
        format!("{top}: {rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_with_an_excerpt() {
        let check = |status: u16, body: &str, expect: &str| {
            let got = match classify(
                hyper::StatusCode::from_u16(status).unwrap(),
                body.as_bytes(),
            ) {
                Ok(_) => "ok".to_owned(),
                Err(Attempt::Retry(e)) => format!("retry: {e}"),
                Err(Attempt::Final(e)) => format!("final: {e}"),
            };
            assert_eq!(got, expect);
        };
        check(
            200,
            r#"{"status": "empty", "spec": null, "compute_ctl_config": {"jwks": {"keys": []}}}"#,
            "ok",
        );
        check(
            200,
            "<html>",
            "retry: status 200 with an unparsable body: expected value at line 1 column 1",
        );
        check(
            503,
            "",
            "retry: status 503 Service Unavailable: (empty body)",
        );
        check(
            404,
            "no such\n  compute",
            "final: unexpected control plane response status 404 Not Found: no such compute",
        );
        let long = "x".repeat(1000);
        let Err(Attempt::Final(e)) =
            classify(hyper::StatusCode::INTERNAL_SERVER_ERROR, long.as_bytes())
        else {
            panic!("a 500 is final")
        };
        assert!(
            e.ends_with(&format!("{}…", "x".repeat(BODY_EXCERPT))),
            "{e}"
        );
    }
}
