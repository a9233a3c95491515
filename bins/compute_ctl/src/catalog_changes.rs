//! The catalog changes the control plane asks for on the internal API, with upstream's
//! semantics: `POST /grants` gives a role the schema privileges it lacks, `POST /extensions`
//! installs or updates an extension. Names are checked first ([`check_identifier`]), looked
//! up by exact name with bound parameters, and reach statements only through `pg_quote`;
//! missing objects are reported as such before anything changes.

use anyhow::Context;
use compute_spec::api::{ExtensionInstallRequest, Privilege, SetRoleGrantsRequest};
use pg_quote::{quote_ident, quote_literal};

use crate::catalog_request::{RequestError, check_identifier, check_text};
use crate::catalog_sessions::CatalogSessions;

/// Which of the schema and the role exist (by exact name).
const SCHEMA_AND_ROLE: &str = "SELECT \
     EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname::text = $1), \
     EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname::text = $2)";

/// The privileges `$2` holds on schema `$1`, from whichever grantor.
const HELD_SCHEMA_PRIVILEGES: &str = "SELECT a.privilege_type::text \
     FROM pg_catalog.pg_namespace n \
     CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a \
     JOIN pg_catalog.pg_roles r ON r.oid = a.grantee \
     WHERE n.nspname::text = $1 AND r.rolname::text = $2";

/// Grants `request.role` the privileges of `request.privileges` it does not hold on
/// `request.schema` of `request.database` (none when it holds them all, so that a read-only
/// replica answers too, as upstream).
pub(crate) async fn set_role_grants(
    sessions: &CatalogSessions,
    pg: &tokio_postgres::Config,
    guards: pg_reconcile::SessionGuards,
    request: &SetRoleGrantsRequest,
) -> Result<(), RequestError> {
    check_identifier("database", &request.database)?;
    check_identifier("schema", &request.schema)?;
    check_identifier("role", &request.role)?;
    let client = sessions.open(pg, guards, Some(&request.database)).await?;
    let names: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&request.schema, &request.role];
    let exists = client
        .query_one(SCHEMA_AND_ROLE, &names)
        .await
        .context("look up the schema and the role")
        .map_err(RequestError::from_postgres)?;
    if !exists.get::<_, bool>(0) {
        return Err(RequestError::NotFound(format!(
            "schema {:?} does not exist in database {:?}",
            request.schema, request.database
        )));
    }
    if !exists.get::<_, bool>(1) {
        return Err(RequestError::NotFound(format!(
            "role {:?} does not exist",
            request.role
        )));
    }
    let held: Vec<String> = client
        .query(HELD_SCHEMA_PRIVILEGES, &names)
        .await
        .context("read the schema's privileges")
        .map_err(RequestError::from_postgres)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let Some(statement) = grant_statement(request, &held) else {
        return Ok(());
    };
    client
        .batch_execute(&statement)
        .await
        .context("grant")
        .map_err(RequestError::from_postgres)
}

/// `GRANT … ON SCHEMA … TO …` for the privileges not in `held`, each once; `None` when
/// nothing is missing.
fn grant_statement(request: &SetRoleGrantsRequest, held: &[String]) -> Option<String> {
    let mut missing: Vec<Privilege> = Vec::new();
    for privilege in &request.privileges {
        if !held.iter().any(|h| h == privilege.as_str()) && !missing.contains(privilege) {
            missing.push(*privilege);
        }
    }
    if missing.is_empty() {
        return None;
    }
    let keywords: Vec<&str> = missing.iter().map(|p| p.as_str()).collect();
    Some(format!(
        "GRANT {} ON SCHEMA {} TO {}",
        keywords.join(", "),
        quote_ident(&request.schema),
        quote_ident(&request.role)
    ))
}

/// What `POST /extensions` does about an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExtensionChange {
    /// The wanted version is installed.
    Nothing,
    /// Another version is installed.
    Update,
    /// Not installed.
    Create,
}

fn extension_change(installed: Option<&str>, wanted: &str) -> ExtensionChange {
    match installed {
        Some(version) if version == wanted => ExtensionChange::Nothing,
        Some(_) => ExtensionChange::Update,
        None => ExtensionChange::Create,
    }
}

/// Has `request.extension` at `request.version` in `request.database`: nothing when it is
/// installed at that version, `ALTER EXTENSION … UPDATE TO` when at another one, else
/// `CREATE EXTENSION … WITH SCHEMA public VERSION` (upstream's three cases). A version the
/// installation does not ship is refused as not found before any change. Returns the version.
pub(crate) async fn install_extension(
    sessions: &CatalogSessions,
    pg: &tokio_postgres::Config,
    guards: pg_reconcile::SessionGuards,
    request: &ExtensionInstallRequest,
) -> Result<String, RequestError> {
    check_identifier("extension", &request.extension)?;
    check_identifier("database", &request.database)?;
    check_text("version", &request.version)?;
    let client = sessions.open(pg, guards, Some(&request.database)).await?;
    let installed: Option<String> = client
        .query_opt(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname::text = $1",
            &[&request.extension],
        )
        .await
        .context("look up the extension")
        .map_err(RequestError::from_postgres)?
        .map(|row| row.get(0));
    let change = extension_change(installed.as_deref(), &request.version);
    if change == ExtensionChange::Nothing {
        return Ok(request.version.clone());
    }
    let available: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_available_extension_versions \
             WHERE name::text = $1 AND version = $2)",
            &[&request.extension, &request.version],
        )
        .await
        .context("look up the available versions")
        .map_err(RequestError::from_postgres)?
        .get(0);
    if !available {
        return Err(RequestError::NotFound(format!(
            "extension {:?} version {:?} is not available on this compute",
            request.extension, request.version
        )));
    }
    let (name, version) = (
        quote_ident(&request.extension),
        quote_literal(&request.version),
    );
    let statement = match change {
        ExtensionChange::Update => format!("ALTER EXTENSION {name} UPDATE TO {version}"),
        _ => format!("CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA public VERSION {version}"),
    };
    client
        .batch_execute(&statement)
        .await
        .context("install the extension")
        .map_err(RequestError::from_postgres)?;
    Ok(request.version.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_only_what_is_missing_each_once() {
        let request = |privileges: Vec<Privilege>| SetRoleGrantsRequest {
            database: "db".into(),
            schema: "s\"; x".into(),
            privileges,
            role: "r'1".into(),
        };
        let check = |privileges, held: &[&str], expect: Option<&str>| {
            let held: Vec<String> = held.iter().map(|h| (*h).to_owned()).collect();
            assert_eq!(
                grant_statement(&request(privileges), &held).as_deref(),
                expect
            );
        };
        use Privilege::*;
        check(
            vec![Usage, Create, Usage],
            &[],
            Some(r#"GRANT USAGE, CREATE ON SCHEMA "s""; x" TO "r'1""#),
        );
        check(
            vec![Usage, Create],
            &["USAGE"],
            Some(r#"GRANT CREATE ON SCHEMA "s""; x" TO "r'1""#),
        );
        check(vec![Usage, Create], &["CREATE", "USAGE"], None);
        check(vec![], &[], None);
    }

    #[test]
    fn extension_changes() {
        assert_eq!(
            extension_change(Some("1.0"), "1.0"),
            ExtensionChange::Nothing
        );
        assert_eq!(
            extension_change(Some("1.0"), "1.1"),
            ExtensionChange::Update
        );
        assert_eq!(extension_change(None, "1.0"), ExtensionChange::Create);
    }
}
