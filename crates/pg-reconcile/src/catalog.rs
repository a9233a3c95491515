//! The observed catalog as plain data, and the one query that reads it.
//!
//! [`CATALOG_QUERY`] returns the whole state the planner needs (roles with every attribute and
//! membership, databases with owner, flags, the invalid marker and their logical replication
//! subscriptions, and the timelines recorded in `neon.drop_subscriptions_done`) in one message,
//! so observing a cluster is one round trip whatever the number of objects, and names come back
//! as raw text, never through quoting rules.

use std::collections::{BTreeMap, BTreeSet};

/// `VALID UNTIL` of a role: the same type the spec's option is typed into.
pub use compute_spec::ValidUntil;

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
    /// Logical replication subscriptions in this database, by name (`pg_subscription` is a
    /// shared catalog, so they are observed from the system database).
    pub subscriptions: BTreeMap<String, SubscriptionInfo>,
}

/// One subscription of `pg_subscription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// `subenabled`.
    pub enabled: bool,
    /// `subslotname`: the replication slot on the publisher; `None` once detached
    /// (`slot_name = NONE`).
    pub slot_name: Option<String>,
}

/// What the planner knows about a cluster. Plain data: build it with [`crate::Session::observe`] or by
/// hand in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Roles by name.
    pub roles: BTreeMap<String, RoleInfo>,
    /// Databases by name.
    pub databases: BTreeMap<String, DatabaseInfo>,
    /// Timelines recorded in `neon.drop_subscriptions_done` of the system database: those for
    /// which `drop_subscriptions_before_start` has been done. Empty when the table is absent.
    pub subscriptions_dropped_for: BTreeSet<String>,
}

/// Reads roles, memberships, databases, database privileges, subscriptions and the timelines
/// of `neon.drop_subscriptions_done`: plain queries in one simple-protocol message inside a
/// `READ ONLY` transaction, so one round trip. Text results, one row per fact (no arrays, no
/// JSON), so names come back byte for byte and the server does little work per role.
///
/// `neon.drop_subscriptions_done` may not exist, and a query naming a missing table fails the
/// whole message; so a `DO` block reads it only when `to_regclass` finds it, into a setting
/// local to the transaction, and the last query returns that setting one timeline per row
/// (none when the table is absent or empty). Only the columns of `pg_subscription` that every
/// role may read are read (not `subconninfo`).
pub const CATALOG_QUERY: &str = "BEGIN READ ONLY;
SELECT a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin,
       a.rolreplication, a.rolbypassrls, a.rolconnlimit,
       CASE WHEN a.rolvaliduntil IS NULL THEN NULL
            WHEN a.rolvaliduntil = 'infinity' THEN 'infinity'
            WHEN a.rolvaliduntil = '-infinity' THEN '-infinity'
            ELSE (extract(epoch FROM a.rolvaliduntil) * 1000000)::int8::text END,
       a.rolpassword
  FROM pg_catalog.pg_authid a;
SELECT m.rolname, g.rolname
  FROM pg_catalog.pg_auth_members x
  JOIN pg_catalog.pg_authid m ON m.oid = x.member
  JOIN pg_catalog.pg_authid g ON g.oid = x.roleid;
SELECT d.datname, r.rolname, d.datallowconn, d.datistemplate, d.datconnlimit
  FROM pg_catalog.pg_database d LEFT JOIN pg_catalog.pg_authid r ON r.oid = d.datdba;
SELECT d.datname, r.rolname
  FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) x
  JOIN pg_catalog.pg_authid r ON r.oid = x.grantee
 GROUP BY 1, 2 HAVING count(DISTINCT x.privilege_type) = 3;
SELECT d.datname, s.subname, s.subenabled, s.subslotname
  FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid = s.subdbid;
DO $observe$
BEGIN
  IF pg_catalog.to_regclass('neon.drop_subscriptions_done') IS NOT NULL THEN
    PERFORM pg_catalog.set_config('compute_ctl.drop_subscriptions_done',
      (SELECT coalesce(pg_catalog.string_agg(timeline_id::pg_catalog.text, ','), '')
         FROM neon.drop_subscriptions_done), true);
  END IF;
END
$observe$;
SELECT pg_catalog.string_to_table(
         pg_catalog.current_setting('compute_ctl.drop_subscriptions_done', true), ',');
COMMIT";

/// A row of text cells (`None` is NULL).
pub(crate) trait TextRow {
    /// Cell `i`, `None` when NULL or absent.
    fn cell(&self, i: usize) -> Option<&str>;
}

impl TextRow for tokio_postgres::SimpleQueryRow {
    fn cell(&self, i: usize) -> Option<&str> {
        self.try_get(i).ok().flatten()
    }
}

fn cell<R: TextRow>(row: &R, i: usize) -> Result<&str, String> {
    row.cell(i)
        .ok_or_else(|| format!("column {i} is missing or NULL"))
}

fn boolean<R: TextRow>(row: &R, i: usize) -> Result<bool, String> {
    match cell(row, i)? {
        "t" => Ok(true),
        "f" => Ok(false),
        other => Err(format!("column {i}: not a boolean: {other:?}")),
    }
}

fn int<R: TextRow>(row: &R, i: usize) -> Result<i32, String> {
    let text = cell(row, i)?;
    text.parse()
        .map_err(|_| format!("column {i}: not an integer: {text:?}"))
}

/// Builds a [`Catalog`] from the result sets of [`CATALOG_QUERY`] (roles, memberships,
/// databases, database privileges, subscriptions, the `DO` block's empty one, recorded
/// timelines).
pub(crate) fn parse_catalog<R: TextRow>(sets: &[Vec<&R>]) -> Result<Catalog, String> {
    let [
        roles,
        members,
        databases,
        privileges,
        subscriptions,
        _,
        dropped_for,
    ] = sets
    else {
        return Err(format!("expected 7 result sets, got {}", sets.len()));
    };
    let mut catalog = Catalog::default();
    for &row in roles {
        let valid_until = match row.cell(9) {
            None => None,
            Some("infinity") => Some(ValidUntil::Infinity),
            Some("-infinity") => Some(ValidUntil::NegativeInfinity),
            Some(us) => Some(ValidUntil::At(
                us.parse().map_err(|_| format!("bad valid_until {us:?}"))?,
            )),
        };
        catalog.roles.insert(
            cell(row, 0)?.to_owned(),
            RoleInfo {
                superuser: boolean(row, 1)?,
                inherit: boolean(row, 2)?,
                createrole: boolean(row, 3)?,
                createdb: boolean(row, 4)?,
                login: boolean(row, 5)?,
                replication: boolean(row, 6)?,
                bypassrls: boolean(row, 7)?,
                connection_limit: int(row, 8)?,
                valid_until,
                password: row.cell(10).map(str::to_owned),
                member_of: BTreeSet::new(),
            },
        );
    }
    for &row in members {
        if let Some(r) = catalog.roles.get_mut(cell(row, 0)?) {
            r.member_of.insert(cell(row, 1)?.to_owned());
        }
    }
    for &row in databases {
        let connection_limit = int(row, 4)?;
        catalog.databases.insert(
            cell(row, 0)?.to_owned(),
            DatabaseInfo {
                owner: row.cell(1).unwrap_or_default().to_owned(),
                allow_connections: boolean(row, 2)?,
                is_template: boolean(row, 3)?,
                connection_limit,
                invalid: connection_limit == -2,
                all_privileges: BTreeSet::new(),
                subscriptions: BTreeMap::new(),
            },
        );
    }
    for &row in privileges {
        if let Some(d) = catalog.databases.get_mut(cell(row, 0)?) {
            d.all_privileges.insert(cell(row, 1)?.to_owned());
        }
    }
    for &row in subscriptions {
        if let Some(d) = catalog.databases.get_mut(cell(row, 0)?) {
            let info = SubscriptionInfo {
                enabled: boolean(row, 2)?,
                slot_name: row.cell(3).map(str::to_owned),
            };
            d.subscriptions.insert(cell(row, 1)?.to_owned(), info);
        }
    }
    for &row in dropped_for {
        catalog
            .subscriptions_dropped_for
            .insert(cell(row, 0)?.to_owned());
    }
    Ok(catalog)
}
