//! `GET /info`: the number of CPUs (an older upstream route, kept).

use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(crate) async fn get() -> Response {
    let num_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    axum::Json(json!({ "num_cpus": num_cpus })).into_response()
}
