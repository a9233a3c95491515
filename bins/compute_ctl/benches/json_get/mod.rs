//! A JSON `GET` of compute_ctl's HTTP API for the benches that poll it (`wake_up`,
//! `cold_start`), on one HTTP client for the whole bench: its connections are kept alive, so a
//! poll of `/status` costs compute_ctl a request, not a TCP connection.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Empty<Bytes>,
>;

fn client() -> &'static HttpClient {
    static CLIENT: std::sync::OnceLock<HttpClient> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Empty<Bytes>>()
    })
}

/// `GET http://127.0.0.1:{port}{path}` as JSON; `None` if there is no answer or it is not JSON.
pub(crate) async fn get(port: u16, path: &str) -> Option<serde_json::Value> {
    let resp = client()
        .get(format!("http://127.0.0.1:{port}{path}").parse().ok()?)
        .await
        .ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}
