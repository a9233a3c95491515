//! `GET /database_schema?database=NAME`: `pg_dump --schema-only` of one database, streamed as
//! it is written (`crate::schema_dump`). 404 for an unknown database, 409 for one that refuses
//! connections, 500 with the reason when `pg_dump` is missing or fails before writing
//! anything; a failure later cuts the body short. The content type is upstream's
//! `application/json`, although the body is SQL text: a client written for upstream may
//! check it.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::HttpState;
use crate::schema_dump;

/// The query string.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Params {
    /// The database to dump.
    database: String,
}

pub(crate) async fn get(State(state): State<HttpState>, Query(params): Query<Params>) -> Response {
    match schema_dump::dump(
        &state.catalog,
        &state.opts,
        state.run_as,
        crate::catalog::guards(&state.compute),
        &params.database,
    )
    .await
    {
        Ok(dump) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(dump.into_stream()),
        )
            .into_response(),
        Err(e) => e.response(e.to_string()),
    }
}
