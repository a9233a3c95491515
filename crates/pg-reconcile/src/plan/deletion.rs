//! The phases delete-role-references and drop-roles: delete what roles to delete own or hold
//! in every database that allows connections, then drop the roles on the system database.

use std::collections::BTreeSet;

use pg_quote::quote_ident;

use super::sql::revoke_foreign_grants;
use super::{ObjectRef, Operation, PhaseKind, Planner, Statement, op};

impl Planner<'_> {
    /// The roles of `delete_role` operations that still exist, sorted, each once: only those
    /// are planned, so a re-run after a crash is harmless.
    pub(super) fn roles_to_delete<'s>(&self, deletes: &[(usize, &'s str)]) -> Vec<&'s str> {
        deletes
            .iter()
            .map(|&(_, role)| role)
            .filter(|r| self.catalog.roles.contains_key(*r))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// delete-role-references, one phase per database that allows connections (the system
    /// database first: it also revokes database-level grants): `REASSIGN OWNED` to the
    /// database owner (to the superuser in the system database, or when the owner is itself
    /// being deleted), revocation of privileges granted by other grantors, then `DROP OWNED`.
    pub(super) fn delete_role_references(&mut self, deleting: &[&str]) {
        if deleting.is_empty() {
            return;
        }
        let sys = self.options.system_database.as_str();
        let mut targets: Vec<(&String, &String)> = self
            .catalog
            .databases
            .iter()
            .filter(|(_, d)| d.allow_connections && !d.invalid)
            .map(|(name, d)| (name, &d.owner))
            .collect();
        targets.sort_by_key(|(n, _)| (n.as_str() != sys, n.as_str()));
        let phases: Vec<(String, Vec<Operation>)> = targets
            .into_iter()
            .map(|(db, owner)| {
                let in_sys = db.as_str() == sys;
                let to = if in_sys || deleting.contains(&owner.as_str()) {
                    &self.options.superuser
                } else {
                    owner
                };
                let ops = deleting
                    .iter()
                    .flat_map(|role| delete_references(role, to, in_sys))
                    .collect();
                (db.clone(), ops)
            })
            .collect();
        for (db, ops) in phases {
            self.phase(PhaseKind::DeleteRoleReferences, &db, ops);
        }
    }

    /// drop-roles: drop the roles once nothing references them.
    pub(super) fn drop_roles(&mut self, deleting: &[&str]) {
        let ops = deleting
            .iter()
            .map(|r| {
                self.catalog.to_mut().roles.remove(*r);
                op(
                    ObjectRef::Role((*r).to_owned()),
                    "delete: delete_role",
                    Statement::plain(format!("DROP ROLE IF EXISTS {}", quote_ident(r))),
                )
            })
            .collect();
        self.system_phase(PhaseKind::DropRoles, ops);
    }
}

/// The three statements that free `role` in one database: its objects go to `to`, privileges
/// others granted it are revoked (database-level ones too when `databases`), the rest dropped.
fn delete_references(role: &str, to: &str, databases: bool) -> [Operation; 3] {
    let object = ObjectRef::Role(role.to_owned());
    [
        op(
            object.clone(),
            format!("delete: objects go to {to:?}"),
            Statement::plain(format!(
                "REASSIGN OWNED BY {} TO {}",
                quote_ident(role),
                quote_ident(to)
            )),
        ),
        op(
            object.clone(),
            "delete: privileges granted by other roles",
            Statement::plain(revoke_foreign_grants(role, databases)),
        ),
        op(
            object,
            "delete: remaining privileges and objects",
            Statement::plain(format!("DROP OWNED BY {}", quote_ident(role))),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::super::testing::{catalog, run_phase, spec};

    /// Deletes the roles of `deletes` from a cluster with databases owned by `other` and `gone`,
    /// and one (owned by `keeper`) that refuses connections; `DO` blocks are elided.
    fn check(deletes: &[&str], expect: Expect) {
        let deltas: Vec<String> = deletes
            .iter()
            .map(|r| format!(r#"{{"action": "delete_role", "name": "{r}"}}"#))
            .collect();
        let spec = spec("[]", "[]", &format!("[{}]", deltas.join(",")));
        let mut c = catalog(
            &["gone", "other", "keeper"],
            &["postgres", "a:other", "b:gone", "closed:keeper"],
        );
        c.databases.get_mut("closed").unwrap().allow_connections = false;
        let out = run_phase(&spec, &c, |p, d| {
            let deleting = p.roles_to_delete(&d.role_deletes);
            p.delete_role_references(&deleting);
            p.drop_roles(&deleting);
        });
        // The revocation blocks are long (see `sql`): elide them.
        let out: String = out
            .split("DO $x$")
            .enumerate()
            .map(|(i, part)| match i {
                0 => part.to_owned(),
                _ => format!("DO <revoke>{}", &part[part.find("$x$;").unwrap() + 3..]),
            })
            .collect();
        expect.assert_eq(&out);
    }

    #[test]
    fn delete_role_references_and_drop_roles() {
        check(
            &["keeper", "ghost", "gone"],
            expect![[r#"
                -- phase 1 delete-role-references on database "postgres"
                REASSIGN OWNED BY "gone" TO "cloud_admin";  -- role "gone": delete: objects go to "cloud_admin"
                DO <revoke>;  -- role "gone": delete: privileges granted by other roles
                DROP OWNED BY "gone";  -- role "gone": delete: remaining privileges and objects
                REASSIGN OWNED BY "keeper" TO "cloud_admin";  -- role "keeper": delete: objects go to "cloud_admin"
                DO <revoke>;  -- role "keeper": delete: privileges granted by other roles
                DROP OWNED BY "keeper";  -- role "keeper": delete: remaining privileges and objects
                -- phase 2 delete-role-references on database "a"
                REASSIGN OWNED BY "gone" TO "other";  -- role "gone": delete: objects go to "other"
                DO <revoke>;  -- role "gone": delete: privileges granted by other roles
                DROP OWNED BY "gone";  -- role "gone": delete: remaining privileges and objects
                REASSIGN OWNED BY "keeper" TO "other";  -- role "keeper": delete: objects go to "other"
                DO <revoke>;  -- role "keeper": delete: privileges granted by other roles
                DROP OWNED BY "keeper";  -- role "keeper": delete: remaining privileges and objects
                -- phase 3 delete-role-references on database "b"
                REASSIGN OWNED BY "gone" TO "cloud_admin";  -- role "gone": delete: objects go to "cloud_admin"
                DO <revoke>;  -- role "gone": delete: privileges granted by other roles
                DROP OWNED BY "gone";  -- role "gone": delete: remaining privileges and objects
                REASSIGN OWNED BY "keeper" TO "cloud_admin";  -- role "keeper": delete: objects go to "cloud_admin"
                DO <revoke>;  -- role "keeper": delete: privileges granted by other roles
                DROP OWNED BY "keeper";  -- role "keeper": delete: remaining privileges and objects
                -- phase 4 drop-roles on database "postgres"
                DROP ROLE IF EXISTS "gone";  -- role "gone": delete: delete_role
                DROP ROLE IF EXISTS "keeper";  -- role "keeper": delete: delete_role
                -- catalog after:
                --   role "other" in {}
                --   database "a" owner "other"
                --   database "b" owner "gone"
                --   database "closed" owner "keeper"
                --   database "postgres" owner "cloud_admin"
            "#]],
        );
        check(
            &["ghost"],
            expect![[r#"
            -- nothing to do
            -- catalog after:
            --   role "gone" in {}
            --   role "keeper" in {}
            --   role "other" in {}
            --   database "a" owner "other"
            --   database "b" owner "gone"
            --   database "closed" owner "keeper"
            --   database "postgres" owner "cloud_admin"
        "#]],
        );
    }
}
