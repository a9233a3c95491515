//! The schema-privileges phase, one per spec database that allows connections and is not
//! invalid (upstream's per-database schema permissions; the system database only when it is a
//! spec database, as upstream):
//!
//! - schema `public` owned by the superuser or `zenith_admin` is given to the database owner;
//! - role `web_access`, when it exists, gets `CREATE` on `public`;
//! - tables and sequences the reconciler's role creates in `public` give every privilege, with
//!   grant option, to the privileged role (`ALTER DEFAULT PRIVILEGES`).
//!
//! From observed [`DatabaseContents`] only what differs is planned, as plain statements. A
//! database without observed contents (created or renamed by this plan, or not connectable
//! when observed) gets one self-guarding `DO` block doing all three where they apply; the next
//! run observes it and plans nothing.

use pg_quote::{dollar_quote, quote_ident, quote_literal};

use super::desired::DesiredDatabase;
use super::{ObjectRef, Operation, PhaseKind, Planner, Statement, op};
use crate::catalog::DatabaseContents;

/// The role upstream grants `CREATE` on `public` to, when it exists.
const WEB_ACCESS: &str = "web_access";

/// The legacy admin whose `public` schemas are given away as the superuser's are.
const LEGACY_ADMIN: &str = "zenith_admin";

impl Planner<'_> {
    /// The schema-privileges phases, in spec order of the databases.
    pub(super) fn schema_privileges(&mut self, databases: &[DesiredDatabase<'_>]) {
        for db in databases {
            let Some(info) = self.catalog.databases.get(db.name) else {
                continue;
            };
            if !info.allow_connections || info.invalid {
                continue;
            }
            let owner = info.owner.clone();
            let web_access = self.catalog.roles.contains_key(WEB_ACCESS);
            let ops = match info.contents.clone() {
                Some(contents) => {
                    let (ops, after) = self.known_privileges(db.name, &owner, web_access, contents);
                    if let Some(d) = self.catalog.to_mut().databases.get_mut(db.name) {
                        d.contents = Some(after);
                    }
                    ops
                }
                None if self.unobserved == super::Unobserved::Converged => continue,
                None => vec![op(
                    ObjectRef::Database(db.name.to_owned()),
                    "schema public: privileges (contents not observed; the block checks)",
                    Statement::plain(self.guarded_privileges(&owner)),
                )],
            };
            self.phase(PhaseKind::SchemaPrivileges, db.name, ops);
        }
    }

    /// The statements `contents` lacks, and the contents after them.
    fn known_privileges(
        &self,
        database: &str,
        owner: &str,
        web_access: bool,
        mut contents: DatabaseContents,
    ) -> (Vec<Operation>, DatabaseContents) {
        let object = || ObjectRef::Database(database.to_owned());
        let mut ops = Vec::new();
        let Some(public_owner) = contents.public_owner.clone() else {
            return (ops, contents);
        };
        if (public_owner == self.options.superuser || public_owner == LEGACY_ADMIN)
            && public_owner != owner
        {
            ops.push(op(
                object(),
                format!("schema public: owned by {public_owner:?}, not the database owner"),
                Statement::plain(format!(
                    "ALTER SCHEMA public OWNER TO {}",
                    quote_ident(owner)
                )),
            ));
            contents.public_owner = Some(owner.to_owned());
        }
        if web_access && !contents.public_create.contains(WEB_ACCESS) {
            ops.push(op(
                object(),
                format!("schema public: {WEB_ACCESS:?} lacks CREATE"),
                Statement::plain(format!(
                    "GRANT CREATE ON SCHEMA public TO {}",
                    quote_ident(WEB_ACCESS)
                )),
            ));
            contents.public_create.insert(WEB_ACCESS.to_owned());
        }
        let privileged = self.options.privileged_role_name.as_str();
        let defaults = [
            ("TABLES", &mut contents.default_table_grantees),
            ("SEQUENCES", &mut contents.default_sequence_grantees),
        ];
        for (kind, grantees) in defaults {
            if grantees.insert(privileged.to_owned()) {
                ops.push(op(
                    object(),
                    format!(
                        "schema public: new {} do not give {privileged:?} every privilege",
                        kind.to_lowercase()
                    ),
                    Statement::plain(default_privileges(kind, privileged)),
                ));
            }
        }
        (ops, contents)
    }

    /// The `DO` block for a database whose contents were not observed: each change made only
    /// where it applies. Names reach the body as literals, used through `%I`.
    fn guarded_privileges(&self, owner: &str) -> String {
        let body = format!(
            "
DECLARE
  db_owner text := {owner};
  admin text := {admin};
  privileged text := {privileged};
  public_owner text := (SELECT r.rolname FROM pg_catalog.pg_namespace n
                          JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                         WHERE n.nspname = 'public');
BEGIN
  IF public_owner IS NULL THEN
    RETURN;
  END IF;
  IF public_owner IN (admin, {legacy}) AND public_owner <> db_owner THEN
    EXECUTE pg_catalog.format('ALTER SCHEMA public OWNER TO %I', db_owner);
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {web_access}) THEN
    EXECUTE pg_catalog.format('GRANT CREATE ON SCHEMA public TO %I', {web_access});
  END IF;
  EXECUTE pg_catalog.format(
    'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO %I WITH GRANT OPTION',
    privileged);
  EXECUTE pg_catalog.format(
    'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO %I WITH GRANT OPTION',
    privileged);
END
",
            owner = quote_literal(owner),
            admin = quote_literal(&self.options.superuser),
            privileged = quote_literal(&self.options.privileged_role_name),
            legacy = quote_literal(LEGACY_ADMIN),
            web_access = quote_literal(WEB_ACCESS),
        );
        format!("DO {}", dollar_quote(&body))
    }
}

/// Default privileges of the current role in `public`: every privilege on new `kind`
/// (`TABLES`, `SEQUENCES`) to `role`, with grant option.
fn default_privileges(kind: &str, role: &str) -> String {
    format!(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON {kind} TO {} WITH GRANT OPTION",
        quote_ident(role)
    )
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::super::testing::{catalog, run_phase, spec};
    use crate::catalog::{Catalog, DatabaseContents};

    fn check(catalog: &Catalog, expect: Expect) {
        let spec = spec(
            r#"[{"name": "alice"}]"#,
            r#"[{"name": "app", "owner": "alice"}, {"name": "closed", "owner": "alice"},
                {"name": "new", "owner": "alice"}]"#,
            "[]",
        );
        let out = run_phase(&spec, catalog, |p, d| p.schema_privileges(&d.databases));
        expect.assert_eq(&out);
    }

    fn with_contents(roles: &[&str], contents: DatabaseContents) -> Catalog {
        let mut c = catalog(roles, &["app:alice", "closed:alice"]);
        c.databases.get_mut("closed").unwrap().allow_connections = false;
        c.databases.get_mut("app").unwrap().contents = Some(contents);
        c
    }

    #[test]
    fn only_what_the_contents_lack() {
        let owned_by_admin = DatabaseContents {
            public_owner: Some("cloud_admin".to_owned()),
            ..DatabaseContents::default()
        };
        check(
            &with_contents(&["alice", "web_access"], owned_by_admin),
            expect![[r#"
                -- phase 1 schema-privileges on database "app"
                ALTER SCHEMA public OWNER TO "alice";  -- database "app": schema public: owned by "cloud_admin", not the database owner
                GRANT CREATE ON SCHEMA public TO "web_access";  -- database "app": schema public: "web_access" lacks CREATE
                ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO "neon_superuser" WITH GRANT OPTION;  -- database "app": schema public: new tables do not give "neon_superuser" every privilege
                ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO "neon_superuser" WITH GRANT OPTION;  -- database "app": schema public: new sequences do not give "neon_superuser" every privilege
                -- catalog after:
                --   role "alice" in {}
                --   role "web_access" in {}
                --   database "app" owner "alice"
                --   database "closed" owner "alice"
            "#]],
        );
        let converged = DatabaseContents {
            public_owner: Some("pg_database_owner".to_owned()),
            default_table_grantees: ["neon_superuser".to_owned()].into(),
            default_sequence_grantees: ["neon_superuser".to_owned()].into(),
            ..DatabaseContents::default()
        };
        check(
            &with_contents(&["alice"], converged),
            expect![[r#"
                -- nothing to do
                -- catalog after:
                --   role "alice" in {}
                --   database "app" owner "alice"
                --   database "closed" owner "alice"
            "#]],
        );
        // No schema public: nothing to own, grant or default.
        check(
            &with_contents(&["alice", "web_access"], DatabaseContents::default()),
            expect![[r#"
                -- nothing to do
                -- catalog after:
                --   role "alice" in {}
                --   role "web_access" in {}
                --   database "app" owner "alice"
                --   database "closed" owner "alice"
            "#]],
        );
    }

    #[test]
    fn unobserved_contents_get_the_guarded_block() {
        let mut c = catalog(&["alice"], &["app:alice"]);
        c.databases.get_mut("app").unwrap().contents = None;
        let spec = spec(
            r#"[{"name": "alice"}]"#,
            r#"[{"name": "app", "owner": "alice"}]"#,
            "[]",
        );
        let out = run_phase(&spec, &c, |p, d| p.schema_privileges(&d.databases));
        for part in [
            "-- phase 1 schema-privileges on database \"app\"",
            "DO $x$",
            "db_owner text := 'alice';",
            "admin text := 'cloud_admin';",
            "privileged text := 'neon_superuser';",
            "IF public_owner IN (admin, 'zenith_admin')",
            "(contents not observed; the block checks)",
        ] {
            assert!(out.contains(part), "{part:?} not in {out}");
        }
    }
}
