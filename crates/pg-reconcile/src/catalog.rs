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
    /// What is inside the database, when it was observed on a connection to it (see
    /// [`DatabaseContents`]); `None` when not observed (a database the plan creates or
    /// renames, one that refuses connections, or a catalog built without connecting).
    pub contents: Option<DatabaseContents>,
    /// Logical replication subscriptions in this database, by name (`pg_subscription` is a
    /// shared catalog, so they are observed from the system database).
    pub subscriptions: BTreeMap<String, SubscriptionInfo>,
}

/// What the reconciler manages inside one database, read by [`CONTENTS_QUERY`] on a
/// connection to it: schema `public`, the default privileges of the observing role, and the
/// objects compute_ctl creates in the system database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseContents {
    /// Owner of schema `public`; `None` when there is no schema `public`.
    pub public_owner: Option<String>,
    /// Roles holding `CREATE` on schema `public` by an explicit grant.
    pub public_create: BTreeSet<String>,
    /// Roles that get every privilege, with grant option, on the tables the observing role
    /// creates in `public` (`pg_default_acl`).
    pub default_table_grantees: BTreeSet<String>,
    /// The same for sequences.
    pub default_sequence_grantees: BTreeSet<String>,
    /// Schema `neon` exists.
    pub neon_schema: bool,
    /// Relation `public.health_check` exists.
    pub health_check: bool,
    /// The database's own `pgaudit.log` setting (`ALTER DATABASE … SET`, for every role),
    /// `None` when it has none.
    pub pgaudit_log: Option<String>,
    /// Installed extensions by name.
    pub extensions: BTreeMap<String, ExtensionInfo>,
}

/// One installed extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionInfo {
    /// The schema it is installed in.
    pub schema: String,
    /// The installed version.
    pub version: String,
    /// The version `CREATE EXTENSION` would install now (`None`: no control file). Read only
    /// for `neon`, the one extension whose version the reconciler manages: reading it means
    /// parsing every control file of the installation, in every observed database.
    pub default_version: Option<String>,
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

/// The catalog's [`CATALOG_SETS`] result sets (see [`CATALOG_QUERY`]).
macro_rules! catalog_selects {
    () => {
        "SELECT a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin,
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
"
    };
}

/// The contents' five result sets: owner of `public`, explicit `CREATE` grantees on it, the
/// complete default privileges of the current user in it (per object type: complete when the
/// grantee holds, with grant option, as many privileges as `acldefault` gives an owner of a
/// table or sequence, `s`, which `pg_default_acl` calls `S`), schema `neon`,
/// `public.health_check` and the database's own `pgaudit.log` setting, extensions.
macro_rules! contents_selects {
    () => {
        "SELECT r.rolname
  FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
 WHERE n.nspname = 'public';
SELECT r.rolname
  FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) x
  JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
 WHERE n.nspname = 'public' AND x.privilege_type = 'CREATE';
SELECT d.defaclobjtype::pg_catalog.text, r.rolname
  FROM pg_catalog.pg_default_acl d
  JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
 CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) x
  JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
 WHERE n.nspname = 'public' AND d.defaclobjtype IN ('r', 'S') AND x.is_grantable
   AND d.defaclrole = (SELECT u.oid FROM pg_catalog.pg_roles u WHERE u.rolname = CURRENT_USER)
 GROUP BY d.defaclobjtype, r.rolname
HAVING count(DISTINCT x.privilege_type) = (SELECT count(*) FROM pg_catalog.aclexplode(
         pg_catalog.acldefault(CASE d.defaclobjtype WHEN 'S' THEN 's' ELSE 'r' END::pg_catalog.\"char\",
                               0::pg_catalog.oid)));
SELECT pg_catalog.to_regnamespace('neon') IS NOT NULL,
       pg_catalog.to_regclass('public.health_check') IS NOT NULL,
       (SELECT pg_catalog.substr(c, 13)
          FROM pg_catalog.pg_db_role_setting s
         CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) c
         WHERE s.setrole = 0 AND c LIKE 'pgaudit.log=%'
           AND s.setdatabase = (SELECT d.oid FROM pg_catalog.pg_database d
                                 WHERE d.datname = pg_catalog.current_database())
         LIMIT 1);
SELECT e.extname, n.nspname, e.extversion,
       CASE WHEN e.extname = 'neon' THEN
         (SELECT a.default_version FROM pg_catalog.pg_available_extensions() a
           WHERE a.name = 'neon') END
  FROM pg_catalog.pg_extension e
  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace;
"
    };
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
pub const CATALOG_QUERY: &str = concat!("BEGIN READ ONLY;\n", catalog_selects!(), "COMMIT");

/// Reads one database's [`DatabaseContents`]: five plain queries in one message inside a
/// `READ ONLY` transaction, so one round trip on a connection to that database. Every name
/// outside `pg_catalog` is schema-qualified (admin sessions run with an empty `search_path`),
/// and a missing schema `public` gives empty results, not an error.
pub const CONTENTS_QUERY: &str = concat!("BEGIN READ ONLY;\n", contents_selects!(), "COMMIT");

/// The system database's catalog and contents in one round trip.
pub(crate) const CATALOG_AND_CONTENTS_QUERY: &str = concat!(
    "BEGIN READ ONLY;\n",
    catalog_selects!(),
    contents_selects!(),
    "COMMIT"
);

/// How many result sets [`CATALOG_QUERY`] returns between its `BEGIN` and `COMMIT` (the
/// `DO` block's empty one included).
pub(crate) const CATALOG_SETS: usize = 7;

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
                contents: None,
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

/// Builds [`DatabaseContents`] from the five result sets of [`CONTENTS_QUERY`].
pub(crate) fn parse_contents<R: TextRow>(sets: &[Vec<&R>]) -> Result<DatabaseContents, String> {
    let [owner, create, defaults, objects, extensions] = sets else {
        return Err(format!("expected 5 result sets, got {}", sets.len()));
    };
    let mut contents = DatabaseContents {
        public_owner: owner
            .first()
            .map(|r| cell(*r, 0).map(str::to_owned))
            .transpose()?,
        ..DatabaseContents::default()
    };
    for &row in create {
        contents.public_create.insert(cell(row, 0)?.to_owned());
    }
    for &row in defaults {
        let grantee = cell(row, 1)?.to_owned();
        match cell(row, 0)? {
            "r" => contents.default_table_grantees.insert(grantee),
            "S" => contents.default_sequence_grantees.insert(grantee),
            other => return Err(format!("unexpected default ACL object type {other:?}")),
        };
    }
    let [row] = objects.as_slice() else {
        return Err(format!("expected 1 row of objects, got {}", objects.len()));
    };
    contents.neon_schema = boolean(*row, 0)?;
    contents.health_check = boolean(*row, 1)?;
    contents.pgaudit_log = row.cell(2).map(str::to_owned);
    for &row in extensions {
        contents.extensions.insert(
            cell(row, 0)?.to_owned(),
            ExtensionInfo {
                schema: cell(row, 1)?.to_owned(),
                version: cell(row, 2)?.to_owned(),
                default_version: row.cell(3).map(str::to_owned),
            },
        );
    }
    Ok(contents)
}
