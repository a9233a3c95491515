//! The extension server client: one plain `GET` of an archive over HTTP/1.1, bounded in time
//! and size and cancellable; only `200 OK` is an archive.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use tokio_util::sync::CancellationToken;

/// Limits of one archive download.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Time to establish the TCP connection.
    pub connect_timeout: Duration,
    /// Time for the whole exchange, body included.
    pub timeout: Duration,
    /// Largest archive accepted, in bytes.
    pub max_bytes: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            max_bytes: 1 << 30,
        }
    }
}

/// Why an archive could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL cannot be requested (not `http://`, or not a valid URI).
    #[error("cannot request {url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered another status than 200.
    #[error("extension server answered {status} for {url}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// Connecting, sending or reading failed.
    #[error("request to the extension server {url} failed: {reason}")]
    Request {
        /// The URL.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// The server answered 200 but the body could not be read to its end.
    #[error("read the archive from {url}: {reason}")]
    Body {
        /// The URL.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// The exchange took longer than [`FetchConfig::timeout`].
    #[error("no complete answer from {url} within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// The body is larger than [`FetchConfig::max_bytes`].
    #[error("archive at {url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The download was cancelled.
    #[error("download cancelled")]
    Cancelled,
}

impl FetchError {
    /// The HTTP status seen, when there was one (200 when the body could not be read).
    pub fn http_status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            FetchError::TooLarge { .. } | FetchError::Body { .. } => Some(200),
            _ => None,
        }
    }
}

/// `GET url`; returns the body of a `200 OK` answer.
pub async fn fetch_archive(
    url: &url::Url,
    config: &FetchConfig,
    cancel: &CancellationToken,
) -> Result<Bytes, FetchError> {
    let shown = redacted(url);
    if url.scheme() != "http" {
        return Err(FetchError::BadUrl {
            url: shown,
            reason: "only http:// extension servers are supported".to_owned(),
        });
    }
    let uri: hyper::Uri = shown.parse().map_err(|e| FetchError::BadUrl {
        url: shown.clone(),
        reason: format!("{e}"),
    })?;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(connector);
    let request = hyper::Request::get(uri)
        .body(Empty::new())
        .map_err(|e| FetchError::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| FetchError::Request {
                url: shown.clone(),
                reason: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                url: shown.clone(),
                status,
            });
        }
        let body = Limited::new(response.into_body(), config.max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    FetchError::TooLarge {
                        url: shown.clone(),
                        limit: config.max_bytes,
                    }
                } else {
                    FetchError::Body {
                        url: shown.clone(),
                        reason: error_chain(e.as_ref()),
                    }
                }
            })?;
        Ok(body.to_bytes())
    };
    tokio::select! {
        answer = tokio::time::timeout(config.timeout, exchange) => match answer {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { url: shown.clone(), timeout: config.timeout }),
        },
        () = cancel.cancelled() => Err(FetchError::Cancelled),
    }
}

/// `url` for logs and errors: a password in it is replaced by `***`.
pub fn redacted(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// An error and its sources, `: `-separated (the client's top-level message is vague).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
