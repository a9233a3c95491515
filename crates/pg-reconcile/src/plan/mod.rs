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
//! 6. **drop-subscriptions-of-dropped-databases** (one phase per database that a `delete_db`
//!    drops and that has subscriptions, in that database): each subscription disabled, detached
//!    from its slot and dropped, because PostgreSQL refuses to drop a database a subscription
//!    is in. Upstream does this first of all; here it is just before the drop, with the
//!    databases followed through the renames of phase 7.
//! 7. **rename-and-drop-databases**: `delta_operations` on databases, in spec order (a rename
//!    may reuse a dropped name and vice versa), before creation for the same reason as phase 3.
//! 8. **create-and-alter-databases**: creation needs the owners of phase 4; owner changes must
//!    precede role deletion so a deleted role owns no spec database. The operations of
//!    different databases are independent ([`Dependencies::SameObject`]: PostgreSQL 15 lets
//!    several `CREATE DATABASE` copy the same template at once, it only refuses a template
//!    with other sessions connected), unless a creation copies a database of this phase or
//!    the system database.
//! 9. **create-schema-neon** (system db): schema `neon` if missing (upstream's place, before
//!    the per-database work; the `neon` extension lives there).
//! 10. **delete-role-references** (one phase per database that allows connections): `REASSIGN
//!     OWNED` to the database owner (to the superuser in the system database, or when the owner
//!     is a role being deleted), revocation of privileges granted to the role by other
//!     grantors, then `DROP OWNED`. Only for roles that still exist, so a re-run after a crash
//!     is harmless.
//! 11. **schema-privileges** (one phase per spec database that allows connections): `public`
//!     owned by the superuser or `zenith_admin` goes to the database owner; `web_access` gets
//!     `CREATE` on it; the privileged role gets default privileges on new tables and
//!     sequences. After the owners and roles of phases 4–8 exist.
//! 12. **drop-subscriptions-before-start** (one phase per spec database, and the system
//!     database, that has subscriptions): only when the spec sets
//!     `drop_subscriptions_before_start`, its timeline is known and not yet recorded in
//!     `neon.drop_subscriptions_done` (observed with the catalog); as in phase 6.
//! 13. **create-extensions** (system db): `pg_stat_statements` when preloaded, `neon` when the
//!     library exists ([`PlanOptions::neon_extension`]).
//! 14. **create-health-check** (system db): `public.health_check` with its row.
//! 15. **drop-roles** (system db): once nothing references the roles.
//! 16. **record-subscriptions-dropped** (system db): with phase 12, last (as upstream), so a
//!     failure before it makes the next apply drop again: `neon.drop_subscriptions_done`
//!     created if missing and its row set to the timeline.
//! 17. **configure-audit** (system db): with an audit level, extension `pgaudit` (and
//!     `pgauditlogtofile` for the compliance levels) in `public` and `pgaudit.log = 'none'` as
//!     the system database's setting, as upstream (last, as upstream).
//!
//! Every statement is idempotent given the catalog it was planned from, and every phase plans
//! only what the catalog says is missing, so re-running after a crash at any point plans the
//! rest and converges. A converged cluster plans zero operations.
//!
//! # Layout
//!
//! [`plan`] is a driver: [`desired`] reads the [`ValidatedSpec`] into what the phases need
//! (and finds the few problems that depend on the catalog), then one [`Planner`] method per
//! phase plans its operations and updates the simulated catalog — [`databases`] (phases 1, 7,
//! 8), [`roles`] (2–5), [`deletion`] (10, 15), [`privileges`] (11), [`system`] (9, 13, 14, 17),
//! [`subscriptions`] (6, 12, 16). Statement texts are built in [`sql`] and beside the phases
//! that send them.

mod databases;
mod deletion;
mod desired;
mod privileges;
mod roles;
mod sql;
mod subscriptions;
mod system;

use std::borrow::Cow;
use std::fmt;

use compute_spec::ValidatedSpec;

use crate::catalog::Catalog;
use crate::error::PlanError;
use desired::Desired;

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
    /// The server has the `neon` library, so the `neon` extension is created (in schema
    /// `neon`) and kept at its default version. Default `false` (vanilla PostgreSQL).
    pub neon_extension: bool,
    /// At most this many sessions at once ([`crate::Connector::max_sessions`]) in
    /// [`crate::reconcile`]; `None` (the default) for its own limits. compute_ctl passes the
    /// spec's `reconfigure_concurrency` when reconfiguring a running compute, as upstream.
    pub max_sessions: Option<usize>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            privileged_role_name: "neon_superuser".to_owned(),
            superuser: "cloud_admin".to_owned(),
            system_database: "postgres".to_owned(),
            neon_extension: false,
            max_sessions: None,
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
    /// Disable, detach and drop the subscriptions of a database a `delete_db` drops, in it.
    DropSubscriptionsOfDroppedDatabases,
    /// `rename_db` and `delete_db` delta operations, in spec order.
    RenameAndDropDatabases,
    /// Create missing databases, alter differing ones.
    CreateAndAlterDatabases,
    /// Create schema `neon` if missing (system database).
    CreateSchemaNeon,
    /// Reassign, revoke and drop what roles to delete own or hold, in one database.
    DeleteRoleReferences,
    /// Owner of `public`, `CREATE` on it for `web_access`, and default privileges in it for
    /// the privileged role, in one spec database.
    SchemaPrivileges,
    /// `drop_subscriptions_before_start`: disable, detach and drop the subscriptions of one
    /// database.
    DropSubscriptionsBeforeStart,
    /// `pg_stat_statements` (when preloaded) and `neon` (when the library exists) in the
    /// system database.
    CreateExtensions,
    /// `public.health_check` in the system database, if missing.
    CreateHealthCheck,
    /// Drop the roles to delete.
    DropRoles,
    /// Record the timeline `drop_subscriptions_before_start` was done for.
    RecordSubscriptionsDropped,
    /// The audit extensions and the system database's `pgaudit.log`, with an audit level.
    ConfigureAudit,
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
            PhaseKind::DropSubscriptionsOfDroppedDatabases => {
                "drop-subscriptions-of-dropped-databases"
            }
            PhaseKind::RenameAndDropDatabases => "rename-and-drop-databases",
            PhaseKind::CreateAndAlterDatabases => "create-and-alter-databases",
            PhaseKind::CreateSchemaNeon => "create-schema-neon",
            PhaseKind::DeleteRoleReferences => "delete-role-references",
            PhaseKind::SchemaPrivileges => "schema-privileges",
            PhaseKind::CreateExtensions => "create-extensions",
            PhaseKind::CreateHealthCheck => "create-health-check",
            PhaseKind::DropSubscriptionsBeforeStart => "drop-subscriptions-before-start",
            PhaseKind::DropRoles => "drop-roles",
            PhaseKind::RecordSubscriptionsDropped => "record-subscriptions-dropped",
            PhaseKind::ConfigureAudit => "configure-audit",
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
    /// A schema of the system database.
    Schema(String),
    /// An extension of the system database.
    Extension(String),
    /// A table of the system database (schema-qualified).
    Table(String),
    /// A logical replication subscription.
    Subscription {
        /// Its database.
        database: String,
        /// Its name.
        name: String,
    },
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectRef::Role(n) => write!(f, "role {n:?}"),
            ObjectRef::Database(n) => write!(f, "database {n:?}"),
            ObjectRef::Schema(n) => write!(f, "schema {n:?}"),
            ObjectRef::Extension(n) => write!(f, "extension {n:?}"),
            ObjectRef::Table(n) => write!(f, "table {n:?}"),
            ObjectRef::Subscription { database, name } => {
                write!(f, "subscription {name:?} in database {database:?}")
            }
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

/// Which operations of a phase depend on which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependencies {
    /// Each operation may depend on every earlier one: they run in order on one session.
    Sequential,
    /// Only operations on the same [`ObjectRef`] depend on one another (in plan order); those
    /// on different objects may run on separate sessions at the same time.
    SameObject,
}

/// Operations on one database that run in order, in one round trip per session; with
/// [`Dependencies::SameObject`], possibly spread over several sessions (see [`Phase::chains`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// What the phase does.
    pub kind: PhaseKind,
    /// The database to connect to.
    pub database: String,
    /// The statements, in the order they must run.
    pub operations: Vec<Operation>,
    /// Which of them depend on which.
    pub dependencies: Dependencies,
}

impl Phase {
    /// The operations as chains of indexes into [`Phase::operations`]: each chain must run
    /// in order on one session, and no chain depends on another. One chain of everything when
    /// [`Dependencies::Sequential`], else one per object, in order of first appearance.
    pub fn chains(&self) -> Vec<Vec<usize>> {
        if self.dependencies == Dependencies::Sequential {
            return vec![(0..self.operations.len()).collect()];
        }
        let mut chains: Vec<(&ObjectRef, Vec<usize>)> = Vec::new();
        for (i, op) in self.operations.iter().enumerate() {
            match chains.iter_mut().find(|(object, _)| *object == &op.object) {
                Some((_, chain)) => chain.push(i),
                None => chains.push((&op.object, vec![i])),
            }
        }
        chains.into_iter().map(|(_, chain)| chain).collect()
    }
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
            let independent = match phase.dependencies {
                Dependencies::Sequential => "",
                Dependencies::SameObject => " (objects independent)",
            };
            writeln!(
                f,
                "-- phase {} {} on database {:?}{independent}",
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

/// Plans the operations that converge `catalog` to `spec`. Pure: same inputs, same plan.
///
/// The [`ValidatedSpec`] guarantees names, uniqueness, options, password hashes and the
/// consistency of delta operations. What remains is refused here (and nothing is planned):
/// a database owner or `IN ROLE` parent that will not exist in this catalog, and a
/// `delete_role` of the superuser or privileged role named in `options`; the error lists every
/// problem with its JSON pointer.
pub fn plan(
    spec: &ValidatedSpec,
    catalog: &Catalog,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    plan_with(spec, catalog, options, Unobserved::Checked)
}

/// What the plan does for a spec database whose contents were not observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unobserved {
    /// A guarded block that checks and fixes its schema `public` (the default).
    Checked,
    /// Nothing: the recorded digest says a full apply converged it (`digest` module).
    Converged,
}

/// [`plan`], with `unobserved` deciding what databases without observed contents get.
pub(crate) fn plan_with(
    spec: &ValidatedSpec,
    catalog: &Catalog,
    options: &PlanOptions,
    unobserved: Unobserved,
) -> Result<Plan, PlanError> {
    let desired = Desired::new(spec, options);
    let problems = desired.problems(catalog, options);
    if !problems.is_empty() {
        return Err(PlanError { problems });
    }
    let mut p = Planner::new(options, catalog, desired.warnings.clone());
    p.unobserved = unobserved;
    p.drop_invalid_databases();
    p.create_privileged_role();
    p.rename_roles(&desired.role_renames);
    p.create_and_alter_roles(&desired.roles);
    p.grant_role_memberships(&desired.roles);
    p.drop_subscriptions_of_dropped_databases(&desired.database_deltas);
    p.rename_and_drop_databases(&desired.database_deltas);
    p.create_and_alter_databases(&desired.databases);
    p.create_schema_neon();
    let deleting = p.roles_to_delete(&desired.role_deletes);
    p.delete_role_references(&deleting);
    p.schema_privileges(&desired.databases);
    let timeline = desired.drop_subscriptions_for.as_deref();
    p.drop_subscriptions_before_start(timeline, &desired.databases);
    p.create_extensions(desired.preloads_pg_stat_statements);
    p.create_health_check();
    p.drop_roles(&deleting);
    p.record_subscriptions_dropped(timeline);
    p.configure_audit(spec.spec().audit_log_level);
    Ok(p.finish())
}

/// The planner's state between phases: the catalog as it will be after the operations planned
/// so far, and the phases planned. Each phase is one method (in the submodules).
struct Planner<'a> {
    options: &'a PlanOptions,
    /// Cloned on the first change only, so a converged cluster costs no copy.
    catalog: Cow<'a, Catalog>,
    phases: Vec<Phase>,
    warnings: Vec<String>,
    /// What databases without observed contents get.
    unobserved: Unobserved,
}

impl<'a> Planner<'a> {
    fn new(options: &'a PlanOptions, catalog: &'a Catalog, warnings: Vec<String>) -> Self {
        Planner {
            options,
            catalog: Cow::Borrowed(catalog),
            phases: Vec::new(),
            warnings,
            unobserved: Unobserved::Checked,
        }
    }

    /// Adds a sequential phase on `database` unless it has no operations.
    fn phase(&mut self, kind: PhaseKind, database: &str, operations: Vec<Operation>) {
        self.phase_with(kind, database, operations, Dependencies::Sequential);
    }

    /// Adds a phase on `database` unless it has no operations.
    fn phase_with(
        &mut self,
        kind: PhaseKind,
        database: &str,
        operations: Vec<Operation>,
        dependencies: Dependencies,
    ) {
        if !operations.is_empty() {
            self.phases.push(Phase {
                kind,
                database: database.to_owned(),
                operations,
                dependencies,
            });
        }
    }

    /// Adds a sequential phase on the system database unless it has no operations.
    fn system_phase(&mut self, kind: PhaseKind, operations: Vec<Operation>) {
        let options = self.options;
        self.phase(kind, &options.system_database, operations);
    }

    fn finish(self) -> Plan {
        Plan {
            phases: self.phases,
            warnings: self.warnings,
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

/// Helpers for the phase tests: small catalogs and one phase run on its own.
#[cfg(test)]
mod testing {
    use std::collections::BTreeSet;

    use compute_spec::ValidatedSpec;

    use super::{Desired, PlanOptions, Planner};
    use crate::catalog::{Catalog, DatabaseInfo, RoleInfo};

    /// A catalog with `roles` (PostgreSQL's defaults; `name:member_of,…` adds memberships) and
    /// `databases` (`name:owner`, all with connections allowed).
    pub(super) fn catalog(roles: &[&str], databases: &[&str]) -> Catalog {
        let mut c = Catalog::default();
        for spec in roles {
            let (name, parents) = spec.split_once(':').unwrap_or((spec, ""));
            let mut info = RoleInfo::postgres_defaults();
            info.member_of = parents
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            c.roles.insert(name.to_owned(), info);
        }
        for spec in databases {
            let (name, owner) = spec.split_once(':').unwrap_or((spec, "cloud_admin"));
            c.databases.insert(name.to_owned(), database(owner));
        }
        c
    }

    /// A database owned by `owner` as `CREATE DATABASE` makes it.
    pub(super) fn database(owner: &str) -> DatabaseInfo {
        DatabaseInfo {
            owner: owner.to_owned(),
            allow_connections: true,
            is_template: false,
            connection_limit: -1,
            invalid: false,
            all_privileges: BTreeSet::new(),
            contents: None,
            subscriptions: Default::default(),
        }
    }

    /// A spec with these roles and databases (JSON arrays) and delta operations.
    pub(super) fn spec(roles: &str, databases: &str, deltas: &str) -> ValidatedSpec {
        let text = format!(
            r#"{{"format_version": 1.0, "cluster": {{"roles": {roles}, "databases": {databases}}},
                "delta_operations": {deltas}}}"#
        );
        ValidatedSpec::from_json(&text).unwrap()
    }

    /// Runs `phase` alone on `catalog` with the desired state of `spec`: the plan it makes,
    /// then the simulated catalog afterwards (roles with memberships, databases with owners).
    pub(super) fn run_phase(
        spec: &ValidatedSpec,
        catalog: &Catalog,
        phase: impl FnOnce(&mut Planner<'_>, &Desired<'_>),
    ) -> String {
        let options = PlanOptions::default();
        let desired = Desired::new(spec, &options);
        let mut p = Planner::new(&options, catalog, Vec::new());
        phase(&mut p, &desired);
        let after = p.catalog.clone().into_owned();
        let mut out = p.finish().to_string();
        out.push_str("-- catalog after:\n");
        for (name, r) in &after.roles {
            out.push_str(&format!("--   role {name:?} in {:?}\n", r.member_of));
        }
        for (name, d) in &after.databases {
            out.push_str(&format!("--   database {name:?} owner {:?}\n", d.owner));
        }
        out
    }
}
