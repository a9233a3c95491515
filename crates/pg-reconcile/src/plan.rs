//! The planner: a pure function from (validated spec, observed catalog, options) to an ordered
//! list of phases of SQL operations. No database handle, no I/O.
//!
//! # Phase order, and why
//!
//! The planner keeps a simulated copy of the catalog and updates it after each operation, so a
//! later phase sees the effect of earlier ones (a renamed role keeps its attributes, a dropped
//! invalid database can be recreated, …).
//!
//! 1. **drop-invalid-databases** (system db): databases with `datconnlimit = -2`, left by an
//!    interrupted `DROP DATABASE`, can only be dropped; they go first so their names are free
//!    and no later phase tries to connect to them.
//! 2. **create-privileged-role**: the privileged role (`neon_superuser`) must exist before spec
//!    roles are made members of it.
//! 3. **rename-roles**: before creation, so a renamed role is not created afresh under its new
//!    name. Renaming clears an md5 password (the name is its salt); phase 4 sets it again.
//! 4. **create-and-alter-roles**: missing roles are created with every attribute and the
//!    memberships whose parent already exists; existing roles are altered only in what differs.
//! 5. **grant-role-memberships**: memberships not yet held, e.g. in a role created in phase 4.
//! 6. **rename-and-drop-databases**: `delta_operations` on databases, in spec order (a rename
//!    may reuse a dropped name and vice versa), before creation for the same reason as phase 3.
//! 7. **create-and-alter-databases**: creation needs the owners of phase 4; owner changes must
//!    precede role deletion so a deleted role owns no spec database.
//! 8. **delete-role-references** (one phase per database that allows connections): `REASSIGN
//!    OWNED` to the database owner (to the superuser in the system database, or when the owner
//!    is a role being deleted), revocation of privileges granted to the role by other grantors, then
//!    `DROP OWNED`. Only for roles that still exist, so a re-run after a crash is harmless.
//! 9. **drop-roles** (system db): last, once nothing references the roles.
//!
//! Every statement is idempotent given the catalog it was planned from, and every phase plans
//! only what the catalog says is missing, so re-running after a crash at any point plans the
//! rest and converges. A converged cluster plans zero operations.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use compute_spec::{DeltaAction, ValidatedSpec};
use pg_quote::{dollar_quote, quote_ident, quote_literal};

use crate::catalog::{Catalog, DatabaseInfo, RoleInfo};
use crate::error::{PlanError, PlanProblem};
use crate::options::{
    DatabaseOption, RoleAttributes, apply_role_options, name_problem, parse_database_options,
    render_valid_until,
};

/// Settings of the planner that do not come from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// The role every spec role is made a member of and that gets all privileges on spec
    /// databases. Default `neon_superuser`.
    pub privileged_role_name: String,
    /// The superuser the reconciler connects as; it receives the objects of deleted roles in
    /// the system database. Default `cloud_admin`.
    pub superuser: String,
    /// The database to connect to for cluster-wide statements. Default `postgres`.
    pub system_database: String,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            privileged_role_name: "neon_superuser".to_owned(),
            superuser: "cloud_admin".to_owned(),
            system_database: "postgres".to_owned(),
        }
    }
}

/// The kind of a phase; phases run in the order of this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PhaseKind {
    /// Drop databases left invalid by an interrupted drop.
    DropInvalidDatabases,
    /// Create the privileged role if missing.
    CreatePrivilegedRole,
    /// `rename_role` delta operations.
    RenameRoles,
    /// Create missing roles, alter differing ones.
    CreateAndAlterRoles,
    /// Grant memberships not yet held.
    GrantRoleMemberships,
    /// `rename_db` and `delete_db` delta operations, in spec order.
    RenameAndDropDatabases,
    /// Create missing databases, alter differing ones.
    CreateAndAlterDatabases,
    /// Reassign, revoke and drop what roles to delete own or hold, in one database.
    DeleteRoleReferences,
    /// Drop the roles to delete.
    DropRoles,
}

impl PhaseKind {
    /// A kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            PhaseKind::DropInvalidDatabases => "drop-invalid-databases",
            PhaseKind::CreatePrivilegedRole => "create-privileged-role",
            PhaseKind::RenameRoles => "rename-roles",
            PhaseKind::CreateAndAlterRoles => "create-and-alter-roles",
            PhaseKind::GrantRoleMemberships => "grant-role-memberships",
            PhaseKind::RenameAndDropDatabases => "rename-and-drop-databases",
            PhaseKind::CreateAndAlterDatabases => "create-and-alter-databases",
            PhaseKind::DeleteRoleReferences => "delete-role-references",
            PhaseKind::DropRoles => "drop-roles",
        }
    }
}

/// The object an operation acts on, for reasons and errors.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectRef {
    /// A role.
    Role(String),
    /// A database.
    Database(String),
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectRef::Role(n) => write!(f, "role {n:?}"),
            ObjectRef::Database(n) => write!(f, "database {n:?}"),
        }
    }
}

/// One SQL statement. Statements that carry a secret (a password hash) show a redacted form in
/// `Display` and `Debug`; only [`Statement::expose_sql`] gives the real text.
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    text: String,
    redacted: Option<String>,
}

impl Statement {
    fn plain(text: String) -> Statement {
        Statement {
            text,
            redacted: None,
        }
    }

    fn secret(text: String, redacted: String) -> Statement {
        Statement {
            text,
            redacted: Some(redacted),
        }
    }

    /// The SQL to send. Contains secrets when [`Statement::has_secret`]: never log it.
    pub fn expose_sql(&self) -> &str {
        &self.text
    }

    /// Whether the statement carries a password (it is then run with statement logging off).
    pub fn has_secret(&self) -> bool {
        self.redacted.is_some()
    }

    /// The text with secrets replaced by `<redacted>`; safe to show and log.
    pub fn redacted(&self) -> &str {
        self.redacted.as_deref().unwrap_or(&self.text)
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.redacted())
    }
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Statement({:?})", self.redacted())
    }
}

/// One planned statement with why it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// What it acts on.
    pub object: ObjectRef,
    /// Why, e.g. `create: absent`, `alter: password differs`.
    pub reason: String,
    /// The statement.
    pub statement: Statement,
}

/// Operations that run on one connection to one database, in order, in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// What the phase does.
    pub kind: PhaseKind,
    /// The database to connect to.
    pub database: String,
    /// The statements, in the order they must run.
    pub operations: Vec<Operation>,
}

/// The ordered phases that converge a cluster to a spec. Empty when already converged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Non-empty phases, in execution order.
    pub phases: Vec<Phase>,
    /// Things the planner skipped and a human may want to know (never secrets).
    pub warnings: Vec<String>,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
    }

    /// Number of operations in all phases.
    pub fn operation_count(&self) -> usize {
        self.phases.iter().map(|p| p.operations.len()).sum()
    }

    /// Every operation, in execution order.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.phases.iter().flat_map(|p| &p.operations)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.phases.is_empty() {
            writeln!(f, "-- nothing to do")?;
        }
        for w in &self.warnings {
            writeln!(f, "-- warning: {w}")?;
        }
        for (i, phase) in self.phases.iter().enumerate() {
            writeln!(
                f,
                "-- phase {} {} on database {:?}",
                i + 1,
                phase.kind.name(),
                phase.database
            )?;
            for op in &phase.operations {
                writeln!(f, "{};  -- {}: {}", op.statement, op.object, op.reason)?;
            }
        }
        Ok(())
    }
}

/// A spec role after defaults and options.
struct DesiredRole<'a> {
    /// Position in `cluster.roles`.
    index: usize,
    name: &'a str,
    attrs: RoleAttributes,
    /// Stored form of the password (`md5…` or `SCRAM-SHA-256$…`), or `None` for no password.
    password: Option<String>,
}

/// The form PostgreSQL stores a pre-hashed password in, or `None` when it is not one.
fn stored_password(value: &str) -> Option<String> {
    let hex = value.strip_prefix("md5").unwrap_or(value);
    if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(format!("md5{}", hex.to_ascii_lowercase()));
    }
    // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    let rest = value.strip_prefix("SCRAM-SHA-256$")?;
    let (head, keys) = rest.split_once('$')?;
    let (iterations, salt) = head.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    // PostgreSQL hashes (as a cleartext) any verifier it cannot parse, so check what it checks:
    // base64 everywhere, 32-byte keys.
    let b64 = |s: &str| {
        !s.is_empty()
            && s.len().is_multiple_of(4)
            && s.trim_end_matches('=').len() + 2 >= s.len()
            && s.trim_end_matches('=')
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    let key = |s: &str| b64(s) && s.len() == 44 && s.ends_with('=') && !s.ends_with("==");
    (iterations.parse::<u32>().is_ok_and(|n| n > 0) && b64(salt) && key(stored) && key(server))
        .then(|| value.to_owned())
}

fn render_password(password: Option<&str>) -> (String, String) {
    match password {
        Some(p) => (
            format!("PASSWORD {}", quote_literal(p)),
            "PASSWORD '<redacted>'".to_owned(),
        ),
        None => ("PASSWORD NULL".to_owned(), "PASSWORD NULL".to_owned()),
    }
}

fn flag(on: bool, name: &str) -> String {
    if on {
        name.to_owned()
    } else {
        format!("NO{name}")
    }
}

/// Attribute clauses of `attrs` that differ from `current` (all of them when `current` is
/// `None`), with the names of what differs.
fn attribute_clauses(
    attrs: &RoleAttributes,
    current: Option<&RoleInfo>,
) -> (Vec<String>, Vec<&'static str>) {
    let mut clauses = Vec::new();
    let mut differs = Vec::new();
    let flags: [(bool, Option<bool>, &str, &'static str); 6] = [
        (
            attrs.inherit,
            current.map(|c| c.inherit),
            "INHERIT",
            "inherit",
        ),
        (
            attrs.createrole,
            current.map(|c| c.createrole),
            "CREATEROLE",
            "createrole",
        ),
        (
            attrs.createdb,
            current.map(|c| c.createdb),
            "CREATEDB",
            "createdb",
        ),
        (
            attrs.bypassrls,
            current.map(|c| c.bypassrls),
            "BYPASSRLS",
            "bypassrls",
        ),
        (
            attrs.replication,
            current.map(|c| c.replication),
            "REPLICATION",
            "replication",
        ),
        (attrs.login, current.map(|c| c.login), "LOGIN", "login"),
    ];
    for (want, have, keyword, what) in flags {
        if have != Some(want) {
            clauses.push(flag(want, keyword));
            differs.push(what);
        }
    }
    let limit_differs = match current {
        Some(c) => c.connection_limit != attrs.connection_limit,
        None => attrs.connection_limit != -1,
    };
    if limit_differs {
        clauses.push(format!("CONNECTION LIMIT {}", attrs.connection_limit));
        differs.push("connection limit");
    }
    if let Some(v) = attrs.valid_until
        && current.and_then(|c| c.valid_until) != Some(v)
    {
        clauses.push(format!(
            "VALID UNTIL {}",
            quote_literal(&render_valid_until(v))
        ));
        differs.push("valid until");
    }
    (clauses, differs)
}

fn ident_list<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `DO` block that revokes every privilege granted to `role` by a grantor other than the
/// object's owner (which `DROP OWNED` does not revoke), on relations, schemas and routines of
/// the current database, and on databases when `databases` is set. The role name reaches the
/// body only as a literal, and the body is dollar-quoted.
fn revoke_foreign_grants(role: &str, databases: bool) -> String {
    let database_branch = if databases {
        "\n          UNION ALL SELECT 'DATABASE', pg_catalog.quote_ident(d.datname), d.datdba, \
         x.grantor, x.grantee\n            FROM pg_catalog.pg_database d, \
         pg_catalog.aclexplode(d.datacl) x"
    } else {
        ""
    };
    let body = format!(
        "
DECLARE
  target_name text := {lit};
  target oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = target_name);
  g record;
BEGIN
  FOR g IN
    SELECT DISTINCT k.kind, k.obj, r.rolname AS grantor
      FROM (SELECT 'TABLE' AS kind, c.oid::pg_catalog.regclass::text AS obj,
                   c.relowner AS owner, x.grantor, x.grantee
              FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x
          UNION ALL SELECT 'SCHEMA', pg_catalog.quote_ident(n.nspname), n.nspowner,
                   x.grantor, x.grantee
              FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) x
          UNION ALL SELECT 'ROUTINE', p.oid::pg_catalog.regprocedure::text, p.proowner,
                   x.grantor, x.grantee
              FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) x{database_branch}) k
      JOIN pg_catalog.pg_roles r ON r.oid = k.grantor
     WHERE k.grantee = target AND k.grantor <> k.owner
  LOOP
    EXECUTE pg_catalog.format('SET LOCAL ROLE %I', g.grantor);
    EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %I CASCADE', g.kind, g.obj, target_name);
  END LOOP;
  RESET ROLE;
END
",
        lit = quote_literal(role)
    );
    format!("DO {}", dollar_quote(&body))
}

fn check_name(name: &str, pointer: String, problems: &mut Vec<PlanProblem>) {
    if let Some(reason) = name_problem(name) {
        problems.push(PlanProblem::BadName {
            name: name.to_owned(),
            pointer,
            reason,
        });
    }
}

struct Planner<'a> {
    options: &'a PlanOptions,
    /// The catalog as it will be after the operations planned so far; cloned on the first
    /// change only, so a converged cluster costs no copy.
    catalog: Cow<'a, Catalog>,
    phases: Vec<Phase>,
    warnings: Vec<String>,
}

impl Planner<'_> {
    fn phase(&mut self, kind: PhaseKind, database: &str, operations: Vec<Operation>) {
        if !operations.is_empty() {
            self.phases.push(Phase {
                kind,
                database: database.to_owned(),
                operations,
            });
        }
    }
}

fn op(object: ObjectRef, reason: impl Into<String>, statement: Statement) -> Operation {
    Operation {
        object,
        reason: reason.into(),
        statement,
    }
}

/// Plans the operations that converge `catalog` to `spec`. Pure: same inputs, same plan.
///
/// Refuses (and plans nothing) when a role or database option is not on the allow-list, a
/// password is not a hash, an owner or parent role does not exist, or the spec contradicts
/// itself; the error lists every problem with its JSON pointer.
pub fn plan(
    spec: &ValidatedSpec,
    catalog: &Catalog,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let s = spec.spec();
    let mut problems = Vec::new();
    let sys = options.system_database.as_str();
    let privileged = options.privileged_role_name.as_str();

    let jwks_roles: BTreeSet<&str> = s
        .local_proxy_config
        .iter()
        .flat_map(|l| l.jwks.iter().flatten())
        .flat_map(|j| j.role_names.iter().map(String::as_str))
        .collect();

    // Desired roles.
    let mut desired_roles: Vec<DesiredRole<'_>> = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, role) in s.cluster.roles.iter().enumerate() {
        let pointer = format!("/cluster/roles/{i}");
        check_name(&role.name, format!("{pointer}/name"), &mut problems);
        if !seen.insert(role.name.as_str()) {
            problems.push(PlanProblem::Conflict {
                object: role.name.clone(),
                pointer: format!("{pointer}/name"),
                message: format!("role {:?} is listed twice", role.name),
            });
            continue;
        }
        let mut attrs = if jwks_roles.contains(role.name.as_str()) {
            RoleAttributes::plain_login()
        } else {
            let mut a = RoleAttributes::spec_defaults();
            if role.name != privileged {
                a.in_roles.push(privileged.to_owned());
            }
            a
        };
        apply_role_options(
            &role.name,
            &pointer,
            role.options.as_deref().unwrap_or_default(),
            &mut attrs,
            &mut problems,
        );
        let password = match role.encrypted_password.as_deref() {
            None => None,
            Some(p) => match stored_password(p) {
                Some(stored) => Some(stored),
                None => {
                    problems.push(PlanProblem::BadPassword {
                        role: role.name.clone(),
                        pointer: format!("{pointer}/encrypted_password"),
                    });
                    None
                }
            },
        };
        desired_roles.push(DesiredRole {
            index: i,
            name: &role.name,
            attrs,
            password,
        });
    }

    // Delta operations.
    let deltas = s.delta_operations.as_deref().unwrap_or_default();
    let mut role_renames = Vec::new();
    let mut db_deltas = Vec::new();
    let mut role_deletes: Vec<&str> = Vec::new();
    let mut warnings = Vec::new();
    for (i, d) in deltas.iter().enumerate() {
        let pointer = format!("/delta_operations/{i}");
        check_name(&d.name, format!("{pointer}/name"), &mut problems);
        if let Some(new) = &d.new_name {
            check_name(new, format!("{pointer}/new_name"), &mut problems);
        }
        match d.kind() {
            None => warnings.push(format!("{pointer}: unknown action {:?} ignored", d.action)),
            Some(kind @ (DeltaAction::RenameRole | DeltaAction::RenameDb)) => {
                match d.new_name.as_deref() {
                    Some(new) if !new.is_empty() => {
                        if kind == DeltaAction::RenameRole {
                            role_renames.push((d.name.as_str(), new));
                        } else {
                            db_deltas.push((d.name.as_str(), Some(new)));
                        }
                    }
                    _ => problems.push(PlanProblem::Conflict {
                        object: d.name.clone(),
                        pointer,
                        message: format!("{} of {:?} without new_name", d.action, d.name),
                    }),
                }
            }
            Some(DeltaAction::DeleteDb) => {
                if s.cluster.databases.iter().any(|db| db.name == d.name) {
                    // Dropping and creating again on every run would never converge.
                    problems.push(PlanProblem::Conflict {
                        object: d.name.clone(),
                        pointer,
                        message: format!(
                            "database {:?} is both deleted and in cluster.databases",
                            d.name
                        ),
                    });
                }
                db_deltas.push((d.name.as_str(), None));
            }
            Some(DeltaAction::DeleteRole) => {
                if seen.contains(d.name.as_str()) {
                    problems.push(PlanProblem::Conflict {
                        object: d.name.clone(),
                        pointer: pointer.clone(),
                        message: format!("role {:?} is both deleted and in cluster.roles", d.name),
                    });
                }
                if d.name == options.superuser || d.name == privileged {
                    problems.push(PlanProblem::Conflict {
                        object: d.name.clone(),
                        pointer,
                        message: format!("role {:?} is managed by the compute", d.name),
                    });
                }
                role_deletes.push(&d.name);
            }
        }
    }

    // Roles that will exist once roles are converged.
    let mut will_exist: BTreeSet<&str> = catalog.roles.keys().map(String::as_str).collect();
    for (old, new) in &role_renames {
        if will_exist.contains(old) && !will_exist.contains(new) {
            will_exist.remove(old);
            will_exist.insert(new);
        }
    }
    will_exist.insert(privileged);
    will_exist.extend(seen.iter().copied());
    for r in &role_deletes {
        will_exist.remove(r);
    }
    for role in &desired_roles {
        let i = role.index;
        for parent in &role.attrs.in_roles {
            if !will_exist.contains(parent.as_str()) {
                problems.push(PlanProblem::UnknownParentRole {
                    role: role.name.to_owned(),
                    parent: parent.clone(),
                    pointer: format!("/cluster/roles/{i}/options"),
                });
            }
        }
    }

    // Desired databases.
    let mut desired_dbs = Vec::new();
    let mut seen_dbs = BTreeSet::new();
    for (i, db) in s.cluster.databases.iter().enumerate() {
        let pointer = format!("/cluster/databases/{i}");
        check_name(&db.name, format!("{pointer}/name"), &mut problems);
        check_name(&db.owner, format!("{pointer}/owner"), &mut problems);
        if !seen_dbs.insert(db.name.as_str()) {
            problems.push(PlanProblem::Conflict {
                object: db.name.clone(),
                pointer: format!("{pointer}/name"),
                message: format!("database {:?} is listed twice", db.name),
            });
            continue;
        }
        if !will_exist.contains(db.owner.as_str()) {
            problems.push(PlanProblem::UnknownOwner {
                database: db.name.clone(),
                owner: db.owner.clone(),
                pointer: format!("{pointer}/owner"),
            });
        }
        let opts = parse_database_options(
            &db.name,
            &pointer,
            db.options.as_deref().unwrap_or_default(),
            &mut problems,
        );
        desired_dbs.push((db, opts));
    }

    if !problems.is_empty() {
        return Err(PlanError { problems });
    }

    let mut p = Planner {
        options,
        catalog: Cow::Borrowed(catalog),
        phases: Vec::new(),
        warnings,
    };

    // 1. Invalid databases.
    let invalid: Vec<String> = p
        .catalog
        .databases
        .iter()
        .filter(|(_, d)| d.invalid)
        .map(|(n, _)| n.clone())
        .collect();
    let ops = invalid
        .into_iter()
        .map(|name| {
            p.catalog.to_mut().databases.remove(&name);
            op(
                ObjectRef::Database(name.clone()),
                "drop: invalid (interrupted DROP DATABASE)",
                Statement::plain(format!("DROP DATABASE IF EXISTS {}", quote_ident(&name))),
            )
        })
        .collect();
    p.phase(PhaseKind::DropInvalidDatabases, sys, ops);

    // 2. Privileged role.
    if !p.catalog.roles.contains_key(privileged) {
        let mut info = RoleInfo::postgres_defaults();
        info.createdb = true;
        info.createrole = true;
        info.replication = true;
        info.bypassrls = true;
        let parents: Vec<String> = ["pg_read_all_data", "pg_write_all_data"]
            .into_iter()
            .filter(|r| p.catalog.roles.contains_key(*r))
            .map(str::to_owned)
            .collect();
        let mut sql = format!(
            "CREATE ROLE {} CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS",
            quote_ident(privileged)
        );
        if !parents.is_empty() {
            sql.push_str(&format!(" IN ROLE {}", ident_list(&parents)));
        }
        info.member_of = parents.into_iter().collect();
        p.catalog.to_mut().roles.insert(privileged.to_owned(), info);
        let ops = vec![op(
            ObjectRef::Role(privileged.to_owned()),
            "create: privileged role absent",
            Statement::plain(sql),
        )];
        p.phase(PhaseKind::CreatePrivilegedRole, sys, ops);
    }

    // 3. Role renames.
    let mut ops = Vec::new();
    for (old, new) in role_renames {
        let has_old = p.catalog.roles.contains_key(old);
        let has_new = p.catalog.roles.contains_key(new);
        if has_old && !has_new {
            let mut info = p.catalog.to_mut().roles.remove(old).expect("checked above");
            if info
                .password
                .as_deref()
                .is_some_and(|p| p.starts_with("md5"))
            {
                info.password = None;
            }
            p.catalog.to_mut().roles.insert(new.to_owned(), info);
            for r in p.catalog.to_mut().roles.values_mut() {
                if r.member_of.remove(old) {
                    r.member_of.insert(new.to_owned());
                }
            }
            for d in p.catalog.to_mut().databases.values_mut() {
                if d.owner == old {
                    d.owner = new.to_owned();
                }
                if d.all_privileges.remove(old) {
                    d.all_privileges.insert(new.to_owned());
                }
            }
            ops.push(op(
                ObjectRef::Role(old.to_owned()),
                format!("rename: to {new:?}"),
                Statement::plain(format!(
                    "ALTER ROLE {} RENAME TO {}",
                    quote_ident(old),
                    quote_ident(new)
                )),
            ));
        } else if has_old && has_new {
            p.warnings.push(format!(
                "rename of role {old:?} to {new:?} skipped: both exist"
            ));
        }
    }
    p.phase(PhaseKind::RenameRoles, sys, ops);

    // 4. Create and alter roles.
    let mut ops = Vec::new();
    // Roles created in this phase cannot be named in `IN ROLE` of the same phase: the order of
    // creation would matter. Memberships in them go to phase 5.
    let mut created: BTreeSet<&str> = BTreeSet::new();
    for role in &desired_roles {
        let object = ObjectRef::Role(role.name.to_owned());
        match p.catalog.roles.get(role.name) {
            None => {
                let (clauses, _) = attribute_clauses(&role.attrs, None);
                let inline: Vec<String> = role
                    .attrs
                    .in_roles
                    .iter()
                    .filter(|r| {
                        p.catalog.roles.contains_key(r.as_str()) && !created.contains(r.as_str())
                    })
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let mut head = format!(
                    "CREATE ROLE {} {}",
                    quote_ident(role.name),
                    clauses.join(" ")
                );
                if !inline.is_empty() {
                    head.push_str(&format!(" IN ROLE {}", ident_list(&inline)));
                }
                let statement = if role.password.is_some() {
                    let (pw_sql, pw_redacted) = render_password(role.password.as_deref());
                    Statement::secret(format!("{head} {pw_sql}"), format!("{head} {pw_redacted}"))
                } else {
                    Statement::plain(head)
                };
                let mut info = RoleInfo::postgres_defaults();
                set_attributes(&mut info, &role.attrs);
                info.password = role.password.clone();
                info.member_of = inline.into_iter().collect();
                p.catalog.to_mut().roles.insert(role.name.to_owned(), info);
                created.insert(role.name);
                ops.push(op(object, "create: absent", statement));
            }
            Some(current) => {
                let (mut clauses, mut differs) = attribute_clauses(&role.attrs, Some(current));
                let password_differs = current.password != role.password;
                if clauses.is_empty() && !password_differs {
                    continue;
                }
                let head = format!("ALTER ROLE {}", quote_ident(role.name));
                let statement = if password_differs {
                    let (pw_sql, pw_redacted) = render_password(role.password.as_deref());
                    differs.push("password");
                    let mut redacted = clauses.clone();
                    redacted.push(pw_redacted);
                    clauses.push(pw_sql);
                    Statement::secret(
                        format!("{head} {}", clauses.join(" ")),
                        format!("{head} {}", redacted.join(" ")),
                    )
                } else {
                    Statement::plain(format!("{head} {}", clauses.join(" ")))
                };
                let reason = format!(
                    "alter: {} differ{}",
                    differs.join(", "),
                    if differs.len() == 1 { "s" } else { "" }
                );
                let info = p
                    .catalog
                    .to_mut()
                    .roles
                    .get_mut(role.name)
                    .expect("present");
                set_attributes(info, &role.attrs);
                info.password = role.password.clone();
                ops.push(op(object, reason, statement));
            }
        }
    }
    p.phase(PhaseKind::CreateAndAlterRoles, sys, ops);

    // 5. Memberships.
    let mut ops = Vec::new();
    for role in &desired_roles {
        let current = &p.catalog.roles[role.name].member_of;
        let missing: BTreeSet<String> = role
            .attrs
            .in_roles
            .iter()
            .filter(|r| !current.contains(*r))
            .cloned()
            .collect();
        if missing.is_empty() {
            continue;
        }
        ops.push(op(
            ObjectRef::Role(role.name.to_owned()),
            format!(
                "grant: not a member of {}",
                missing
                    .iter()
                    .map(|m| format!("{m:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Statement::plain(format!(
                "GRANT {} TO {}",
                ident_list(&missing),
                quote_ident(role.name)
            )),
        ));
        let info = p
            .catalog
            .to_mut()
            .roles
            .get_mut(role.name)
            .expect("present");
        info.member_of.extend(missing);
    }
    p.phase(PhaseKind::GrantRoleMemberships, sys, ops);

    // 6. Database renames and drops, in spec order.
    let mut ops = Vec::new();
    for (name, new) in db_deltas {
        let object = ObjectRef::Database(name.to_owned());
        match new {
            Some(new) => {
                let has_new = p.catalog.databases.contains_key(new);
                match p.catalog.databases.get(name) {
                    Some(_) if !has_new => {
                        let info = p.catalog.to_mut().databases.remove(name).expect("present");
                        p.catalog.to_mut().databases.insert(new.to_owned(), info);
                        ops.push(op(
                            object,
                            format!("rename: to {new:?}"),
                            Statement::plain(format!(
                                "ALTER DATABASE {} RENAME TO {}",
                                quote_ident(name),
                                quote_ident(new)
                            )),
                        ));
                    }
                    Some(_) => p.warnings.push(format!(
                        "rename of database {name:?} to {new:?} skipped: both exist"
                    )),
                    None => {}
                }
            }
            None => {
                let Some(info) = p.catalog.to_mut().databases.remove(name) else {
                    continue;
                };
                if info.is_template {
                    ops.push(op(
                        object.clone(),
                        "drop: is a template, which cannot be dropped",
                        Statement::plain(format!(
                            "ALTER DATABASE {} IS_TEMPLATE false",
                            quote_ident(name)
                        )),
                    ));
                }
                ops.push(op(
                    object,
                    "drop: delete_db",
                    Statement::plain(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(name)
                    )),
                ));
            }
        }
    }
    p.phase(PhaseKind::RenameAndDropDatabases, sys, ops);

    // 7. Create and alter databases.
    let mut ops = Vec::new();
    for (db, opts) in &desired_dbs {
        let object = ObjectRef::Database(db.name.clone());
        let name = quote_ident(&db.name);
        match p.catalog.databases.get(&db.name) {
            None => {
                let mut sql = format!("CREATE DATABASE {name} OWNER {}", quote_ident(&db.owner));
                let mut info = DatabaseInfo {
                    owner: db.owner.clone(),
                    allow_connections: true,
                    is_template: false,
                    connection_limit: -1,
                    invalid: false,
                    all_privileges: BTreeSet::from([privileged.to_owned()]),
                };
                for o in opts {
                    match o {
                        DatabaseOption::Text(k, v) => {
                            sql.push_str(&format!(" {k} {}", quote_literal(v)));
                        }
                        DatabaseOption::AllowConnections(b) => {
                            sql.push_str(&format!(" ALLOW_CONNECTIONS {b}"));
                            info.allow_connections = *b;
                        }
                        DatabaseOption::IsTemplate(b) => {
                            sql.push_str(&format!(" IS_TEMPLATE {b}"));
                            info.is_template = *b;
                        }
                        DatabaseOption::ConnectionLimit(n) => {
                            sql.push_str(&format!(" CONNECTION LIMIT {n}"));
                            info.connection_limit = *n;
                        }
                    }
                }
                p.catalog.to_mut().databases.insert(db.name.clone(), info);
                ops.push(op(object.clone(), "create: absent", Statement::plain(sql)));
                ops.push(op(
                    object,
                    format!("grant: {privileged:?} gets all privileges on a new database"),
                    Statement::plain(format!(
                        "GRANT ALL PRIVILEGES ON DATABASE {name} TO {}",
                        quote_ident(privileged)
                    )),
                ));
            }
            Some(current) => {
                let current = current.clone();
                if current.owner != db.owner {
                    ops.push(op(
                        object.clone(),
                        format!("alter: owner is {:?}", current.owner),
                        Statement::plain(format!(
                            "ALTER DATABASE {name} OWNER TO {}",
                            quote_ident(&db.owner)
                        )),
                    ));
                }
                let mut clauses = Vec::new();
                let mut differs = Vec::new();
                let mut next = current.clone();
                next.owner = db.owner.clone();
                for o in opts {
                    match *o {
                        DatabaseOption::AllowConnections(b) if b != current.allow_connections => {
                            clauses.push(format!("ALLOW_CONNECTIONS {b}"));
                            differs.push("allow_connections");
                            next.allow_connections = b;
                        }
                        DatabaseOption::IsTemplate(b) if b != current.is_template => {
                            clauses.push(format!("IS_TEMPLATE {b}"));
                            differs.push("is_template");
                            next.is_template = b;
                        }
                        DatabaseOption::ConnectionLimit(n) if n != current.connection_limit => {
                            clauses.push(format!("CONNECTION LIMIT {n}"));
                            differs.push("connection limit");
                            next.connection_limit = n;
                        }
                        // Creation-only options (locale, encoding, template, …) are not
                        // changed on an existing database.
                        _ => {}
                    }
                }
                if !clauses.is_empty() {
                    ops.push(op(
                        object.clone(),
                        format!(
                            "alter: {} differ{}",
                            differs.join(", "),
                            if differs.len() == 1 { "s" } else { "" }
                        ),
                        Statement::plain(format!(
                            "ALTER DATABASE {name} WITH {}",
                            clauses.join(" ")
                        )),
                    ));
                }
                if !current.all_privileges.contains(privileged) {
                    ops.push(op(
                        object,
                        format!("grant: {privileged:?} lacks privileges"),
                        Statement::plain(format!(
                            "GRANT ALL PRIVILEGES ON DATABASE {name} TO {}",
                            quote_ident(privileged)
                        )),
                    ));
                    next.all_privileges.insert(privileged.to_owned());
                }
                if next != current {
                    p.catalog.to_mut().databases.insert(db.name.clone(), next);
                }
            }
        }
    }
    p.phase(PhaseKind::CreateAndAlterDatabases, sys, ops);

    // 8. References of roles to delete, per database.
    let deleting: Vec<&str> = role_deletes
        .iter()
        .copied()
        .filter(|r| p.catalog.roles.contains_key(*r))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !deleting.is_empty() {
        let mut targets: Vec<(&String, &DatabaseInfo)> = p
            .catalog
            .databases
            .iter()
            .filter(|(_, d)| d.allow_connections && !d.invalid)
            .collect();
        // The system database first: it also revokes database-level grants.
        targets.sort_by_key(|(n, _)| (n.as_str() != sys, n.as_str()));
        let mut per_db: BTreeMap<usize, (String, Vec<Operation>)> = BTreeMap::new();
        for (i, (dbname, info)) in targets.iter().enumerate() {
            let mut ops = Vec::new();
            for role in &deleting {
                let to = if dbname.as_str() == sys || deleting.contains(&info.owner.as_str()) {
                    &p.options.superuser
                } else {
                    &info.owner
                };
                let object = ObjectRef::Role((*role).to_owned());
                ops.push(op(
                    object.clone(),
                    format!("delete: objects go to {to:?}"),
                    Statement::plain(format!(
                        "REASSIGN OWNED BY {} TO {}",
                        quote_ident(role),
                        quote_ident(to)
                    )),
                ));
                ops.push(op(
                    object.clone(),
                    "delete: privileges granted by other roles",
                    Statement::plain(revoke_foreign_grants(role, dbname.as_str() == sys)),
                ));
                ops.push(op(
                    object,
                    "delete: remaining privileges and objects",
                    Statement::plain(format!("DROP OWNED BY {}", quote_ident(role))),
                ));
            }
            per_db.insert(i, ((*dbname).clone(), ops));
        }
        for (_, (db, ops)) in per_db {
            p.phase(PhaseKind::DeleteRoleReferences, &db, ops);
        }
    }

    // 9. Drop roles.
    let ops = deleting
        .iter()
        .map(|r| {
            p.catalog.to_mut().roles.remove(*r);
            op(
                ObjectRef::Role((*r).to_owned()),
                "delete: delete_role",
                Statement::plain(format!("DROP ROLE IF EXISTS {}", quote_ident(r))),
            )
        })
        .collect();
    p.phase(PhaseKind::DropRoles, sys, ops);

    Ok(Plan {
        phases: p.phases,
        warnings: p.warnings,
    })
}

fn set_attributes(info: &mut RoleInfo, attrs: &RoleAttributes) {
    info.inherit = attrs.inherit;
    info.createrole = attrs.createrole;
    info.createdb = attrs.createdb;
    info.login = attrs.login;
    info.replication = attrs.replication;
    info.bypassrls = attrs.bypassrls;
    info.connection_limit = attrs.connection_limit;
    if attrs.valid_until.is_some() {
        info.valid_until = attrs.valid_until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_forms() {
        let check = |input: &str, expect: Option<&str>| {
            assert_eq!(stored_password(input).as_deref(), expect, "{input}");
        };
        let hex = "0123456789abcdef0123456789abcdef";
        check(hex, Some(&format!("md5{hex}")));
        check(&format!("md5{hex}"), Some(&format!("md5{hex}")));
        check(
            &format!("md5{}", hex.to_uppercase()),
            Some(&format!("md5{hex}")),
        );
        let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$\
                     a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=:\
                     c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3M=";
        check(scram, Some(scram));
        check("hunter2", None);
        check(&hex[1..], None);
        check(&format!("md5{hex}0"), None);
        check("SCRAM-SHA-256$4096:c2FsdA==$short:short", None);
        check(&scram.replace("4096", "0"), None);
        check(&scram.replace("$a2tr", "$'a2t"), None);
    }
}
