//! The numbered migrations (upstream's `compute_tools/src/migrations/0001…0012`), as our own
//! statements with the same effect, built for one privileged role and one server version.
//! Pure: no I/O. The role name reaches the text only through `pg-quote`.

use std::fmt;

use pg_quote::{dollar_quote, quote_ident, quote_literal};

/// How many migrations there are; the bookkeeping id of a fully migrated cluster.
pub const MIGRATION_COUNT: i64 = 12;

/// One numbered migration, as it will run on a given server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Its number, 1-based, as upstream (`neon_migration.migration_id.id` after it ran).
    pub id: i64,
    /// Upstream's file name without the number and `.sql`, e.g. `grant_pg_monitor_to_privileged_role`.
    pub name: &'static str,
    /// What it does on this server.
    pub step: Step,
}

/// What a migration does on the server it was built for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Statements run in the migration's transaction, before its id is recorded.
    Sql(String),
    /// Nothing to run: only the id is recorded.
    Skip(SkipReason),
}

/// Why a migration runs no statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Upstream retired it (its file starts with `-- SKIP`); the number stays taken.
    Retired(&'static str),
    /// What it grants exists only from this `server_version_num` on.
    NeedsServerVersion(i32),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Retired(why) => write!(f, "retired upstream: {why}"),
            SkipReason::NeedsServerVersion(v) => {
                write!(f, "needs server_version_num {v} or later")
            }
        }
    }
}

/// PostgreSQL 16, where `pg_create_subscription` and `pg_log_standby_snapshot()` appear.
const PG16: i32 = 160_000;

/// The migrations 1..=[`MIGRATION_COUNT`], in order, for `privileged_role_name` on a server
/// whose `server_version_num` is `server_version_num`.
///
/// Numbers never change and new migrations are only ever appended: a cluster records the last
/// number it ran.
pub fn migrations(privileged_role_name: &str, server_version_num: i32) -> Vec<Migration> {
    let role = quote_ident(privileged_role_name);
    let from_16 = |sql: String| {
        if server_version_num >= PG16 {
            Step::Sql(sql)
        } else {
            Step::Skip(SkipReason::NeedsServerVersion(PG16))
        }
    };
    let retired = |why| Step::Skip(SkipReason::Retired(why));
    let steps: [(&'static str, Step); MIGRATION_COUNT as usize] = [
        (
            "add_bypass_rls_to_privileged_role",
            Step::Sql(format!("ALTER ROLE {role} BYPASSRLS")),
        ),
        (
            "alter_roles",
            Step::Sql(inherit_and_no_bypassrls(privileged_role_name)),
        ),
        (
            "grant_pg_create_subscription_to_privileged_role",
            from_16(format!("GRANT pg_create_subscription TO {role}")),
        ),
        (
            "grant_pg_monitor_to_privileged_role",
            Step::Sql(format!("GRANT pg_monitor TO {role} WITH ADMIN OPTION")),
        ),
        (
            "grant_all_on_tables_to_privileged_role",
            retired("default privileges on tables were not enough for extension-made relations"),
        ),
        (
            "grant_all_on_sequences_to_privileged_role",
            retired("default privileges on sequences were not enough for extension-made relations"),
        ),
        (
            "grant_all_on_tables_with_grant_option_to_privileged_role",
            retired("done by the per-database privileges of every apply instead"),
        ),
        (
            "grant_all_on_sequences_with_grant_option_to_privileged_role",
            retired("done by the per-database privileges of every apply instead"),
        ),
        (
            "revoke_replication_for_previously_allowed_roles",
            retired("taking REPLICATION away did not stop subscriptions from being created"),
        ),
        (
            "grant_snapshot_synchronization_funcs_to_privileged_role",
            from_16(format!(
                "GRANT EXECUTE ON FUNCTION pg_catalog.pg_export_snapshot(), \
                 pg_catalog.pg_log_standby_snapshot() TO {role}"
            )),
        ),
        (
            "grant_pg_show_replication_origin_status_to_privileged_role",
            Step::Sql(format!(
                "GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_replication_origin_status() \
                 TO {role}"
            )),
        ),
        (
            "grant_pg_signal_backend_to_privileged_role",
            Step::Sql(format!(
                "GRANT pg_signal_backend TO {role} WITH ADMIN OPTION"
            )),
        ),
    ];
    steps
        .into_iter()
        .zip(1..)
        .map(|((name, step), id)| Migration { id, name, step })
        .collect()
}

/// Migration 2: every member of the privileged role (itself and superusers included) gets
/// `INHERIT`; every other role whose name does not start with `pg_` gets `NOBYPASSRLS`. The
/// role name reaches the body only as a literal, and the body is dollar-quoted.
fn inherit_and_no_bypassrls(privileged_role_name: &str) -> String {
    let body = format!(
        "
DECLARE
  privileged_name text := {lit};
  r record;
BEGIN
  FOR r IN
    SELECT a.rolname, pg_catalog.pg_has_role(a.oid, privileged_name, 'MEMBER') AS is_member
      FROM pg_catalog.pg_roles a
  LOOP
    IF r.is_member THEN
      EXECUTE pg_catalog.format('ALTER ROLE %I INHERIT', r.rolname);
    ELSIF NOT pg_catalog.starts_with(r.rolname, 'pg_') THEN
      EXECUTE pg_catalog.format('ALTER ROLE %I NOBYPASSRLS', r.rolname);
    END IF;
  END LOOP;
END
",
        lit = quote_literal(privileged_role_name)
    );
    format!("DO {}", dollar_quote(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(server_version_num: i32) -> String {
        migrations("my \"priv\"", server_version_num)
            .iter()
            .map(|m| match &m.step {
                Step::Sql(sql) if sql.starts_with("DO ") => {
                    format!("{} {}: DO block", m.id, m.name)
                }
                Step::Sql(sql) => format!("{} {}: {sql}", m.id, m.name),
                Step::Skip(why) => format!("{} {}: skip ({why})", m.id, m.name),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn numbered_as_upstream_with_version_dependent_steps() {
        expect_test::expect![[r#"
            1 add_bypass_rls_to_privileged_role: ALTER ROLE "my ""priv""" BYPASSRLS
            2 alter_roles: DO block
            3 grant_pg_create_subscription_to_privileged_role: skip (needs server_version_num 160000 or later)
            4 grant_pg_monitor_to_privileged_role: GRANT pg_monitor TO "my ""priv""" WITH ADMIN OPTION
            5 grant_all_on_tables_to_privileged_role: skip (retired upstream: default privileges on tables were not enough for extension-made relations)
            6 grant_all_on_sequences_to_privileged_role: skip (retired upstream: default privileges on sequences were not enough for extension-made relations)
            7 grant_all_on_tables_with_grant_option_to_privileged_role: skip (retired upstream: done by the per-database privileges of every apply instead)
            8 grant_all_on_sequences_with_grant_option_to_privileged_role: skip (retired upstream: done by the per-database privileges of every apply instead)
            9 revoke_replication_for_previously_allowed_roles: skip (retired upstream: taking REPLICATION away did not stop subscriptions from being created)
            10 grant_snapshot_synchronization_funcs_to_privileged_role: skip (needs server_version_num 160000 or later)
            11 grant_pg_show_replication_origin_status_to_privileged_role: GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_replication_origin_status() TO "my ""priv"""
            12 grant_pg_signal_backend_to_privileged_role: GRANT pg_signal_backend TO "my ""priv""" WITH ADMIN OPTION"#]]
        .assert_eq(&rendered(150_018));
        let on_16 = rendered(160_004);
        assert!(
            on_16.contains(r#"3 grant_pg_create_subscription_to_privileged_role: GRANT pg_create_subscription TO "my ""priv""""#),
            "{on_16}"
        );
        assert!(
            on_16.contains("pg_catalog.pg_log_standby_snapshot() TO \"my \"\"priv\"\"\""),
            "{on_16}"
        );
    }

    #[test]
    fn the_role_name_reaches_the_do_block_as_a_dollar_quoted_literal() {
        let list = migrations("$x$'; x", 150_000);
        let Step::Sql(sql) = &list[1].step else {
            panic!("migration 2 runs SQL");
        };
        assert!(sql.starts_with("DO $xx$"), "{sql}");
        assert!(sql.contains("privileged_name text := '$x$''; x';"), "{sql}");
    }
}
