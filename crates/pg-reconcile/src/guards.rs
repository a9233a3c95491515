//! The one home of the options every admin session starts with (the reconciler's and
//! compute_ctl's own), and of reading the spec's `shared_preload_libraries`.
//!
//! A user can set parameters per database or per role (`ALTER DATABASE … SET`,
//! `ALTER ROLE … SET`) that would break an admin session: a `role` that runs every statement as
//! an unprivileged role, `default_transaction_read_only = on`, a 1 ms `statement_timeout` or
//! `lock_timeout`, a `search_path` with look-alike objects, `pgaudit.log` noise. Options sent
//! in the startup packet take precedence over those settings, so every admin session sends:
//!
//! - `role=none`: the session user (the connection string's superuser). Upstream names its
//!   superuser (`cloud_admin`); `none` is the same role whatever the connection string says.
//! - `default_transaction_read_only=off`, `statement_timeout=0`, `lock_timeout=0`.
//! - `search_path=` (empty: only the implicit `pg_catalog` is searched, so every statement
//!   names the schema of anything outside it). In the startup `options` string a value ends
//!   at the first unescaped space and quotes are not special, so `-c search_path=` is the empty
//!   value (`SHOW search_path` answers the empty string), while upstream's `search_path=''`
//!   is a path of one schema named `''`.
//! - `neon.forward_ddl=off`: with the neon extension it keeps DDL from being forwarded to the
//!   control plane; on vanilla PostgreSQL a harmless placeholder.
//! - `pgaudit.log=none`, only when pgaudit is loaded: the spec preloads it or sets an
//!   `audit_log_level` (then compute_ctl preloads it).
//!
//! The connection string's own options come after these, so they win.

use compute_spec::ValidatedSpec;

/// The options every admin session sends, whatever the spec.
const ALWAYS: &str = "-c role=none -c default_transaction_read_only=off -c search_path= \
                      -c statement_timeout=0 -c lock_timeout=0 -c neon.forward_ddl=off";

/// Sent too when `pgaudit` is loaded.
const PGAUDIT: &str = "-c pgaudit.log=none";

/// What the startup options of an admin session depend on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionGuards {
    /// `pgaudit` is loaded: silence its logging for the session.
    pub pgaudit: bool,
}

impl SessionGuards {
    /// The guards for a compute running `spec`: `pgaudit.log` only when the spec's
    /// `shared_preload_libraries` names `pgaudit` or its `audit_log_level` is not `Disabled`.
    pub fn for_spec(spec: &ValidatedSpec) -> SessionGuards {
        SessionGuards {
            pgaudit: preloads(spec, "pgaudit") || !spec.spec().audit_log_level.is_disabled(),
        }
    }

    /// The startup `options` string: the guards, then `own` (the connection string's options,
    /// which therefore win).
    ///
    /// ```
    /// use pg_reconcile::SessionGuards;
    /// let options = SessionGuards { pgaudit: true }.options(Some("-c work_mem=1MB"));
    /// assert!(options.starts_with("-c role=none "));
    /// assert!(options.ends_with("-c pgaudit.log=none -c work_mem=1MB"));
    /// ```
    pub fn options(&self, own: Option<&str>) -> String {
        let mut options = ALWAYS.to_owned();
        if self.pgaudit {
            options.push(' ');
            options.push_str(PGAUDIT);
        }
        if let Some(own) = own.map(str::trim).filter(|o| !o.is_empty()) {
            options.push(' ');
            options.push_str(own);
        }
        options
    }

    /// `config` with the guards placed before its own options.
    pub fn apply_to(&self, config: &mut tokio_postgres::Config) {
        let options = self.options(config.get_options());
        config.options(&options);
    }
}

/// Whether the last `shared_preload_libraries` of the spec's `cluster.settings` names
/// `library` (entries split at commas, double quotes and a `$libdir/` prefix ignored).
pub fn preloads(spec: &ValidatedSpec, library: &str) -> bool {
    let Some(settings) = spec.spec().cluster.settings.as_ref() else {
        return false;
    };
    let value = settings
        .iter()
        .rev()
        .find(|o| o.name.eq_ignore_ascii_case("shared_preload_libraries"))
        .and_then(|o| o.value.as_deref())
        .unwrap_or_default();
    value
        .split(',')
        .map(|e| e.trim().trim_matches('"').trim())
        .map(|e| e.strip_prefix("$libdir/").unwrap_or(e))
        .any(|e| e == library)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preloaded_libraries_are_read_from_the_last_setting() {
        let check = |settings: &str, library: &str, expect: bool| {
            let spec = ValidatedSpec::from_json(&format!(
                r#"{{"format_version": 1.0, "cluster": {{"roles": [], "databases": [],
                    "settings": {settings}}}}}"#
            ))
            .unwrap();
            assert_eq!(preloads(&spec, library), expect, "{settings} {library}");
        };
        let spl = |v: &str| {
            format!(
                r#"[{{"name": "shared_preload_libraries", "value": "{v}", "vartype": "string"}}]"#
            )
        };
        check("[]", "pgaudit", false);
        check(&spl("neon,pg_stat_statements"), "pg_stat_statements", true);
        check(&spl(" neon , \\\"pgaudit\\\" "), "pgaudit", true);
        check(&spl("$libdir/pgaudit"), "pgaudit", true);
        check(&spl("pgauditlogtofile"), "pgaudit", false);
        check(&spl("pg_stat_statements_x"), "pg_stat_statements", false);
        let two = r#"[{"name": "shared_preload_libraries", "value": "pgaudit", "vartype": "string"},
                      {"name": "shared_preload_libraries", "value": "neon", "vartype": "string"}]"#;
        check(two, "pgaudit", false);
    }

    #[test]
    fn an_audit_level_loads_pgaudit() {
        let check = |level: &str, expect: bool| {
            let spec = ValidatedSpec::from_json(&format!(
                r#"{{"format_version": 1.0, "audit_log_level": "{level}",
                    "cluster": {{"roles": [], "databases": []}}}}"#
            ))
            .unwrap();
            assert_eq!(SessionGuards::for_spec(&spec).pgaudit, expect, "{level}");
        };
        check("Disabled", false);
        for level in ["Log", "Base", "Hipaa", "Extended", "Full"] {
            check(level, true);
        }
    }

    #[test]
    fn own_options_come_last() {
        let plain = SessionGuards::default();
        assert_eq!(plain.options(None), ALWAYS);
        assert_eq!(plain.options(Some("  ")), ALWAYS);
        assert!(!plain.options(None).contains("pgaudit"));
        let audited = SessionGuards { pgaudit: true };
        assert_eq!(
            audited.options(Some("-c role=x")),
            format!("{ALWAYS} {PGAUDIT} -c role=x")
        );
    }
}
