//! `GET /insights`: the statements that take longest on average, from `pg_stat_statements`,
//! as upstream reports them: a JSON text `{"pg_stat_statements": [row, …]}` holding the top
//! 100 rows by mean planning + execution time, leaving out compute_ctl's own statements,
//! each row as PostgreSQL's `row_to_json` writes it.
//!
//! Unlike upstream, which reads `public.pg_stat_statements` and answers an empty list (or
//! panics) when that fails, the view is read in whichever schema the extension is installed
//! in, and a missing extension is an error saying so.

use anyhow::Context;
use pg_quote::quote_ident;

use crate::catalog_request::RequestError;
use crate::catalog_sessions::CatalogSessions;

/// The schema `pg_stat_statements` is installed in, if it is (in the connection's database).
const EXTENSION_SCHEMA: &str = "SELECT n.nspname::text FROM pg_catalog.pg_extension e \
     JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
     WHERE e.extname = 'pg_stat_statements'";

/// How many statements are reported.
pub(crate) const TOP: i64 = 100;

/// The query over the view in `schema`: `$1` is compute_ctl's user (left out), `$2` the limit.
fn top_statements_query(schema: &str) -> String {
    format!(
        "SELECT pg_catalog.row_to_json(s)::text FROM {}.pg_stat_statements s \
         WHERE s.userid IS DISTINCT FROM \
             (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname::text = $1) \
         ORDER BY s.mean_exec_time + s.mean_plan_time DESC LIMIT $2",
        quote_ident(schema)
    )
}

/// Upstream's text: the rows' JSON joined into one object.
fn insights_text(rows: &[String]) -> String {
    format!("{{\"pg_stat_statements\": [{}]}}", rows.join(","))
}

/// Reads the top statements on compute_ctl's database.
pub(crate) async fn collect(
    sessions: &CatalogSessions,
    pg: &tokio_postgres::Config,
    guards: pg_reconcile::SessionGuards,
) -> Result<String, RequestError> {
    let client = sessions.open(pg, guards, None).await?;
    let schema: Option<String> = client
        .query_opt(EXTENSION_SCHEMA, &[])
        .await
        .context("look up pg_stat_statements")
        .map_err(RequestError::from_postgres)?
        .map(|row| row.get(0));
    let Some(schema) = schema else {
        let database = pg.get_dbname().unwrap_or("postgres");
        return Err(RequestError::NotFound(format!(
            "pg_stat_statements is not installed in database {database:?}: \
             it needs shared_preload_libraries = 'pg_stat_statements' and \
             CREATE EXTENSION pg_stat_statements"
        )));
    };
    let user = pg.get_user().unwrap_or_default();
    let rows: Vec<String> = client
        .query(&top_statements_query(&schema), &[&user, &TOP])
        .await
        .context("read pg_stat_statements")
        .map_err(RequestError::from_postgres)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(insights_text(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_query() {
        assert_eq!(insights_text(&[]), r#"{"pg_stat_statements": []}"#);
        let text = insights_text(&[r#"{"a":1}"#.into(), r#"{"a":2}"#.into()]);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["pg_stat_statements"][1]["a"], 2);
        assert!(top_statements_query("we\"ird").contains(r#"FROM "we""ird".pg_stat_statements s"#));
    }
}
