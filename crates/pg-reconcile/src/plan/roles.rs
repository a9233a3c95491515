//! Phases 2–5, on the system database: create the privileged role, rename roles, create and
//! alter roles, grant memberships.

use std::collections::BTreeSet;

use pg_quote::quote_ident;

use super::desired::DesiredRole;
use super::sql::{attribute_clauses, differ_reason, ident_list, password_clause};
use super::{ObjectRef, Operation, PhaseKind, Planner, Statement, op};
use crate::catalog::RoleInfo;

impl Planner<'_> {
    /// Phase 2: the privileged role, if missing, member of the predefined data roles that
    /// exist.
    pub(super) fn create_privileged_role(&mut self) {
        let privileged = self.options.privileged_role_name.as_str();
        if self.catalog.roles.contains_key(privileged) {
            return;
        }
        let mut info = RoleInfo::postgres_defaults();
        info.createdb = true;
        info.createrole = true;
        info.replication = true;
        info.bypassrls = true;
        let parents: Vec<String> = ["pg_read_all_data", "pg_write_all_data"]
            .into_iter()
            .filter(|r| self.catalog.roles.contains_key(*r))
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
        self.catalog
            .to_mut()
            .roles
            .insert(privileged.to_owned(), info);
        let ops = vec![op(
            ObjectRef::Role(privileged.to_owned()),
            "create: privileged role absent",
            Statement::plain(sql),
        )];
        self.system_phase(PhaseKind::CreatePrivilegedRole, ops);
    }

    /// Phase 3: `rename_role` operations whose old name exists and new name does not; both
    /// existing is skipped with a warning, neither is nothing to do.
    pub(super) fn rename_roles(&mut self, renames: &[(&str, &str)]) {
        let mut ops = Vec::new();
        for &(old, new) in renames {
            let has_old = self.catalog.roles.contains_key(old);
            let has_new = self.catalog.roles.contains_key(new);
            if has_old && !has_new {
                self.rename_role_in_catalog(old, new);
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
                self.warnings.push(format!(
                    "rename of role {old:?} to {new:?} skipped: both exist"
                ));
            }
        }
        self.system_phase(PhaseKind::RenameRoles, ops);
    }

    /// What `ALTER ROLE old RENAME TO new` does to the catalog: memberships and database owners
    /// and grants follow the role; an md5 password (salted with the name) is cleared.
    fn rename_role_in_catalog(&mut self, old: &str, new: &str) {
        let catalog = self.catalog.to_mut();
        let mut info = catalog.roles.remove(old).expect("checked by the caller");
        if info
            .password
            .as_deref()
            .is_some_and(|p| p.starts_with("md5"))
        {
            info.password = None;
        }
        catalog.roles.insert(new.to_owned(), info);
        for r in catalog.roles.values_mut() {
            if r.member_of.remove(old) {
                r.member_of.insert(new.to_owned());
            }
        }
        for d in catalog.databases.values_mut() {
            if d.owner == old {
                d.owner = new.to_owned();
            }
            if d.all_privileges.remove(old) {
                d.all_privileges.insert(new.to_owned());
            }
        }
    }

    /// Phase 4: missing roles are created with every attribute and the memberships whose
    /// parent already exists; existing roles are altered only in what differs.
    pub(super) fn create_and_alter_roles(&mut self, roles: &[DesiredRole<'_>]) {
        let mut ops = Vec::new();
        // Roles created in this phase cannot be named in `IN ROLE` of the same phase: the order
        // of creation would matter. Memberships in them go to phase 5.
        let mut created: BTreeSet<&str> = BTreeSet::new();
        for role in roles {
            if self.catalog.roles.contains_key(role.name) {
                ops.extend(self.alter_role(role));
            } else {
                ops.push(self.create_role(role, &created));
                created.insert(role.name);
            }
        }
        self.system_phase(PhaseKind::CreateAndAlterRoles, ops);
    }

    fn create_role(&mut self, role: &DesiredRole<'_>, created: &BTreeSet<&str>) -> Operation {
        let (clauses, _) = attribute_clauses(&role.attrs, None);
        let inline: BTreeSet<String> = role
            .attrs
            .in_roles
            .iter()
            .filter(|r| self.catalog.roles.contains_key(**r) && !created.contains(**r))
            .map(|r| (*r).to_owned())
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
            let (pw_sql, pw_redacted) = password_clause(role.password);
            Statement::secret(format!("{head} {pw_sql}"), format!("{head} {pw_redacted}"))
        } else {
            Statement::plain(head)
        };
        let mut info = RoleInfo::postgres_defaults();
        role.attrs.set_on(&mut info);
        info.password = role.password.map(str::to_owned);
        info.member_of = inline;
        self.catalog
            .to_mut()
            .roles
            .insert(role.name.to_owned(), info);
        op(
            ObjectRef::Role(role.name.to_owned()),
            "create: absent",
            statement,
        )
    }

    /// `ALTER ROLE` for an existing role, when its attributes or password differ.
    fn alter_role(&mut self, role: &DesiredRole<'_>) -> Option<Operation> {
        let current = &self.catalog.roles[role.name];
        let (mut clauses, mut differs) = attribute_clauses(&role.attrs, Some(current));
        let password_differs = current.password.as_deref() != role.password;
        if clauses.is_empty() && !password_differs {
            return None;
        }
        let head = format!("ALTER ROLE {}", quote_ident(role.name));
        let statement = if password_differs {
            let (pw_sql, pw_redacted) = password_clause(role.password);
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
        let info = self
            .catalog
            .to_mut()
            .roles
            .get_mut(role.name)
            .expect("present");
        role.attrs.set_on(info);
        info.password = role.password.map(str::to_owned);
        Some(op(
            ObjectRef::Role(role.name.to_owned()),
            differ_reason(&differs),
            statement,
        ))
    }

    /// Phase 5: memberships not yet held, e.g. in a role created in phase 4. Memberships are
    /// only added, never revoked.
    pub(super) fn grant_role_memberships(&mut self, roles: &[DesiredRole<'_>]) {
        let mut ops = Vec::new();
        for role in roles {
            let current = &self.catalog.roles[role.name].member_of;
            let missing: BTreeSet<String> = role
                .attrs
                .in_roles
                .iter()
                .filter(|r| !current.contains(**r))
                .map(|r| (*r).to_owned())
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
            let info = self
                .catalog
                .to_mut()
                .roles
                .get_mut(role.name)
                .expect("present");
            info.member_of.extend(missing);
        }
        self.system_phase(PhaseKind::GrantRoleMemberships, ops);
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::super::testing::{catalog, run_phase, spec};
    use crate::catalog::Catalog;

    const ROLES: &str = r#"[{"name": "alice", "encrypted_password": "md50123456789abcdef0123456789abcdef"},
        {"name": "bob", "options": [{"name": "IN ROLE", "value": "alice", "vartype": "string"},
                                    {"name": "NOCREATEDB", "vartype": "bool"}]}]"#;

    fn check(catalog: &Catalog, deltas: &str, phase: &str, expect: Expect) {
        let spec = spec(ROLES, "[]", deltas);
        let out = run_phase(&spec, catalog, |p, d| match phase {
            "create-privileged-role" => p.create_privileged_role(),
            "rename-roles" => p.rename_roles(&d.role_renames),
            "create-and-alter-roles" => p.create_and_alter_roles(&d.roles),
            "grant-role-memberships" => p.grant_role_memberships(&d.roles),
            _ => unreachable!("{phase}"),
        });
        expect.assert_eq(&out);
    }

    #[test]
    fn create_privileged_role() {
        check(
            &catalog(&["pg_read_all_data"], &[]),
            "[]",
            "create-privileged-role",
            expect![[r#"
                -- phase 1 create-privileged-role on database "postgres"
                CREATE ROLE "neon_superuser" CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS IN ROLE "pg_read_all_data";  -- role "neon_superuser": create: privileged role absent
                -- catalog after:
                --   role "neon_superuser" in {"pg_read_all_data"}
                --   role "pg_read_all_data" in {}
            "#]],
        );
        check(
            &catalog(&["neon_superuser"], &[]),
            "[]",
            "create-privileged-role",
            expect![[r#"
                -- nothing to do
                -- catalog after:
                --   role "neon_superuser" in {}
            "#]],
        );
    }

    #[test]
    fn rename_roles() {
        let deltas = r#"[{"action": "rename_role", "name": "old", "new_name": "alice"},
                         {"action": "rename_role", "name": "x", "new_name": "bob"},
                         {"action": "rename_role", "name": "ghost", "new_name": "y"}]"#;
        check(
            &catalog(&["old", "x", "bob", "carol:old"], &["app:old"]),
            deltas,
            "rename-roles",
            expect![[r#"
                -- warning: rename of role "x" to "bob" skipped: both exist
                -- phase 1 rename-roles on database "postgres"
                ALTER ROLE "old" RENAME TO "alice";  -- role "old": rename: to "alice"
                -- catalog after:
                --   role "alice" in {}
                --   role "bob" in {}
                --   role "carol" in {"alice"}
                --   role "x" in {}
                --   database "app" owner "alice"
            "#]],
        );
    }

    #[test]
    fn create_and_alter_roles() {
        // alice exists with other attributes; bob is new, and alice's membership is inline.
        check(
            &catalog(&["alice", "neon_superuser"], &[]),
            "[]",
            "create-and-alter-roles",
            expect![[r#"
                -- phase 1 create-and-alter-roles on database "postgres"
                ALTER ROLE "alice" CREATEROLE CREATEDB BYPASSRLS REPLICATION LOGIN PASSWORD '<redacted>';  -- role "alice": alter: createrole, createdb, bypassrls, replication, login, password differ
                CREATE ROLE "bob" INHERIT CREATEROLE NOCREATEDB BYPASSRLS REPLICATION LOGIN IN ROLE "alice", "neon_superuser";  -- role "bob": create: absent
                -- catalog after:
                --   role "alice" in {}
                --   role "bob" in {"alice", "neon_superuser"}
                --   role "neon_superuser" in {}
            "#]],
        );
        // Both new: bob cannot join alice in the same phase.
        check(
            &catalog(&["neon_superuser"], &[]),
            "[]",
            "create-and-alter-roles",
            expect![[r#"
                -- phase 1 create-and-alter-roles on database "postgres"
                CREATE ROLE "alice" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION LOGIN IN ROLE "neon_superuser" PASSWORD '<redacted>';  -- role "alice": create: absent
                CREATE ROLE "bob" INHERIT CREATEROLE NOCREATEDB BYPASSRLS REPLICATION LOGIN IN ROLE "neon_superuser";  -- role "bob": create: absent
                -- catalog after:
                --   role "alice" in {"neon_superuser"}
                --   role "bob" in {"neon_superuser"}
                --   role "neon_superuser" in {}
            "#]],
        );
    }

    #[test]
    fn grant_role_memberships() {
        check(
            &catalog(
                &[
                    "alice:neon_superuser",
                    "bob:neon_superuser",
                    "neon_superuser",
                ],
                &[],
            ),
            "[]",
            "grant-role-memberships",
            expect![[r#"
                -- phase 1 grant-role-memberships on database "postgres"
                GRANT "alice" TO "bob";  -- role "bob": grant: not a member of "alice"
                -- catalog after:
                --   role "alice" in {"neon_superuser"}
                --   role "bob" in {"alice", "neon_superuser"}
                --   role "neon_superuser" in {}
            "#]],
        );
    }
}
