//! What one PostgreSQL installation supports ([`ServerSupport`]), and the settings of a spec it
//! does not ([`unsupported_settings`]): the one decision both the report and the rendering of
//! `postgresql.conf` with [`ConfigOptions::drop_unsupported`] use. Pure.
//!
//! Neon's orchestrator writes settings only Neon's PostgreSQL fork has: `neon` in
//! `shared_preload_libraries`, fork GUCs without a dot (`max_replication_write_lag`), and
//! `synchronous_standby_names = 'walproposer'`, which a vanilla server accepts but then makes
//! every commit wait for a standby that never comes. With the option, such a setting is
//! dropped (or, for a library list, rewritten without the missing libraries) and reported.
//!
//! What is decided, for `cluster.postgresql_conf` lines and `cluster.settings` entries alike:
//!
//! - a name without a dot that the binary does not know: dropped. Dotted names are custom
//!   placeholders every server accepts; file directives (`include…`) and names that are not
//!   valid parameter names are left alone (the renderer or PostgreSQL reports those);
//! - `shared_preload_libraries`, `session_preload_libraries`, `local_preload_libraries`:
//!   entries naming a library that is not in the library directory are removed; the setting
//!   is dropped when none remain. `local_preload_libraries` entries are looked up in
//!   `plugins/`, as PostgreSQL does. Entries with a directory other than `$libdir/` cannot be
//!   checked without I/O and are kept; so are compute_ctl's own pgaudit libraries (an audit
//!   level is an explicit request, failing is better than not auditing);
//! - `synchronous_standby_names` of `walproposer` or `pageserver` when the installation has
//!   no walproposer.
//!
//! [`ConfigOptions::drop_unsupported`]: crate::ConfigOptions::drop_unsupported

use std::collections::BTreeSet;

use compute_spec::ValidatedSpec;
pub use compute_spec::api::{DropReason, DroppedSetting, SettingSource};
use serde::Serialize;

use crate::conf_text::{library_list_items, library_name, parse_conf};
use crate::postgresql_conf::{FILE_DIRECTIVES, is_valid_name, render_setting_line};

/// What one PostgreSQL installation supports, as found by running its programs (the
/// `pg-binary` crate builds it). Plain data, so that deciding what to drop stays pure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServerSupport {
    /// Every setting name the binary knows, lower case.
    pub known_settings: BTreeSet<String>,
    /// The library directory (`pg_config --pkglibdir`), for messages.
    pub libdir: String,
    /// The files in the library directory, relative to it (`pg_stat_statements.so`,
    /// `plugins/x.so`).
    pub libraries: BTreeSet<String>,
    /// The installation has Neon's walproposer (the `neon` library), which is what
    /// `synchronous_standby_names = 'walproposer'` waits for.
    pub walproposer: bool,
}

impl ServerSupport {
    /// Whether a setting named `name` is accepted: dotted names always (custom placeholders),
    /// others when the binary knows them (case-insensitively).
    pub fn knows_setting(&self, name: &str) -> bool {
        name.contains('.') || self.known_settings.contains(&name.to_ascii_lowercase())
    }

    /// Whether the library `entry` of a library list is installed: `x` when `x` or `x.so` is
    /// in the library directory (`$libdir/x` the same). `None` when that cannot be told
    /// without I/O: the entry names another directory.
    pub fn has_library(&self, entry: &str) -> Option<bool> {
        let name = match entry.strip_prefix("$libdir/") {
            Some(relative) => relative,
            None if entry.contains('/') => return None,
            None => entry,
        };
        Some(self.libraries.contains(name) || self.libraries.contains(&format!("{name}.so")))
    }
}

/// Settings whose value is a list of libraries to load.
const LIBRARY_LISTS: &[&str] = &[
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
];

/// The decision for one setting: `None` to keep it as is, otherwise the value to write
/// instead (`None`: nothing) and why.
fn decide(
    name: &str,
    value: &str,
    support: &ServerSupport,
) -> Option<(Option<String>, DropReason)> {
    let lname = name.to_ascii_lowercase();
    if lname.contains('.') || !is_valid_name(name) || FILE_DIRECTIVES.contains(&lname.as_str()) {
        return None;
    }
    if !support.knows_setting(&lname) {
        return Some((None, DropReason::UnknownSetting));
    }
    if LIBRARY_LISTS.contains(&lname.as_str()) {
        let plugins = lname == "local_preload_libraries";
        let (mut kept, mut missing) = (Vec::new(), Vec::new());
        for item in library_list_items(value) {
            let library = library_name(item);
            let entry = match (plugins, library.contains('/')) {
                (true, false) => format!("$libdir/plugins/{library}"),
                _ => library.to_owned(),
            };
            if library.is_empty() || support.has_library(&entry) != Some(false) {
                kept.push(item);
            } else {
                missing.push(library.to_owned());
            }
        }
        if missing.is_empty() {
            return None;
        }
        let kept = (!kept.is_empty()).then(|| kept.join(","));
        let reason = DropReason::MissingLibraries {
            libraries: missing,
            libdir: support.libdir.clone(),
        };
        return Some((kept, reason));
    }
    if lname == "synchronous_standby_names"
        && !support.walproposer
        && ["walproposer", "pageserver"]
            .iter()
            .any(|w| value.trim().eq_ignore_ascii_case(w))
    {
        return Some((None, DropReason::NoWalproposer));
    }
    None
}

/// The settings of `spec` that `support` lacks, in file order (`cluster.postgresql_conf`
/// lines, then `cluster.settings` entries): exactly what [`crate::render_postgresql_conf`]
/// drops or rewrites when [`crate::ConfigOptions::drop_unsupported`] is set. Settings entries
/// the renderer leaves out anyway (no value, unwritable) are not considered.
///
/// ```
/// use compute_spec::ValidatedSpec;
/// use pg_config::{DropReason, ServerSupport, unsupported_settings};
///
/// let spec = ValidatedSpec::from_json(r#"{"format_version": 1.0, "cluster": {"roles": [],
///     "databases": [], "postgresql_conf": "work_mem = 4MB\nmax_replication_write_lag = 15MB\n"}}"#)
///     .unwrap();
/// let support = ServerSupport {
///     known_settings: ["work_mem".to_owned()].into(),
///     ..ServerSupport::default()
/// };
/// let dropped = unsupported_settings(&spec, &support);
/// assert_eq!(dropped.len(), 1);
/// assert_eq!(dropped[0].name, "max_replication_write_lag");
/// assert_eq!(dropped[0].reason, DropReason::UnknownSetting);
/// assert_eq!(dropped[0].reason.to_string(), "unknown to this postgres binary");
/// ```
pub fn unsupported_settings(spec: &ValidatedSpec, support: &ServerSupport) -> Vec<DroppedSetting> {
    let cluster = &spec.spec().cluster;
    let mut out = Vec::new();
    if let Some(conf) = &cluster.postgresql_conf {
        for line in parse_conf(conf) {
            if let Some((kept_value, reason)) = decide(&line.name, &line.value, support) {
                out.push(DroppedSetting {
                    source: SettingSource::PostgresqlConf { line: line.line },
                    name: line.name,
                    value: line.value,
                    kept_value,
                    reason,
                });
            }
        }
    }
    for (index, option) in cluster.settings.iter().flatten().enumerate() {
        let Some(value) = &option.value else {
            continue;
        };
        if render_setting_line(option).is_err() {
            continue;
        }
        if let Some((kept_value, reason)) = decide(&option.name, value, support) {
            out.push(DroppedSetting {
                name: option.name.clone(),
                source: SettingSource::Settings {
                    pointer: format!("/cluster/settings/{index}"),
                },
                value: value.clone(),
                kept_value,
                reason,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn support() -> ServerSupport {
        ServerSupport {
            known_settings: [
                "work_mem",
                "shared_preload_libraries",
                "session_preload_libraries",
                "local_preload_libraries",
                "synchronous_standby_names",
            ]
            .map(str::to_owned)
            .into(),
            libdir: "/pg/lib".to_owned(),
            libraries: [
                "pg_stat_statements.so",
                "auto_explain.so",
                "plugins/p.so",
                "odd",
            ]
            .map(str::to_owned)
            .into(),
            walproposer: false,
        }
    }

    #[test]
    fn decisions() {
        let check = |name: &str, value: &str, expect: &str| {
            let got = match decide(name, value, &support()) {
                None => "keep".to_owned(),
                Some((kept, reason)) => format!("{kept:?}: {reason}"),
            };
            assert_eq!(got, expect, "{name} = {value:?}");
        };
        check("work_mem", "4MB", "keep");
        check("WORK_MEM", "4MB", "keep");
        check("neon.safekeepers", "x", "keep");
        check("include", "x", "keep");
        check("Include_If_Exists", "x", "keep");
        check("1bad", "x", "keep");
        check(
            "max_replication_write_lag",
            "15MB",
            "None: unknown to this postgres binary",
        );
        check(
            "shared_preload_libraries",
            "pg_stat_statements, odd",
            "keep",
        );
        check("shared_preload_libraries", "", "keep");
        check(
            "shared_preload_libraries",
            "neon",
            "None: library neon not in /pg/lib",
        );
        check(
            "Shared_Preload_Libraries",
            " neon , \"pg_stat_statements\",, $libdir/auto_explain,/abs/x, $libdir/nope",
            "Some(\"\\\"pg_stat_statements\\\",$libdir/auto_explain,/abs/x\"): \
             libraries neon, $libdir/nope not in /pg/lib",
        );
        check(
            "session_preload_libraries",
            "auto_explain,x'y",
            "Some(\"auto_explain\"): library x'y not in /pg/lib",
        );
        check("local_preload_libraries", "p, $libdir/plugins/p", "keep");
        check(
            "local_preload_libraries",
            "auto_explain",
            "None: library auto_explain not in /pg/lib",
        );
        let no_walproposer = "None: no walproposer (neon library) to be the synchronous standby";
        check("synchronous_standby_names", "walproposer", no_walproposer);
        check("synchronous_standby_names", " PageServer ", no_walproposer);
        check("synchronous_standby_names", "FIRST 1 (s1)", "keep");
        let with_walproposer = ServerSupport {
            walproposer: true,
            ..support()
        };
        assert_eq!(
            decide(
                "synchronous_standby_names",
                "walproposer",
                &with_walproposer
            ),
            None
        );
    }

    #[test]
    fn serializes_for_status() {
        let dropped = DroppedSetting {
            name: "shared_preload_libraries".to_owned(),
            source: SettingSource::PostgresqlConf { line: 2 },
            value: "neon,pg_stat_statements".to_owned(),
            kept_value: Some("pg_stat_statements".to_owned()),
            reason: DropReason::MissingLibraries {
                libraries: vec!["neon".to_owned()],
                libdir: "/pg/lib".to_owned(),
            },
        };
        expect_test::expect![[r#"{"name":"shared_preload_libraries","source":{"in":"postgresql_conf","line":2},"value":"neon,pg_stat_statements","kept_value":"pg_stat_statements","reason":{"kind":"missing_libraries","libraries":["neon"],"libdir":"/pg/lib"}}"#]]
            .assert_eq(&serde_json::to_string(&dropped).unwrap());
        let settings = SettingSource::Settings {
            pointer: "/cluster/settings/4".to_owned(),
        };
        assert_eq!(settings.to_string(), "/cluster/settings/4");
        assert_eq!(
            serde_json::to_string(&DropReason::UnknownSetting).unwrap(),
            r#"{"kind":"unknown_setting"}"#
        );
    }
}
