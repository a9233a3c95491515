//! What the spec asks for, in the planner's terms: each role's attributes (upstream's defaults
//! with the role's typed options on top), the databases with their typed options, and the
//! delta operations sorted by phase. Built from a [`ValidatedSpec`], which already guarantees
//! names, uniqueness, options, password hashes and delta consistency; the only problems left
//! are those that depend on the observed catalog or on [`PlanOptions`].

use std::collections::BTreeSet;

use compute_spec::{DatabaseOption, DeltaAction, RoleOptions, ValidUntil, ValidatedSpec};

use super::PlanOptions;
use crate::catalog::{Catalog, RoleInfo};
use crate::error::PlanProblem;

/// Role attributes a spec role gets, after defaults and options are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleAttributes<'a> {
    pub(crate) inherit: bool,
    pub(crate) createrole: bool,
    pub(crate) createdb: bool,
    pub(crate) login: bool,
    pub(crate) replication: bool,
    pub(crate) bypassrls: bool,
    pub(crate) connection_limit: i32,
    /// `None`: not managed (PostgreSQL cannot set it back to NULL).
    pub(crate) valid_until: Option<ValidUntil>,
    /// Roles to be a member of: the privileged role (for spec roles) and `IN ROLE` options.
    pub(crate) in_roles: Vec<&'a str>,
}

impl<'a> RoleAttributes<'a> {
    /// What upstream gives a spec role: `INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION LOGIN`.
    pub(crate) fn spec_defaults() -> RoleAttributes<'a> {
        RoleAttributes {
            inherit: true,
            createrole: true,
            createdb: true,
            login: true,
            replication: true,
            bypassrls: true,
            connection_limit: -1,
            valid_until: None,
            in_roles: Vec::new(),
        }
    }

    /// What upstream gives a role that logs in through local_proxy JWKS: `LOGIN` only.
    pub(crate) fn plain_login() -> RoleAttributes<'a> {
        RoleAttributes {
            createrole: false,
            createdb: false,
            replication: false,
            bypassrls: false,
            ..RoleAttributes::spec_defaults()
        }
    }

    /// These attributes with what `options` sets on top.
    pub(crate) fn with_options(mut self, options: &'a RoleOptions) -> RoleAttributes<'a> {
        let flags = [
            (&mut self.login, options.login),
            (&mut self.createdb, options.createdb),
            (&mut self.createrole, options.createrole),
            (&mut self.replication, options.replication),
            (&mut self.bypassrls, options.bypassrls),
            (&mut self.inherit, options.inherit),
        ];
        for (field, set) in flags {
            if let Some(on) = set {
                *field = on;
            }
        }
        if let Some(n) = options.connection_limit {
            self.connection_limit = n;
        }
        if options.valid_until.is_some() {
            self.valid_until = options.valid_until;
        }
        self.in_roles
            .extend(options.in_roles.iter().map(String::as_str));
        self
    }

    /// Writes these attributes into a catalog entry (`VALID UNTIL` only when managed).
    pub(crate) fn set_on(&self, info: &mut RoleInfo) {
        info.inherit = self.inherit;
        info.createrole = self.createrole;
        info.createdb = self.createdb;
        info.login = self.login;
        info.replication = self.replication;
        info.bypassrls = self.bypassrls;
        info.connection_limit = self.connection_limit;
        if self.valid_until.is_some() {
            info.valid_until = self.valid_until;
        }
    }
}

/// A spec role after defaults and options.
#[derive(Debug)]
pub(crate) struct DesiredRole<'a> {
    /// Position in `cluster.roles`.
    pub(crate) index: usize,
    pub(crate) name: &'a str,
    pub(crate) attrs: RoleAttributes<'a>,
    /// Stored form of the password (`md5…` or `SCRAM-SHA-256$…`), or `None` for no password.
    pub(crate) password: Option<&'a str>,
}

/// A spec database.
#[derive(Debug)]
pub(crate) struct DesiredDatabase<'a> {
    /// Position in `cluster.databases`.
    pub(crate) index: usize,
    pub(crate) name: &'a str,
    pub(crate) owner: &'a str,
    pub(crate) options: &'a [DatabaseOption],
}

/// Everything the phases need from the spec.
#[derive(Debug, Default)]
pub(crate) struct Desired<'a> {
    pub(crate) roles: Vec<DesiredRole<'a>>,
    pub(crate) databases: Vec<DesiredDatabase<'a>>,
    /// `rename_role` operations: (old, new), in spec order.
    pub(crate) role_renames: Vec<(&'a str, &'a str)>,
    /// `rename_db` (with the new name) and `delete_db` (`None`) operations, in spec order.
    pub(crate) database_deltas: Vec<(&'a str, Option<&'a str>)>,
    /// `delete_role` operations: (position in `delta_operations`, role), in spec order.
    pub(crate) role_deletes: Vec<(usize, &'a str)>,
    /// `drop_subscriptions_before_start` with the timeline to do it for (the spec's, which
    /// pg-config writes as `neon.timeline_id`); `None` when not asked or no timeline is known.
    pub(crate) drop_subscriptions_for: Option<String>,
    /// Delta operations with an unknown action, ignored; `drop_subscriptions_before_start`
    /// without a timeline, ignored.
    pub(crate) warnings: Vec<String>,
    /// The spec's `shared_preload_libraries` names `pg_stat_statements`.
    pub(crate) preloads_pg_stat_statements: bool,
}

impl<'a> Desired<'a> {
    /// Reads the spec; `options` names the privileged role every spec role is a member of.
    pub(crate) fn new(spec: &'a ValidatedSpec, options: &'a PlanOptions) -> Desired<'a> {
        let mut desired = Desired {
            roles: desired_roles(spec, &options.privileged_role_name),
            databases: spec
                .databases()
                .enumerate()
                .map(|(index, (db, options))| DesiredDatabase {
                    index,
                    name: &db.name,
                    owner: &db.owner,
                    options,
                })
                .collect(),
            preloads_pg_stat_statements: crate::guards::preloads(spec, "pg_stat_statements"),
            ..Desired::default()
        };
        desired.read_deltas(spec);
        desired.read_drop_subscriptions(spec);
        desired
    }

    /// Once per timeline, so without a timeline it is not done at all: dropping on every
    /// apply would drop the subscriptions users create after the start.
    fn read_drop_subscriptions(&mut self, spec: &'a ValidatedSpec) {
        if !spec.spec().drop_subscriptions_before_start {
            return;
        }
        match spec.storage().timeline_id {
            Some(timeline) => self.drop_subscriptions_for = Some(timeline.to_string()),
            None => self.warnings.push(
                "/drop_subscriptions_before_start: ignored: no timeline_id to record it for"
                    .to_owned(),
            ),
        }
    }

    fn read_deltas(&mut self, spec: &'a ValidatedSpec) {
        let deltas = spec.spec().delta_operations.as_deref().unwrap_or_default();
        for (i, d) in deltas.iter().enumerate() {
            // Validation guarantees a new name for every rename (`delta-missing-new-name`).
            let new = d.new_name.as_deref();
            match (d.kind(), new) {
                (None, _) => self.warnings.push(format!(
                    "/delta_operations/{i}: unknown action {:?} ignored",
                    d.action
                )),
                (Some(DeltaAction::RenameRole), Some(new)) => {
                    self.role_renames.push((&d.name, new));
                }
                (Some(DeltaAction::RenameDb), Some(new)) => {
                    self.database_deltas.push((&d.name, Some(new)));
                }
                (Some(DeltaAction::DeleteDb), _) => self.database_deltas.push((&d.name, None)),
                (Some(DeltaAction::DeleteRole), _) => self.role_deletes.push((i, &d.name)),
                (Some(DeltaAction::RenameRole | DeltaAction::RenameDb), None) => {}
            }
        }
    }

    /// What the spec asks that the catalog and the compute cannot give, in spec order: deleting
    /// a role the compute manages (per `options`), a membership in or a database owned by a role
    /// that will not exist. Everything else the [`ValidatedSpec`] guarantees.
    pub(crate) fn problems(&self, catalog: &Catalog, options: &PlanOptions) -> Vec<PlanProblem> {
        let mut problems = Vec::new();
        for &(i, role) in &self.role_deletes {
            if role == options.superuser || role == options.privileged_role_name {
                problems.push(PlanProblem::Conflict {
                    object: role.to_owned(),
                    pointer: format!("/delta_operations/{i}"),
                    message: format!("role {role:?} is managed by the compute"),
                });
            }
        }
        let will_exist = self.roles_that_will_exist(catalog, options);
        for role in &self.roles {
            for parent in role
                .attrs
                .in_roles
                .iter()
                .filter(|p| !will_exist.contains(*p))
            {
                problems.push(PlanProblem::UnknownParentRole {
                    role: role.name.to_owned(),
                    parent: (*parent).to_owned(),
                    pointer: format!("/cluster/roles/{}/options", role.index),
                });
            }
        }
        for db in self
            .databases
            .iter()
            .filter(|db| !will_exist.contains(db.owner))
        {
            problems.push(PlanProblem::UnknownOwner {
                database: db.name.to_owned(),
                owner: db.owner.to_owned(),
                pointer: format!("/cluster/databases/{}/owner", db.index),
            });
        }
        problems
    }

    /// Roles that will exist once roles are converged.
    fn roles_that_will_exist<'s>(
        &'s self,
        catalog: &'s Catalog,
        options: &'s PlanOptions,
    ) -> BTreeSet<&'s str> {
        let mut will_exist: BTreeSet<&str> = catalog.roles.keys().map(String::as_str).collect();
        for &(old, new) in &self.role_renames {
            if will_exist.contains(old) && !will_exist.contains(new) {
                will_exist.remove(old);
                will_exist.insert(new);
            }
        }
        will_exist.insert(&options.privileged_role_name);
        will_exist.extend(self.roles.iter().map(|r| r.name));
        for (_, role) in &self.role_deletes {
            will_exist.remove(role);
        }
        will_exist
    }
}

/// Spec roles with upstream's defaults (JWKS roles: `LOGIN` only; others: the spec defaults and
/// membership in `privileged`) and their options on top.
fn desired_roles<'a>(spec: &'a ValidatedSpec, privileged: &'a str) -> Vec<DesiredRole<'a>> {
    let jwks_roles: BTreeSet<&str> = spec
        .spec()
        .local_proxy_config
        .iter()
        .flat_map(|l| l.jwks.iter().flatten())
        .flat_map(|j| j.role_names.iter().map(String::as_str))
        .collect();
    spec.roles()
        .enumerate()
        .map(|(index, (role, typed))| {
            let defaults = if jwks_roles.contains(role.name.as_str()) {
                RoleAttributes::plain_login()
            } else {
                let mut a = RoleAttributes::spec_defaults();
                if role.name != privileged {
                    a.in_roles.push(privileged);
                }
                a
            };
            DesiredRole {
                index,
                name: &role.name,
                attrs: defaults.with_options(&typed.options),
                password: typed.password.as_ref().map(|p| p.expose_stored()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The desired state of a spec, and the problems it has against a catalog with the roles
    /// `existing`.
    fn check(spec: &str, existing: &[&str], expect: expect_test::Expect) {
        let spec = ValidatedSpec::from_json(spec).unwrap();
        let options = PlanOptions::default();
        let desired = Desired::new(&spec, &options);
        let mut catalog = Catalog::default();
        for name in existing {
            catalog
                .roles
                .insert((*name).to_owned(), RoleInfo::postgres_defaults());
        }
        let mut out = String::new();
        for r in &desired.roles {
            out.push_str(&format!(
                "role {}: {:?} password {:?}\n",
                r.name, r.attrs, r.password
            ));
        }
        for d in &desired.databases {
            out.push_str(&format!(
                "database {} owner {}: {:?}\n",
                d.name, d.owner, d.options
            ));
        }
        out.push_str(&format!(
            "renames {:?}, database deltas {:?}, deletes {:?}, warnings {:?}\n",
            desired.role_renames, desired.database_deltas, desired.role_deletes, desired.warnings
        ));
        for p in desired.problems(&catalog, &options) {
            out.push_str(&format!("problem: {p}\n"));
        }
        expect.assert_eq(&out);
    }

    #[test]
    fn defaults_options_and_deltas() {
        check(
            r#"{"format_version": 1.0, "cluster": {
              "roles": [{"name": "a", "encrypted_password": "0123456789ABCDEF0123456789abcdef",
                         "options": [{"name": "NOLOGIN", "vartype": "bool"},
                                     {"name": "LOGIN", "value": "false", "vartype": "bool"},
                                     {"name": "CONNECTION LIMIT", "value": "3", "vartype": "integer"},
                                     {"name": "IN ROLE", "value": "b", "vartype": "string"}]},
                        {"name": "b"}, {"name": "neon_superuser"}],
              "databases": [{"name": "d", "owner": "a",
                             "options": [{"name": "IS_TEMPLATE", "value": "on", "vartype": "bool"}]}]},
              "local_proxy_config": {"jwks": [{"id": "1", "role_names": ["b"], "jwks_url": "http://x", "provider_name": "p"}]},
              "delta_operations": [{"action": "rename_role", "name": "x", "new_name": "y"},
                                   {"action": "delete_db", "name": "e"},
                                   {"action": "rename_db", "name": "f", "new_name": "g"},
                                   {"action": "delete_role", "name": "z"},
                                   {"action": "shrug", "name": "w"}]}"#,
            &[],
            expect_test::expect![[r#"
                role a: RoleAttributes { inherit: true, createrole: true, createdb: true, login: false, replication: true, bypassrls: true, connection_limit: 3, valid_until: None, in_roles: ["neon_superuser", "b"] } password Some("md50123456789abcdef0123456789abcdef")
                role b: RoleAttributes { inherit: true, createrole: false, createdb: false, login: true, replication: false, bypassrls: false, connection_limit: -1, valid_until: None, in_roles: [] } password None
                role neon_superuser: RoleAttributes { inherit: true, createrole: true, createdb: true, login: true, replication: true, bypassrls: true, connection_limit: -1, valid_until: None, in_roles: [] } password None
                database d owner a: [IsTemplate(true)]
                renames [("x", "y")], database deltas [("e", None), ("f", Some("g"))], deletes [(3, "z")], warnings ["/delta_operations/4: unknown action \"shrug\" ignored"]
            "#]],
        );
    }

    #[test]
    fn problems_depend_on_the_catalog_and_the_compute() {
        let spec = r#"{"format_version": 1.0, "cluster": {
              "roles": [{"name": "a", "options": [{"name": "IN ROLE", "value": "old", "vartype": "string"},
                                                  {"name": "IN ROLE pg_monitor", "vartype": "string"}]}],
              "databases": [{"name": "d", "owner": "cloud_admin"}]},
              "delta_operations": [{"action": "rename_role", "name": "old", "new_name": "new"}]}"#;
        check(
            spec,
            &["old", "pg_monitor"],
            expect_test::expect![[r#"
                role a: RoleAttributes { inherit: true, createrole: true, createdb: true, login: true, replication: true, bypassrls: true, connection_limit: -1, valid_until: None, in_roles: ["neon_superuser", "old", "pg_monitor"] } password None
                database d owner cloud_admin: []
                renames [("old", "new")], database deltas [], deletes [], warnings []
                problem: /cluster/roles/0/options: role "a" is to be a member of "old", which does not exist
                problem: /cluster/databases/0/owner: owner "cloud_admin" of database "d" is not a spec role and does not exist
            "#]],
        );
        // Deleting the superuser passes validation when it is not a provided role; the
        // planner still refuses.
        let spec = r#"{"format_version": 1.0, "cluster": {"roles": [], "databases": []},
              "delta_operations": [{"action": "delete_role", "name": "admin"}]}"#;
        let validated = ValidatedSpec::from_json(spec).unwrap();
        let options = PlanOptions {
            superuser: "admin".to_owned(),
            ..PlanOptions::default()
        };
        let problems = Desired::new(&validated, &options).problems(&Catalog::default(), &options);
        assert_eq!(
            problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["/delta_operations/0: role \"admin\" is managed by the compute"]
        );
    }
}
