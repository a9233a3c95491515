//! The observed catalog as plain data, and the one query that reads it.
//!
//! [`CATALOG_QUERY`] returns the whole state the planner needs (roles with every attribute and
//! membership, databases with owner, flags and the invalid marker) as one JSON document, so
//! observing a cluster is one statement and one round trip whatever the number of objects, and
//! names reach Rust through JSON, never through quoting rules.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// `VALID UNTIL` of a role, as PostgreSQL stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValidUntil {
    /// A finite instant: microseconds since 1970-01-01 00:00:00 UTC.
    At(i64),
    /// `'infinity'`.
    Infinity,
    /// `'-infinity'`.
    NegativeInfinity,
}

/// One role of `pg_authid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolinherit`.
    pub inherit: bool,
    /// `rolcreaterole`.
    pub createrole: bool,
    /// `rolcreatedb`.
    pub createdb: bool,
    /// `rolcanlogin`.
    pub login: bool,
    /// `rolreplication`.
    pub replication: bool,
    /// `rolbypassrls`.
    pub bypassrls: bool,
    /// `rolconnlimit` (-1: no limit).
    pub connection_limit: i32,
    /// `rolvaliduntil`; `None` is NULL (never expires).
    pub valid_until: Option<ValidUntil>,
    /// `rolpassword` (an md5 hash with its `md5` prefix or a SCRAM verifier). A secret: the
    /// `Debug` output of [`Catalog`] shows it, so never log a catalog.
    pub password: Option<String>,
    /// Roles this role is a direct member of.
    pub member_of: BTreeSet<String>,
}

impl RoleInfo {
    /// The attributes PostgreSQL gives `CREATE ROLE name` with no options.
    pub fn postgres_defaults() -> RoleInfo {
        RoleInfo {
            superuser: false,
            inherit: true,
            createrole: false,
            createdb: false,
            login: false,
            replication: false,
            bypassrls: false,
            connection_limit: -1,
            valid_until: None,
            password: None,
            member_of: BTreeSet::new(),
        }
    }
}

/// One database of `pg_database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// Name of the owning role (`rolname`, not `regrole` text, so never quoted).
    pub owner: String,
    /// `datallowconn`.
    pub allow_connections: bool,
    /// `datistemplate`.
    pub is_template: bool,
    /// `datconnlimit`, -1 for no limit; -2 marks an invalid database (see `invalid`).
    pub connection_limit: i32,
    /// `datconnlimit = -2`: left invalid by an interrupted `DROP DATABASE`; it can only be
    /// dropped.
    pub invalid: bool,
    /// Roles that hold every database privilege (CREATE, CONNECT, TEMPORARY) by an explicit
    /// grant.
    pub all_privileges: BTreeSet<String>,
}

/// What the planner knows about a cluster. Plain data: build it with [`crate::observe`] or by
/// hand in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Roles by name.
    pub roles: BTreeMap<String, RoleInfo>,
    /// Databases by name.
    pub databases: BTreeMap<String, DatabaseInfo>,
}

/// Reads roles, memberships and databases as one JSON document (one row, one column).
pub const CATALOG_QUERY: &str = "\
SELECT json_build_object(
  'roles', (SELECT coalesce(json_agg(json_build_object(
      'name', a.rolname, 'superuser', a.rolsuper, 'inherit', a.rolinherit,
      'createrole', a.rolcreaterole, 'createdb', a.rolcreatedb, 'login', a.rolcanlogin,
      'replication', a.rolreplication, 'bypassrls', a.rolbypassrls,
      'connection_limit', a.rolconnlimit,
      'valid_until', CASE WHEN a.rolvaliduntil IS NULL THEN NULL
                          WHEN a.rolvaliduntil = 'infinity' THEN 'infinity'
                          WHEN a.rolvaliduntil = '-infinity' THEN '-infinity'
                          ELSE (extract(epoch FROM a.rolvaliduntil) * 1000000)::int8::text END,
      'password', a.rolpassword,
      'member_of', ARRAY(SELECT g.rolname FROM pg_catalog.pg_auth_members m
                         JOIN pg_catalog.pg_authid g ON g.oid = m.roleid
                         WHERE m.member = a.oid ORDER BY 1))), '[]'::json)
      FROM pg_catalog.pg_authid a),
  'databases', (SELECT coalesce(json_agg(json_build_object(
      'name', d.datname,
      'owner', (SELECT r.rolname FROM pg_catalog.pg_authid r WHERE r.oid = d.datdba),
      'allow_connections', d.datallowconn, 'is_template', d.datistemplate,
      'connection_limit', d.datconnlimit, 'invalid', d.datconnlimit = -2,
      'all_privileges', ARRAY(SELECT r.rolname FROM pg_catalog.aclexplode(d.datacl) x
                              JOIN pg_catalog.pg_authid r ON r.oid = x.grantee
                              GROUP BY r.rolname
                              HAVING count(DISTINCT x.privilege_type) = 3 ORDER BY 1))), '[]'::json)
      FROM pg_catalog.pg_database d))::text";

#[derive(Deserialize)]
struct RawCatalog {
    roles: Vec<RawRole>,
    databases: Vec<RawDatabase>,
}

#[derive(Deserialize)]
struct RawRole {
    name: String,
    superuser: bool,
    inherit: bool,
    createrole: bool,
    createdb: bool,
    login: bool,
    replication: bool,
    bypassrls: bool,
    connection_limit: i32,
    valid_until: Option<String>,
    password: Option<String>,
    member_of: Vec<String>,
}

#[derive(Deserialize)]
struct RawDatabase {
    name: String,
    owner: Option<String>,
    allow_connections: bool,
    is_template: bool,
    connection_limit: i32,
    invalid: bool,
    all_privileges: Vec<String>,
}

/// Parses the text [`CATALOG_QUERY`] returns.
pub(crate) fn parse_catalog(text: &str) -> Result<Catalog, String> {
    let raw: RawCatalog = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut catalog = Catalog::default();
    for r in raw.roles {
        let valid_until = match r.valid_until.as_deref() {
            None => None,
            Some("infinity") => Some(ValidUntil::Infinity),
            Some("-infinity") => Some(ValidUntil::NegativeInfinity),
            Some(us) => Some(ValidUntil::At(
                us.parse().map_err(|_| format!("bad valid_until {us:?}"))?,
            )),
        };
        catalog.roles.insert(
            r.name,
            RoleInfo {
                superuser: r.superuser,
                inherit: r.inherit,
                createrole: r.createrole,
                createdb: r.createdb,
                login: r.login,
                replication: r.replication,
                bypassrls: r.bypassrls,
                connection_limit: r.connection_limit,
                valid_until,
                password: r.password,
                member_of: r.member_of.into_iter().collect(),
            },
        );
    }
    for d in raw.databases {
        catalog.databases.insert(
            d.name,
            DatabaseInfo {
                owner: d.owner.unwrap_or_default(),
                allow_connections: d.allow_connections,
                is_template: d.is_template,
                connection_limit: d.connection_limit,
                invalid: d.invalid,
                all_privileges: d.all_privileges.into_iter().collect(),
            },
        );
    }
    Ok(catalog)
}
