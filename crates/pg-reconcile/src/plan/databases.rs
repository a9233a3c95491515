//! The phases drop-invalid-databases, rename-and-drop-databases and
//! create-and-alter-databases, on the system database.

use std::collections::BTreeSet;

use compute_spec::DatabaseOption;
use pg_quote::{quote_ident, quote_literal};

use super::desired::DesiredDatabase;
use super::sql::differ_reason;
use super::{Dependencies, ObjectRef, Operation, PhaseKind, Planner, Statement, op};
use crate::catalog::DatabaseInfo;

impl Planner<'_> {
    /// drop-invalid-databases: databases left invalid by an interrupted `DROP DATABASE` can only be dropped.
    pub(super) fn drop_invalid_databases(&mut self) {
        let invalid: Vec<String> = self
            .catalog
            .databases
            .iter()
            .filter(|(_, d)| d.invalid)
            .map(|(n, _)| n.clone())
            .collect();
        let ops = invalid
            .into_iter()
            .map(|name| {
                self.catalog.to_mut().databases.remove(&name);
                op(
                    ObjectRef::Database(name.clone()),
                    "drop: invalid (interrupted DROP DATABASE)",
                    Statement::plain(format!("DROP DATABASE IF EXISTS {}", quote_ident(&name))),
                )
            })
            .collect();
        self.system_phase(PhaseKind::DropInvalidDatabases, ops);
    }

    /// rename-and-drop-databases: `rename_db` (`Some(new)`) and `delete_db` (`None`) operations, in spec order.
    pub(super) fn rename_and_drop_databases(&mut self, deltas: &[(&str, Option<&str>)]) {
        let mut ops = Vec::new();
        for &(name, new) in deltas {
            match new {
                Some(new) => ops.extend(self.rename_database(name, new)),
                None => ops.extend(self.drop_database(name)),
            }
        }
        self.system_phase(PhaseKind::RenameAndDropDatabases, ops);
    }

    /// Renames `name` to `new` when only `name` exists; both existing is skipped with a warning.
    fn rename_database(&mut self, name: &str, new: &str) -> Option<Operation> {
        if !self.catalog.databases.contains_key(name) {
            return None;
        }
        if self.catalog.databases.contains_key(new) {
            self.warnings.push(format!(
                "rename of database {name:?} to {new:?} skipped: both exist"
            ));
            return None;
        }
        let databases = &mut self.catalog.to_mut().databases;
        let info = databases.remove(name).expect("present");
        databases.insert(new.to_owned(), info);
        Some(op(
            ObjectRef::Database(name.to_owned()),
            format!("rename: to {new:?}"),
            Statement::plain(format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(name),
                quote_ident(new)
            )),
        ))
    }

    /// Drops `name` if it exists; a template is made an ordinary database first.
    fn drop_database(&mut self, name: &str) -> Vec<Operation> {
        let mut ops = Vec::new();
        if !self.catalog.databases.contains_key(name) {
            return ops;
        }
        let info = self
            .catalog
            .to_mut()
            .databases
            .remove(name)
            .expect("present");
        let object = ObjectRef::Database(name.to_owned());
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
        ops
    }

    /// create-and-alter-databases: missing databases are created with their options, owner and the privileged
    /// role's privileges; existing ones are altered in owner, `ALLOW_CONNECTIONS`,
    /// `IS_TEMPLATE`, `CONNECTION LIMIT` and privileges where they differ. Creation-only
    /// options (locale, encoding, template, …) are not changed on an existing database.
    ///
    /// Operations on different databases are independent (the apply may spread them over
    /// sessions, see [`Dependencies`]) unless a database created here is copied from one this
    /// phase creates or alters, or from the system database (where the apply's sessions are
    /// connected, and PostgreSQL refuses to copy a database others are connected to).
    pub(super) fn create_and_alter_databases(&mut self, databases: &[DesiredDatabase<'_>]) {
        let mut ops = Vec::new();
        let mut templates = Vec::new();
        for db in databases {
            match self.catalog.databases.get(db.name) {
                None => {
                    templates.push(template(db));
                    ops.extend(self.create_database(db));
                }
                Some(current) => {
                    let current = current.clone();
                    ops.extend(self.alter_database(db, current));
                }
            }
        }
        let system = self.options.system_database.as_str();
        let copies_from_this_phase = templates.iter().any(|&t| {
            t == system
                || ops
                    .iter()
                    .any(|o| matches!(&o.object, ObjectRef::Database(n) if n == t))
        });
        let dependencies = if copies_from_this_phase {
            Dependencies::Sequential
        } else {
            Dependencies::SameObject
        };
        let options = self.options;
        self.phase_with(
            PhaseKind::CreateAndAlterDatabases,
            &options.system_database,
            ops,
            dependencies,
        );
    }

    fn create_database(&mut self, db: &DesiredDatabase<'_>) -> [Operation; 2] {
        let privileged = self.options.privileged_role_name.as_str();
        let name = quote_ident(db.name);
        let mut sql = format!("CREATE DATABASE {name} OWNER {}", quote_ident(db.owner));
        let mut info = DatabaseInfo {
            owner: db.owner.to_owned(),
            allow_connections: true,
            is_template: false,
            connection_limit: -1,
            invalid: false,
            all_privileges: BTreeSet::from([privileged.to_owned()]),
            contents: None,
            subscriptions: Default::default(),
        };
        for o in db.options {
            match o {
                DatabaseOption::Text { keyword, value } => {
                    sql.push_str(&format!(" {keyword} {}", quote_literal(value)));
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
        self.catalog
            .to_mut()
            .databases
            .insert(db.name.to_owned(), info);
        let object = ObjectRef::Database(db.name.to_owned());
        [
            op(object.clone(), "create: absent", Statement::plain(sql)),
            op(
                object,
                format!("grant: {privileged:?} gets all privileges on a new database"),
                Statement::plain(format!(
                    "GRANT ALL PRIVILEGES ON DATABASE {name} TO {}",
                    quote_ident(privileged)
                )),
            ),
        ]
    }

    fn alter_database(
        &mut self,
        db: &DesiredDatabase<'_>,
        current: DatabaseInfo,
    ) -> Vec<Operation> {
        let privileged = self.options.privileged_role_name.as_str();
        let object = ObjectRef::Database(db.name.to_owned());
        let name = quote_ident(db.name);
        let mut ops = Vec::new();
        if current.owner != db.owner {
            ops.push(op(
                object.clone(),
                format!("alter: owner is {:?}", current.owner),
                Statement::plain(format!(
                    "ALTER DATABASE {name} OWNER TO {}",
                    quote_ident(db.owner)
                )),
            ));
        }
        let mut next = current.clone();
        next.owner = db.owner.to_owned();
        let (clauses, differs) = changed_settings(db.options, &current, &mut next);
        if !clauses.is_empty() {
            ops.push(op(
                object.clone(),
                differ_reason(&differs),
                Statement::plain(format!("ALTER DATABASE {name} WITH {}", clauses.join(" "))),
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
            self.catalog
                .to_mut()
                .databases
                .insert(db.name.to_owned(), next);
        }
        ops
    }
}

/// The database `CREATE DATABASE` copies for `db`: its `TEMPLATE` option, else `template1`.
fn template<'a>(db: &DesiredDatabase<'a>) -> &'a str {
    db.options
        .iter()
        .find_map(|o| match o {
            DatabaseOption::Text {
                keyword: "TEMPLATE",
                value,
            } => Some(value.as_str()),
            _ => None,
        })
        .unwrap_or("template1")
}

/// `ALTER DATABASE … WITH` clauses for the alterable options that differ from `current`, the
/// names of what differs, and `next` updated to match.
fn changed_settings(
    options: &[DatabaseOption],
    current: &DatabaseInfo,
    next: &mut DatabaseInfo,
) -> (Vec<String>, Vec<&'static str>) {
    let mut clauses = Vec::new();
    let mut differs = Vec::new();
    for o in options {
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
            _ => {}
        }
    }
    (clauses, differs)
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::super::testing::{catalog, run_phase, spec};
    use crate::catalog::Catalog;

    const DATABASES: &str = r#"[{"name": "app", "owner": "cloud_admin",
        "options": [{"name": "TEMPLATE", "value": "template0", "vartype": "string"},
                    {"name": "IS_TEMPLATE", "value": "true", "vartype": "bool"},
                    {"name": "CONNECTION LIMIT", "value": "5", "vartype": "integer"}]}]"#;

    fn check(catalog: &Catalog, deltas: &str, phase: &str, expect: Expect) {
        let spec = spec("[]", DATABASES, deltas);
        let out = run_phase(&spec, catalog, |p, d| match phase {
            "drop-invalid-databases" => p.drop_invalid_databases(),
            "rename-and-drop-databases" => p.rename_and_drop_databases(&d.database_deltas),
            "create-and-alter-databases" => p.create_and_alter_databases(&d.databases),
            _ => unreachable!("{phase}"),
        });
        expect.assert_eq(&out);
    }

    #[test]
    fn drop_invalid_databases() {
        let mut c = catalog(&[], &["broken", "fine"]);
        c.databases.get_mut("broken").unwrap().invalid = true;
        check(
            &c,
            "[]",
            "drop-invalid-databases",
            expect![[r#"
                -- phase 1 drop-invalid-databases on database "postgres"
                DROP DATABASE IF EXISTS "broken";  -- database "broken": drop: invalid (interrupted DROP DATABASE)
                -- catalog after:
                --   database "fine" owner "cloud_admin"
            "#]],
        );
    }

    #[test]
    fn rename_and_drop_databases() {
        let deltas = r#"[{"action": "delete_db", "name": "tmpl"},
                         {"action": "rename_db", "name": "old", "new_name": "tmpl"},
                         {"action": "rename_db", "name": "a", "new_name": "b"},
                         {"action": "rename_db", "name": "ghost", "new_name": "c"},
                         {"action": "delete_db", "name": "gone"}]"#;
        let mut c = catalog(&[], &["tmpl", "old", "a", "b"]);
        c.databases.get_mut("tmpl").unwrap().is_template = true;
        check(
            &c,
            deltas,
            "rename-and-drop-databases",
            expect![[r#"
                -- warning: rename of database "a" to "b" skipped: both exist
                -- phase 1 rename-and-drop-databases on database "postgres"
                ALTER DATABASE "tmpl" IS_TEMPLATE false;  -- database "tmpl": drop: is a template, which cannot be dropped
                DROP DATABASE IF EXISTS "tmpl" WITH (FORCE);  -- database "tmpl": drop: delete_db
                ALTER DATABASE "old" RENAME TO "tmpl";  -- database "old": rename: to "tmpl"
                -- catalog after:
                --   database "a" owner "cloud_admin"
                --   database "b" owner "cloud_admin"
                --   database "tmpl" owner "cloud_admin"
            "#]],
        );
    }

    /// The header says "(objects independent)" unless a creation copies a database of the
    /// phase or the system database.
    #[test]
    fn databases_are_independent_unless_copied_from_the_phase_or_the_system_database() {
        let check = |databases: &str, existing: &[&str], independent: bool| {
            let spec = spec("[]", &format!("[{databases}]"), "[]");
            let out = run_phase(&spec, &catalog(&[], existing), |p, d| {
                p.create_and_alter_databases(&d.databases)
            });
            let header = r#"-- phase 1 create-and-alter-databases on database "postgres""#;
            let mark = if independent {
                " (objects independent)"
            } else {
                ""
            };
            assert_eq!(
                out.lines().next(),
                Some(&*format!("{header}{mark}")),
                "{databases}"
            );
        };
        let copy = |name: &str, template: &str| {
            format!(
                r#"{{"name": "{name}", "owner": "cloud_admin", "options": [{{"name": "TEMPLATE",
                    "value": "{template}", "vartype": "string"}}]}}, "#
            )
        };
        let plain = r#"{"name": "b", "owner": "cloud_admin"}"#;
        check(plain, &[], true);
        check(&(copy("a", "t") + plain), &["t"], true);
        check(&(copy("a", "postgres") + plain), &[], false);
        check(&(copy("a", "b") + plain), &[], false);
        check(&(copy("a", "b") + plain), &["b:alice"], false);
        let template1 = r#"{"name": "template1", "owner": "cloud_admin"}"#;
        check(
            &format!("{plain}, {template1}"),
            &["template1:alice"],
            false,
        );
    }

    #[test]
    fn create_and_alter_databases() {
        check(
            &catalog(&[], &[]),
            "[]",
            "create-and-alter-databases",
            expect![[r#"
                -- phase 1 create-and-alter-databases on database "postgres" (objects independent)
                CREATE DATABASE "app" OWNER "cloud_admin" TEMPLATE 'template0' IS_TEMPLATE true CONNECTION LIMIT 5;  -- database "app": create: absent
                GRANT ALL PRIVILEGES ON DATABASE "app" TO "neon_superuser";  -- database "app": grant: "neon_superuser" gets all privileges on a new database
                -- catalog after:
                --   database "app" owner "cloud_admin"
            "#]],
        );
        check(
            &catalog(&[], &["app:alice"]),
            "[]",
            "create-and-alter-databases",
            expect![[r#"
                -- phase 1 create-and-alter-databases on database "postgres" (objects independent)
                ALTER DATABASE "app" OWNER TO "cloud_admin";  -- database "app": alter: owner is "alice"
                ALTER DATABASE "app" WITH IS_TEMPLATE true CONNECTION LIMIT 5;  -- database "app": alter: is_template, connection limit differ
                GRANT ALL PRIVILEGES ON DATABASE "app" TO "neon_superuser";  -- database "app": grant: "neon_superuser" lacks privileges
                -- catalog after:
                --   database "app" owner "cloud_admin"
            "#]],
        );
    }
}
