//! What compute_ctl keeps in the system database, each planned only when its observed
//! [`DatabaseContents`] lack it (and always, in an `IF NOT EXISTS` form, when the system
//! database's contents were not observed):
//!
//! - schema `neon` (before the per-database phases, as upstream);
//! - extension `pg_stat_statements` in schema `public` when the spec's
//!   `shared_preload_libraries` names it;
//! - extension `neon` in schema `neon` when [`PlanOptions::neon_extension`](super::PlanOptions)
//!   says the library exists: created, moved into `neon` if it lives elsewhere (made
//!   relocatable first, as upstream), updated when its version differs from the default;
//! - table `public.health_check` (`id` int4 identity primary key, `updated_at` timestamptz
//!   defaulting to now) with row 1, which `/check_writability` updates;
//! - with an audit level (the spec's `audit_log_level`), as upstream: extension `pgaudit` in
//!   schema `public` (and `pgauditlogtofile` for `Hipaa`, `Extended` and `Full`), and
//!   `pgaudit.log = 'none'` as the system database's own setting, so that the sessions of
//!   monitors and compute_ctl there are not audited.

use compute_spec::ComputeAudit;
use pg_quote::quote_ident;

use super::{ObjectRef, Operation, PhaseKind, Planner, Statement, op};
use crate::catalog::{DatabaseContents, ExtensionInfo};

const PG_STAT_STATEMENTS: &str = "pg_stat_statements";
const NEON: &str = "neon";
const PGAUDIT: &str = "pgaudit";
const PGAUDITLOGTOFILE: &str = "pgauditlogtofile";

impl Planner<'_> {
    /// The system database's contents; `None` when not observed.
    fn system_contents(&self) -> Option<&DatabaseContents> {
        let system = self.options.system_database.as_str();
        self.catalog.databases.get(system)?.contents.as_ref()
    }

    /// Applies `change` to the system database's contents in the simulated catalog, if they
    /// were observed.
    fn update_system_contents(&mut self, change: impl FnOnce(&mut DatabaseContents)) {
        if self.system_contents().is_none() {
            return;
        }
        let system = self.options.system_database.clone();
        let db = self.catalog.to_mut().databases.get_mut(&system);
        if let Some(contents) = db.and_then(|d| d.contents.as_mut()) {
            change(contents);
        }
    }

    /// Schema `neon`, if missing.
    pub(super) fn create_schema_neon(&mut self) {
        if self.system_contents().is_some_and(|c| c.neon_schema) {
            return;
        }
        self.update_system_contents(|c| c.neon_schema = true);
        let ops = vec![op(
            ObjectRef::Schema(NEON.to_owned()),
            "create: absent",
            Statement::plain("CREATE SCHEMA IF NOT EXISTS neon".to_owned()),
        )];
        self.system_phase(PhaseKind::CreateSchemaNeon, ops);
    }

    /// `pg_stat_statements` when `preloaded`, `neon` when the library exists.
    pub(super) fn create_extensions(&mut self, preloaded: bool) {
        let installed = |name: &str| {
            self.system_contents()
                .map(|c| c.extensions.get(name).cloned())
        };
        let mut ops = Vec::new();
        let mut created = Vec::new();
        if preloaded && installed(PG_STAT_STATEMENTS).is_none_or(|e| e.is_none()) {
            ops.push(op(
                ObjectRef::Extension(PG_STAT_STATEMENTS.to_owned()),
                "create: preloaded, not installed",
                Statement::plain(
                    "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public"
                        .to_owned(),
                ),
            ));
            created.push((PG_STAT_STATEMENTS, "public"));
        }
        if self.options.neon_extension {
            let neon = neon_extension(installed(NEON).as_ref());
            if !neon.is_empty() {
                created.push((NEON, NEON));
            }
            ops.extend(neon);
        }
        // An extension updated or created ends at its default version (unknown if new).
        self.update_system_contents(|c| {
            for (name, schema) in created {
                let info = c
                    .extensions
                    .entry(name.to_owned())
                    .or_insert(ExtensionInfo {
                        schema: String::new(),
                        version: String::new(),
                        default_version: None,
                    });
                info.schema = schema.to_owned();
                info.version = info.default_version.clone().unwrap_or_default();
            }
        });
        self.system_phase(PhaseKind::CreateExtensions, ops);
    }

    /// `public.health_check` and its row, if the table is missing.
    pub(super) fn create_health_check(&mut self) {
        if self.system_contents().is_some_and(|c| c.health_check) {
            return;
        }
        self.update_system_contents(|c| c.health_check = true);
        let object = || ObjectRef::Table("public.health_check".to_owned());
        let ops = vec![
            op(
                object(),
                "create: absent",
                Statement::plain(
                    "CREATE TABLE IF NOT EXISTS public.health_check (\
                     id pg_catalog.int4 GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \
                     updated_at pg_catalog.timestamptz DEFAULT pg_catalog.now())"
                        .to_owned(),
                ),
            ),
            op(
                object(),
                "create: the row /check_writability updates",
                Statement::plain(
                    "INSERT INTO public.health_check (id, updated_at) \
                     VALUES (1, pg_catalog.now()) ON CONFLICT (id) DO NOTHING"
                        .to_owned(),
                ),
            ),
        ];
        self.system_phase(PhaseKind::CreateHealthCheck, ops);
    }

    /// The audit extensions of `level` that are missing, and `pgaudit.log = 'none'` on the
    /// system database unless it is set so. Nothing for [`ComputeAudit::Disabled`] (as
    /// upstream, a lower level leaves what a higher one made).
    pub(super) fn configure_audit(&mut self, level: ComputeAudit) {
        let extensions: &[&str] = match level {
            ComputeAudit::Disabled => return,
            ComputeAudit::Log | ComputeAudit::Base => &[PGAUDIT],
            ComputeAudit::Hipaa | ComputeAudit::Extended | ComputeAudit::Full => {
                &[PGAUDIT, PGAUDITLOGTOFILE]
            }
        };
        let contents = self.system_contents();
        let mut ops = Vec::new();
        for name in extensions {
            if contents.is_some_and(|c| c.extensions.contains_key(*name)) {
                continue;
            }
            ops.push(op(
                ObjectRef::Extension((*name).to_owned()),
                "create: audit level set, not installed",
                Statement::plain(format!(
                    "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA public",
                    quote_ident(name)
                )),
            ));
        }
        if contents.is_none_or(|c| c.pgaudit_log.as_deref() != Some("none")) {
            let system = &self.options.system_database;
            ops.push(op(
                ObjectRef::Database(system.clone()),
                "alter: pgaudit.log of the system database is not 'none'",
                Statement::plain(format!(
                    "ALTER DATABASE {} SET pgaudit.log TO 'none'",
                    quote_ident(system)
                )),
            ));
        }
        self.update_system_contents(|c| {
            for name in extensions {
                c.extensions
                    .entry((*name).to_owned())
                    .or_insert(ExtensionInfo {
                        schema: "public".to_owned(),
                        version: String::new(),
                        default_version: None,
                    });
            }
            c.pgaudit_log = Some("none".to_owned());
        });
        self.system_phase(PhaseKind::ConfigureAudit, ops);
    }
}

/// The statements that bring extension `neon` to schema `neon` at its default version, from
/// what is installed: `None` = not observed, `Some(None)` = not installed.
fn neon_extension(installed: Option<&Option<ExtensionInfo>>) -> Vec<Operation> {
    let object = || ObjectRef::Extension(NEON.to_owned());
    let create = || {
        op(
            object(),
            "create: the neon library exists",
            Statement::plain("CREATE EXTENSION IF NOT EXISTS neon WITH SCHEMA neon".to_owned()),
        )
    };
    let update = |why: String| {
        op(
            object(),
            why,
            Statement::plain("ALTER EXTENSION neon UPDATE".to_owned()),
        )
    };
    let info = match installed {
        None => return vec![create(), update("update: version not observed".to_owned())],
        Some(None) => return vec![create()],
        Some(Some(info)) => info,
    };
    let mut ops = Vec::new();
    if info.schema != NEON {
        ops.push(op(
            object(),
            format!("move: installed in schema {:?}", info.schema),
            Statement::plain(
                "UPDATE pg_catalog.pg_extension SET extrelocatable = true \
                 WHERE extname = 'neon' AND NOT extrelocatable"
                    .to_owned(),
            ),
        ));
        ops.push(op(
            object(),
            format!("move: installed in schema {:?}", info.schema),
            Statement::plain("ALTER EXTENSION neon SET SCHEMA neon".to_owned()),
        ));
    }
    if let Some(default) = &info.default_version
        && *default != info.version
    {
        ops.push(update(format!(
            "update: version {:?}, default {default:?}",
            info.version
        )));
    }
    ops
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::super::PlanOptions;
    use super::super::testing::{catalog, spec};
    use super::super::{Desired, Planner};
    use crate::catalog::{Catalog, DatabaseContents, ExtensionInfo};

    /// Plans the system phases for a spec preloading `preload`, with `neon_extension`.
    fn check(catalog: &Catalog, preload: bool, neon_extension: bool, expect: Expect) {
        let spec = spec("[]", "[]", "[]");
        let options = PlanOptions {
            neon_extension,
            ..PlanOptions::default()
        };
        let desired = Desired::new(&spec, &options);
        let mut p = Planner::new(&options, catalog, Vec::new());
        p.create_schema_neon();
        p.create_extensions(preload);
        p.create_health_check();
        let after = p.catalog.clone().into_owned();
        let mut out = p.finish().to_string();
        let contents = after
            .databases
            .get("postgres")
            .and_then(|d| d.contents.clone());
        out.push_str(&format!("-- contents after: {contents:?}\n"));
        assert!(desired.warnings.is_empty());
        expect.assert_eq(&out);
    }

    fn observed(contents: DatabaseContents) -> Catalog {
        let mut c = catalog(&[], &["postgres"]);
        c.databases.get_mut("postgres").unwrap().contents = Some(contents);
        c
    }

    fn ext(schema: &str, version: &str, default: &str) -> ExtensionInfo {
        ExtensionInfo {
            schema: schema.to_owned(),
            version: version.to_owned(),
            default_version: Some(default.to_owned()),
        }
    }

    #[test]
    fn unobserved_system_database_gets_if_not_exists_forms() {
        check(
            &Catalog::default(),
            true,
            true,
            expect![[r#"
                -- phase 1 create-schema-neon on database "postgres"
                CREATE SCHEMA IF NOT EXISTS neon;  -- schema "neon": create: absent
                -- phase 2 create-extensions on database "postgres"
                CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public;  -- extension "pg_stat_statements": create: preloaded, not installed
                CREATE EXTENSION IF NOT EXISTS neon WITH SCHEMA neon;  -- extension "neon": create: the neon library exists
                ALTER EXTENSION neon UPDATE;  -- extension "neon": update: version not observed
                -- phase 3 create-health-check on database "postgres"
                CREATE TABLE IF NOT EXISTS public.health_check (id pg_catalog.int4 GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, updated_at pg_catalog.timestamptz DEFAULT pg_catalog.now());  -- table "public.health_check": create: absent
                INSERT INTO public.health_check (id, updated_at) VALUES (1, pg_catalog.now()) ON CONFLICT (id) DO NOTHING;  -- table "public.health_check": create: the row /check_writability updates
                -- contents after: None
            "#]],
        );
    }

    #[test]
    fn observed_system_database_plans_what_is_missing() {
        // Vanilla, nothing preloaded, nothing there yet: schema and table only.
        check(
            &observed(DatabaseContents::default()),
            false,
            false,
            expect![[r#"
                -- phase 1 create-schema-neon on database "postgres"
                CREATE SCHEMA IF NOT EXISTS neon;  -- schema "neon": create: absent
                -- phase 2 create-health-check on database "postgres"
                CREATE TABLE IF NOT EXISTS public.health_check (id pg_catalog.int4 GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, updated_at pg_catalog.timestamptz DEFAULT pg_catalog.now());  -- table "public.health_check": create: absent
                INSERT INTO public.health_check (id, updated_at) VALUES (1, pg_catalog.now()) ON CONFLICT (id) DO NOTHING;  -- table "public.health_check": create: the row /check_writability updates
                -- contents after: Some(DatabaseContents { public_owner: None, public_create: {}, default_table_grantees: {}, default_sequence_grantees: {}, neon_schema: true, health_check: true, pgaudit_log: None, extensions: {} })
            "#]],
        );
        // neon installed elsewhere at an old version; pg_stat_statements present.
        let mut contents = DatabaseContents {
            neon_schema: true,
            health_check: true,
            ..DatabaseContents::default()
        };
        contents
            .extensions
            .insert("neon".to_owned(), ext("public", "1.5", "1.6"));
        contents.extensions.insert(
            "pg_stat_statements".to_owned(),
            ext("public", "1.10", "1.10"),
        );
        check(
            &observed(contents.clone()),
            true,
            true,
            expect![[r#"
                -- phase 1 create-extensions on database "postgres"
                UPDATE pg_catalog.pg_extension SET extrelocatable = true WHERE extname = 'neon' AND NOT extrelocatable;  -- extension "neon": move: installed in schema "public"
                ALTER EXTENSION neon SET SCHEMA neon;  -- extension "neon": move: installed in schema "public"
                ALTER EXTENSION neon UPDATE;  -- extension "neon": update: version "1.5", default "1.6"
                -- contents after: Some(DatabaseContents { public_owner: None, public_create: {}, default_table_grantees: {}, default_sequence_grantees: {}, neon_schema: true, health_check: true, pgaudit_log: None, extensions: {"neon": ExtensionInfo { schema: "neon", version: "1.6", default_version: Some("1.6") }, "pg_stat_statements": ExtensionInfo { schema: "public", version: "1.10", default_version: Some("1.10") }} })
            "#]],
        );
        // Converged.
        contents
            .extensions
            .insert("neon".to_owned(), ext("neon", "1.6", "1.6"));
        check(
            &observed(contents),
            true,
            true,
            expect![[r#"
                -- nothing to do
                -- contents after: Some(DatabaseContents { public_owner: None, public_create: {}, default_table_grantees: {}, default_sequence_grantees: {}, neon_schema: true, health_check: true, pgaudit_log: None, extensions: {"neon": ExtensionInfo { schema: "neon", version: "1.6", default_version: Some("1.6") }, "pg_stat_statements": ExtensionInfo { schema: "public", version: "1.10", default_version: Some("1.10") }} })
            "#]],
        );
    }

    /// The configure-audit phase alone for `level` on `catalog`.
    fn check_audit(catalog: &Catalog, level: compute_spec::ComputeAudit, expect: Expect) {
        let options = PlanOptions::default();
        let mut p = Planner::new(&options, catalog, Vec::new());
        p.configure_audit(level);
        let after = p.catalog.clone().into_owned();
        let mut out = p.finish().to_string();
        if let Some(c) = after
            .databases
            .get("postgres")
            .and_then(|d| d.contents.as_ref())
        {
            let names: Vec<&String> = c.extensions.keys().collect();
            out.push_str(&format!(
                "-- after: {names:?} pgaudit.log={:?}\n",
                c.pgaudit_log
            ));
        }
        expect.assert_eq(&out);
    }

    #[test]
    fn audit_levels_plan_their_extensions_and_the_system_database_setting() {
        use compute_spec::ComputeAudit::*;
        check_audit(
            &Catalog::default(),
            Disabled,
            expect![[r#"
            -- nothing to do
        "#]],
        );
        check_audit(
            &Catalog::default(),
            Log,
            expect![[r#"
            -- phase 1 configure-audit on database "postgres"
            CREATE EXTENSION IF NOT EXISTS "pgaudit" WITH SCHEMA public;  -- extension "pgaudit": create: audit level set, not installed
            ALTER DATABASE "postgres" SET pgaudit.log TO 'none';  -- database "postgres": alter: pgaudit.log of the system database is not 'none'
        "#]],
        );
        check_audit(
            &observed(DatabaseContents::default()),
            Hipaa,
            expect![[r#"
            -- phase 1 configure-audit on database "postgres"
            CREATE EXTENSION IF NOT EXISTS "pgaudit" WITH SCHEMA public;  -- extension "pgaudit": create: audit level set, not installed
            CREATE EXTENSION IF NOT EXISTS "pgauditlogtofile" WITH SCHEMA public;  -- extension "pgauditlogtofile": create: audit level set, not installed
            ALTER DATABASE "postgres" SET pgaudit.log TO 'none';  -- database "postgres": alter: pgaudit.log of the system database is not 'none'
            -- after: ["pgaudit", "pgauditlogtofile"] pgaudit.log=Some("none")
        "#]],
        );
        // pgaudit there, the setting something else: only what differs.
        let mut contents = DatabaseContents {
            pgaudit_log: Some("all".to_owned()),
            ..DatabaseContents::default()
        };
        contents
            .extensions
            .insert("pgaudit".to_owned(), ext("public", "1.7", "1.7"));
        check_audit(
            &observed(contents.clone()),
            Base,
            expect![[r#"
            -- phase 1 configure-audit on database "postgres"
            ALTER DATABASE "postgres" SET pgaudit.log TO 'none';  -- database "postgres": alter: pgaudit.log of the system database is not 'none'
            -- after: ["pgaudit"] pgaudit.log=Some("none")
        "#]],
        );
        // Converged.
        contents.pgaudit_log = Some("none".to_owned());
        check_audit(
            &observed(contents),
            Log,
            expect![[r#"
            -- nothing to do
            -- after: ["pgaudit"] pgaudit.log=Some("none")
        "#]],
        );
    }
}
