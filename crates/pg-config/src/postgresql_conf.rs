//! Rendering of `postgresql.conf` from a validated spec: pure, no I/O.
//!
//! Layout of the rendered file, in order (PostgreSQL applies the *last* line for a name):
//!
//! 1. `cluster.postgresql_conf`, verbatim, when present (a newline is added if missing); with
//!    [`ConfigOptions::drop_unsupported`], each line the binary does not support is replaced
//!    by a comment saying why (and a library list by the list without the missing libraries);
//! 2. the settings compute_ctl owns, each only when it has a value: storage
//!    (`neon.stripe_size`, `neon.pageserver_connstring`, `neon.safekeepers` with the `g#N:`
//!    generation prefix, `neon.tenant_id`, `neon.timeline_id`, `neon.project_id`,
//!    `neon.branch_id`, `neon.endpoint_id`), TLS, locale, `neon.compute_mode` and the mode
//!    lines (`hot_standby`, `recovery_target_lsn`), `dynamic_shared_memory_type`,
//!    `neon.privileged_role_name`, the extension server port, subscriber and log-export lines,
//!    and the pgaudit block (upstream's order); `unix_socket_directories` only as a default,
//!    left out when the spec names it ([`ConfigOptions::unix_socket_directories`]);
//! 3. `cluster.settings` between [`MANAGED_BEGIN`] and [`MANAGED_END`] (unsupported ones
//!    replaced by comments, as in part 1);
//! 4. `include_if_exists = 'compute_ctl_temp_override.conf'` ([`TEMP_OVERRIDE_CONF`]).
//!
//! **No name is written twice** (names compared case-insensitively, as PostgreSQL does):
//! when compute_ctl writes a name in part 2, the spec setting of the same name is left out of
//! the managed block, with a comment saying so. compute_ctl's value wins because it was
//! resolved from the spec with upstream's precedence (top-level fields before `neon.*`
//! settings), so the file says the same thing as [`ValidatedSpec::storage`]; upstream instead
//! writes both lines and lets the settings line win, which can contradict the top-level field.
//! A spec setting that appears twice is written once, with its last value (what PostgreSQL
//! would apply). Names in `cluster.postgresql_conf` are not inspected: anything later wins.
//!
//! **No value can break or inject a line.** `string` settings are always quoted with
//! [`pg_quote::quote_conf_value`]. Other vartypes are written bare only when the value is one
//! plain token of the postgresql.conf lexer (an identifier such as `on` or `logical`, a decimal
//! integer with optional unit letters such as `128MB`, a decimal such as `1.5`); anything else
//! is quoted, which PostgreSQL reads as the same value for every parameter type. A value that
//! cannot be written at all (a newline or NUL, which validation rejects) and a name that is not
//! a valid parameter name (only `ident` or `ident.ident` parse; PostgreSQL 15 rejects `a.b.c`
//! and `$`) are left out with a comment naming the spec location; see [`render_setting_line`].
//!
//! **Unsupported settings are dropped only on request** ([`ConfigOptions::drop_unsupported`]),
//! as decided by [`unsupported_settings`], which callers use to report the same list.

use std::collections::HashSet;

use compute_spec::{ComputeAudit, ComputeMode, GenericOption, ValidatedSpec};
use pg_quote::quote_conf_value;

use crate::server_support::{DroppedSetting, ServerSupport, SettingSource, unsupported_settings};

/// File name of the override file included last, as upstream's postgresql.conf includes it.
/// Upstream writes temporary settings there (`neon.max_cluster_size=-1` while it applies the
/// catalog) and empties it afterwards; compute_ctl does not write it yet (the Neon-2025 catalog
/// work), so the include finds no file and changes nothing.
pub const TEMP_OVERRIDE_CONF: &str = "compute_ctl_temp_override.conf";

/// File name, in PGDATA, of the server certificate written as `ssl_cert_file` when
/// [`ConfigOptions::tls`] is set (compute_ctl copies the configured certificate there).
pub const SERVER_CRT: &str = "server.crt";

/// File name, in PGDATA, of the server private key written as `ssl_key_file` when
/// [`ConfigOptions::tls`] is set (compute_ctl copies the configured key there, mode 0600).
pub const SERVER_KEY: &str = "server.key";

/// First line of the block holding the spec's `cluster.settings`.
pub const MANAGED_BEGIN: &str = "# Managed by compute_ctl: begin";

/// Last line of the block holding the spec's `cluster.settings`.
pub const MANAGED_END: &str = "# Managed by compute_ctl: end";

/// Options of the rendering that do not come from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOptions {
    /// Written as `neon.privileged_role_name` (CLI `--privileged-role-name`). Default
    /// `neon_superuser`.
    pub privileged_role_name: String,
    /// Written as `neon.extension_server_port` (compute_ctl's internal HTTP port) when set.
    pub extension_server_port: Option<u16>,
    /// Written as `lc_messages`, `lc_monetary`, `lc_time` and `lc_numeric` when set, so that
    /// server messages and formats do not depend on the environment. Default `C.UTF-8`, as
    /// upstream on Linux.
    pub locale: Option<String>,
    /// compute_ctl has TLS files (`compute_ctl_config.tls`) and copies them into PGDATA as
    /// [`SERVER_CRT`] and [`SERVER_KEY`]: `ssl = on` and the two file names are written.
    /// Default false.
    pub tls: bool,
    /// The kernel does strict overcommit accounting (`/proc/sys/vm/overcommit_memory` is `2`,
    /// read by the caller): `dynamic_shared_memory_type = mmap` is written, since POSIX shared
    /// memory is then counted twice. Default false.
    pub strict_overcommit: bool,
    /// Drop (or, for library lists, rewrite) the spec settings this installation does not
    /// support, each replaced by a comment; see [`unsupported_settings`] for what is dropped
    /// and for the list to report. Default `None`: everything is written.
    pub drop_unsupported: Option<ServerSupport>,
    /// Written as `unix_socket_directories` unless the spec names that setting (in
    /// `cluster.settings` or `cluster.postgresql_conf`), whose value then stands alone. For a
    /// default that works for any user: Debian's build puts the socket in
    /// `/var/run/postgresql`, where only its `postgres` user may create the lock file, and
    /// PostgreSQL's own default (upstream's build) is `/tmp`. Default `None`: not written.
    pub unix_socket_directories: Option<String>,
}

impl Default for ConfigOptions {
    fn default() -> Self {
        ConfigOptions {
            privileged_role_name: "neon_superuser".to_owned(),
            extension_server_port: None,
            locale: Some("C.UTF-8".to_owned()),
            tls: false,
            strict_overcommit: false,
            drop_unsupported: None,
            unix_socket_directories: None,
        }
    }
}

/// Renders the whole `postgresql.conf` for `spec`. Pure: the same input gives the same text.
/// In order: `cluster.postgresql_conf` verbatim, the storage settings, the mode and
/// compute_ctl's own settings, the audit block, the spec's settings, the override include.
pub fn render_postgresql_conf(spec: &ValidatedSpec, options: &ConfigOptions) -> String {
    let mut conf = Conf::default();
    let compute = spec.spec();
    let dropped = match &options.drop_unsupported {
        Some(support) => unsupported_settings(spec, support),
        None => Vec::new(),
    };

    if let Some(verbatim) = &compute.cluster.postgresql_conf {
        render_verbatim(&mut conf, verbatim, &dropped);
        if !conf.out.is_empty() && !conf.out.ends_with('\n') {
            conf.out.push('\n');
        }
    }
    render_storage(&mut conf, spec);
    render_compute_settings(&mut conf, spec, options);
    render_audit(
        &mut conf,
        compute.audit_log_level,
        spec_shared_preload_libraries(spec, &dropped).as_deref(),
    );
    if let Some(settings) = &compute.cluster.settings {
        conf.out.push_str(MANAGED_BEGIN);
        conf.out.push('\n');
        render_settings(&mut conf, settings, &dropped);
        conf.out.push_str(MANAGED_END);
        conf.out.push('\n');
    }
    conf.owned_string("include_if_exists", TEMP_OVERRIDE_CONF);
    conf.out
}

/// The `neon.*` storage settings compute_ctl owns, each only when the spec has it.
fn render_storage(conf: &mut Conf, spec: &ValidatedSpec) {
    let compute = spec.spec();
    let storage = spec.storage();
    conf.comment("Neon storage settings");
    if let Some(ps) = &storage.pageserver {
        if let Some(stripe) = ps.stripe_size {
            conf.owned_token("neon.stripe_size", &stripe.to_string());
        }
        let count = ps.shard_count;
        let urls: Option<Vec<&str>> = (0..count.max(1))
            .map(|number| {
                let index = format!("{number:02x}{count:02x}");
                ps.shards
                    .get(&index)?
                    .pageservers
                    .first()?
                    .libpq_url
                    .as_deref()
            })
            .collect();
        match urls {
            Some(urls) => conf.owned_string("neon.pageserver_connstring", &urls.join(",")),
            None => conf.comment("no neon.pageserver_connstring: a shard has no libpq URL"),
        }
    }
    if !storage.safekeepers.is_empty() {
        let list = storage.safekeepers.join(",");
        let value = match compute.safekeepers_generation {
            Some(generation) => format!("g#{generation}:{list}"),
            None => list,
        };
        conf.owned_string("neon.safekeepers", &value);
    }
    if let Some(tenant) = storage.tenant_id {
        conf.owned_string("neon.tenant_id", &tenant.to_string());
    }
    if let Some(timeline) = storage.timeline_id {
        conf.owned_string("neon.timeline_id", &timeline.to_string());
    }
    for (name, value) in [
        ("neon.project_id", &compute.project_id),
        ("neon.branch_id", &compute.branch_id),
        ("neon.endpoint_id", &compute.endpoint_id),
    ] {
        if let Some(value) = value {
            conf.owned_string(name, value);
        }
    }
    conf.blank();
}

/// Locale, mode, and the settings of compute_ctl's own options.
fn render_compute_settings(conf: &mut Conf, spec: &ValidatedSpec, options: &ConfigOptions) {
    let compute = spec.spec();
    if options.tls {
        conf.owned_token("ssl", "on");
        conf.owned_string("ssl_cert_file", SERVER_CRT);
        conf.owned_string("ssl_key_file", SERVER_KEY);
    }
    if let Some(locale) = &options.locale {
        for name in ["lc_messages", "lc_monetary", "lc_time", "lc_numeric"] {
            conf.owned_string(name, locale);
        }
    }
    conf.owned_string("neon.compute_mode", compute.mode.as_guc_value());
    match compute.mode {
        ComputeMode::Primary => {}
        ComputeMode::Replica => conf.owned_token("hot_standby", "on"),
        ComputeMode::Static(lsn) => {
            conf.owned_token("hot_standby", "on");
            conf.owned_string("recovery_target_lsn", &lsn.to_string());
        }
    }
    if options.strict_overcommit {
        conf.owned_token("dynamic_shared_memory_type", "mmap");
    }
    if let Some(dirs) = &options.unix_socket_directories
        && !spec_names_setting(spec, "unix_socket_directories")
    {
        conf.owned_string("unix_socket_directories", dirs);
    }
    conf.owned_string("neon.privileged_role_name", &options.privileged_role_name);
    if let Some(port) = options.extension_server_port {
        conf.owned_token("neon.extension_server_port", &port.to_string());
    }
    let disable_subscribers = if compute.drop_subscriptions_before_start {
        "true"
    } else {
        "false"
    };
    conf.owned_token(
        "neon.disable_logical_replication_subscribers",
        disable_subscribers,
    );
    if compute.logs_export_host.is_some() {
        conf.owned_string("log_destination", "stderr,syslog");
    }
}

/// Whether `cluster.settings` or `cluster.postgresql_conf` sets `name` (compared as
/// PostgreSQL compares names, ignoring case).
fn spec_names_setting(spec: &ValidatedSpec, name: &str) -> bool {
    let cluster = &spec.spec().cluster;
    let in_settings = cluster
        .settings
        .iter()
        .flatten()
        .any(|o| o.name.eq_ignore_ascii_case(name));
    let in_verbatim = cluster.postgresql_conf.as_deref().is_some_and(|text| {
        crate::parse_conf(text)
            .iter()
            .any(|l| l.name.eq_ignore_ascii_case(name))
    });
    in_settings || in_verbatim
}

/// `cluster.postgresql_conf` with the `dropped` lines replaced by comments (followed by the
/// rewritten line, if any); other lines byte for byte.
fn render_verbatim(conf: &mut Conf, verbatim: &str, dropped: &[DroppedSetting]) {
    // Numbered as `str::lines` numbers them (what `parse_conf` reports).
    for (index, raw) in verbatim.split_inclusive('\n').enumerate() {
        let at = SettingSource::PostgresqlConf { line: index + 1 };
        let Some(drop) = dropped.iter().find(|d| d.source == at) else {
            conf.out.push_str(raw);
            continue;
        };
        conf.comment(&dropped_comment(&format!("line {}", index + 1), drop));
        if let Some(kept) = &drop.kept_value {
            // The name is a valid parameter name (decided so); the value has no newline.
            conf.out.push_str(&drop.name);
            conf.out.push_str(" = ");
            conf.out.push_str(&quote_conf_value(kept));
            conf.out.push('\n');
        }
    }
}

/// The comment replacing a dropped setting: where, what and why, without its value, control
/// characters shown as `?`.
fn dropped_comment(at: &str, drop: &DroppedSetting) -> String {
    let what = if drop.kept_value.is_some() {
        "rewritten"
    } else {
        "dropped"
    };
    format!("{at}: {} {what} by compute_ctl: {}", drop.name, drop.reason)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The last value of the spec setting `shared_preload_libraries` that is written, if any
/// (without the `dropped` libraries).
fn spec_shared_preload_libraries(
    spec: &ValidatedSpec,
    dropped: &[DroppedSetting],
) -> Option<String> {
    let settings = spec.spec().cluster.settings.as_ref()?;
    settings
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, o)| o.name.eq_ignore_ascii_case("shared_preload_libraries"))
        .find_map(|(index, o)| match find_dropped(dropped, index) {
            Some(drop) => drop.kept_value.clone().map(Some),
            None => Some(o.value.clone()),
        })?
}

/// The decision about `cluster.settings` entry `index`, if it is dropped or rewritten.
fn find_dropped(dropped: &[DroppedSetting], index: usize) -> Option<&DroppedSetting> {
    let pointer = format!("/cluster/settings/{index}");
    dropped
        .iter()
        .find(|d| matches!(&d.source, SettingSource::Settings { pointer: p } if *p == pointer))
}

/// The pgaudit block, as upstream writes it for each level. `shared_preload_libraries` is
/// owned here (the spec's list plus the audit libraries) so that it is written only once.
fn render_audit(conf: &mut Conf, level: ComputeAudit, spec_libraries: Option<&str>) {
    let libraries: &[&str] = match level {
        ComputeAudit::Disabled => return,
        ComputeAudit::Log | ComputeAudit::Base => {
            conf.owned_string("pgaudit.log", "ddl,role");
            conf.owned_token("pgaudit.log_catalog", "off");
            &["pgaudit"]
        }
        ComputeAudit::Hipaa | ComputeAudit::Extended | ComputeAudit::Full => {
            if level == ComputeAudit::Full {
                conf.owned_token("pgaudit.log_parameter", "on");
                conf.owned_string("pgaudit.log", "all");
            } else {
                conf.owned_token("pgaudit.log_parameter", "off");
                conf.owned_string("pgaudit.log", "all, -misc");
            }
            conf.owned_token("pgaudit.log_catalog", "off");
            conf.owned_token("pgaudit.log_rotation_age", "5");
            &["pgaudit", "pgauditlogtofile"]
        }
    };
    let mut list: Vec<&str> = spec_libraries
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    for library in libraries {
        if !list.contains(library) {
            list.push(library);
        }
    }
    conf.owned_string("shared_preload_libraries", &list.join(","));
}

fn render_settings(conf: &mut Conf, settings: &[GenericOption], dropped: &[DroppedSetting]) {
    let mut seen = HashSet::new();
    // Walk backwards so that the last occurrence of a name is the one kept; restore order after.
    let mut lines = Vec::with_capacity(settings.len());
    for (index, option) in settings.iter().enumerate().rev() {
        let pointer = format!("/cluster/settings/{index}");
        let drop = find_dropped(dropped, index);
        let rewritten;
        let option = match drop {
            None => option,
            Some(drop) => match &drop.kept_value {
                // Not written, and does not hide an earlier entry of the same name.
                None => {
                    lines.push(format!("# {}", dropped_comment(&pointer, drop)));
                    continue;
                }
                Some(kept) => {
                    rewritten = GenericOption {
                        value: Some(kept.clone()),
                        ..option.clone()
                    };
                    &rewritten
                }
            },
        };
        let line = match render_setting_line(option) {
            Ok(line) => line,
            Err(error) => {
                lines.push(format!("# {pointer}: {error}"));
                continue;
            }
        };
        let key = option.name.to_ascii_lowercase();
        if conf.owned.contains(&key) {
            lines.push(format!(
                "# {pointer}: {} is set above by compute_ctl",
                option.name
            ));
        } else if !seen.insert(key) {
            lines.push(format!(
                "# {pointer}: {} is set again later in the spec",
                option.name
            ));
        } else {
            lines.push(line);
            if let Some(drop) = drop {
                lines.push(format!("# {}", dropped_comment(&pointer, drop)));
            }
        }
    }
    for line in lines.iter().rev() {
        conf.out.push_str(line);
        conf.out.push('\n');
    }
}

/// Why a setting cannot be written as a postgresql.conf line. Spec validation rejects all of
/// these; the renderer still never writes a broken line (it writes a comment instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingLineError {
    /// The name is not an identifier or two identifiers joined by a dot (postgresql.conf
    /// cannot quote names). The name is not repeated: it may be anything.
    #[error("not a valid parameter name, not written")]
    InvalidName,
    /// The name is one of the file directives `include`, `include_if_exists`, `include_dir`
    /// (compared case-insensitively, as PostgreSQL does): written as a setting it would make
    /// the server read another file.
    #[error("{name} is a file directive, not a parameter; not written")]
    Directive {
        /// The directive.
        name: String,
    },
    /// The setting has no value.
    #[error("{name} has no value, not written")]
    NoValue {
        /// The setting's name.
        name: String,
    },
    /// The value has a newline, carriage return or NUL, which no postgresql.conf text carries.
    #[error("the value of {name} cannot be written (newline or NUL)")]
    UnwritableValue {
        /// The setting's name.
        name: String,
    },
}

/// Names the postgresql.conf parser treats as directives to read other files.
pub(crate) const FILE_DIRECTIVES: &[&str] = &["include", "include_if_exists", "include_dir"];

/// One `name = value` line (without the newline) for a setting, spelled by its vartype:
/// `string` values always quoted, other values bare only when they are one plain token,
/// quoted otherwise. Also what compute_ctl uses for lines it writes elsewhere, such as the
/// override file ([`TEMP_OVERRIDE_CONF`]).
///
/// ```
/// use compute_spec::GenericOption;
/// let option = GenericOption {
///     name: "neon.max_cluster_size".into(),
///     value: Some("-1".into()),
///     vartype: "integer".into(),
/// };
/// assert_eq!(pg_config::render_setting_line(&option).unwrap(), "neon.max_cluster_size = -1");
/// ```
pub fn render_setting_line(option: &GenericOption) -> Result<String, SettingLineError> {
    if !is_valid_name(&option.name) {
        return Err(SettingLineError::InvalidName);
    }
    let name = || option.name.clone();
    if FILE_DIRECTIVES
        .iter()
        .any(|d| option.name.eq_ignore_ascii_case(d))
    {
        return Err(SettingLineError::Directive { name: name() });
    }
    let value = option
        .value
        .as_deref()
        .ok_or_else(|| SettingLineError::NoValue { name: name() })?;
    let text = render_value(&option.vartype, value)
        .ok_or_else(|| SettingLineError::UnwritableValue { name: name() })?;
    Ok(format!("{} = {text}", option.name))
}

/// The text of a setting value: bare when it is one plain lexer token and the vartype is not
/// `string`, quoted otherwise; `None` when no postgresql.conf text can carry it.
fn render_value(vartype: &str, value: &str) -> Option<String> {
    if value.contains(['\n', '\r', '\0']) {
        return None;
    }
    if vartype != "string" && is_plain_token(value) {
        return Some(value.to_owned());
    }
    Some(quote_conf_value(value))
}

/// Whether `value` is read by PostgreSQL's postgresql.conf lexer as exactly one unquoted value
/// token: an ASCII identifier (`on`, `logical`, `md5`), a decimal integer with optional unit
/// letters (`-1`, `128MB`, `10s`) or a plain decimal (`1.5`, `-0.25`). Deliberately narrower
/// than the lexer: everything else is quoted, which means the same value.
fn is_plain_token(value: &str) -> bool {
    let bytes = value.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    if first.is_ascii_alphabetic() || first == b'_' {
        return bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    }
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    let digits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let rest = &unsigned[digits..];
    if rest.bytes().all(|b| b.is_ascii_alphabetic()) {
        return true; // integer with optional unit letters
    }
    match rest.strip_prefix('.') {
        Some(fraction) => !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Whether `name` can be written as a parameter name: an ASCII identifier, or two joined by a
/// dot (a custom placeholder such as `neon.safekeepers`). Names cannot be quoted in
/// postgresql.conf, so anything else is left out.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let identifier = |part: &str| {
        let mut bytes = part.bytes();
        matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    match name.split_once('.') {
        Some((class, rest)) => identifier(class) && identifier(rest),
        None => identifier(name),
    }
}

/// The file being built, and the names compute_ctl has written so far (lower-case).
#[derive(Default)]
struct Conf {
    out: String,
    owned: HashSet<String>,
}

impl Conf {
    fn comment(&mut self, text: &str) {
        debug_assert!(!text.contains(['\n', '\r']));
        self.out.push_str("# ");
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        self.out.push('\n');
    }

    /// `name = token` for a value compute_ctl produced itself as a plain token.
    fn owned_token(&mut self, name: &str, token: &str) {
        debug_assert!(is_plain_token(token), "{token:?}");
        self.line(name, token.to_owned());
    }

    /// `name = 'value'`, quoted; left out with a comment when it cannot be written.
    fn owned_string(&mut self, name: &str, value: &str) {
        match render_value("string", value) {
            Some(text) => self.line(name, text),
            None => self.comment(&format!("{name} not written: value has a newline or NUL")),
        }
    }

    fn line(&mut self, name: &str, text: String) {
        debug_assert!(is_valid_name(name) || name == "include_if_exists");
        self.owned.insert(name.to_ascii_lowercase());
        self.out.push_str(name);
        self.out.push_str(" = ");
        self.out.push_str(&text);
        self.out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bare_only_when_plain() {
        let check = |vartype: &str, value: &str, expect: Option<&str>| {
            assert_eq!(
                render_value(vartype, value).as_deref(),
                expect,
                "{vartype} {value:?}"
            );
        };
        check("bool", "on", Some("on"));
        check("enum", "logical", Some("logical"));
        check("integer", "-1", Some("-1"));
        check("integer", "128MB", Some("128MB"));
        check("real", "1.5", Some("1.5"));
        check("real", "-0.25", Some("-0.25"));
        check("string", "on", Some("'on'"));
        check("integer", "", Some("''"));
        check("integer", "1 # x", Some("'1 # x'"));
        check("integer", "1e5", Some("'1e5'"));
        check("real", "1.", Some("'1.'"));
        check("enum", "a.b", Some("'a.b'"));
        check("enum", "C.UTF-8", Some("'C.UTF-8'"));
        check("bool", "on'\n", None);
        check("bool", "x\0", None);
        check("weird", "é", Some("'é'"));
        check("bool", "' ; x = 'y", Some("''' ; x = ''y'"));
    }

    #[test]
    fn setting_lines() {
        let check = |name: &str, value: Option<&str>, vartype: &str, expect: &str| {
            let option = GenericOption {
                name: name.to_owned(),
                value: value.map(str::to_owned),
                vartype: vartype.to_owned(),
            };
            let got = match render_setting_line(&option) {
                Ok(line) => line,
                Err(e) => format!("error: {e}"),
            };
            assert_eq!(got, expect, "{name:?} {value:?} {vartype}");
        };
        check("work_mem", Some("4MB"), "integer", "work_mem = 4MB");
        check("a.b", Some("x y"), "string", "a.b = 'x y'");
        check("x", Some("1 # c"), "integer", "x = '1 # c'");
        check("x", Some("on"), "no-such-vartype", "x = on");
        check("x", Some("a=b"), "no-such-vartype", "x = 'a=b'");
        check("x", None, "integer", "error: x has no value, not written");
        let unwritable = "error: the value of x cannot be written (newline or NUL)";
        check("x", Some("1\ny = 2"), "integer", unwritable);
        check("x", Some("a\r"), "string", unwritable);
        let invalid = "error: not a valid parameter name, not written";
        check("a.b.c", Some("1"), "integer", invalid); // PostgreSQL 15: syntax error
        check("a$b", Some("1"), "integer", invalid); // `$` is not in the lexer's names
        check("x = 1\ny", Some("1"), "integer", invalid);
        let directive =
            |name: &str| format!("error: {name} is a file directive, not a parameter; not written");
        check("include", Some("/etc/x"), "string", &directive("include"));
        check(
            "Include_Dir",
            Some("/etc"),
            "string",
            &directive("Include_Dir"),
        );
        check(
            "include_if_exists",
            Some("x"),
            "string",
            &directive("include_if_exists"),
        );
    }

    #[test]
    fn the_socket_directory_is_a_default_the_spec_overrides() {
        let check = |settings: &str, verbatim: Option<&str>, expect: &[&str]| {
            let verbatim = verbatim.map_or("null".to_owned(), |v| format!("{v:?}"));
            let spec = ValidatedSpec::from_json(&format!(
                r#"{{"format_version":1.0,"cluster":{{"roles":[],"databases":[],
                   "postgresql_conf":{verbatim},"settings":[{settings}]}}}}"#
            ))
            .unwrap();
            let options = ConfigOptions {
                unix_socket_directories: Some("/tmp".to_owned()),
                ..ConfigOptions::default()
            };
            let conf = render_postgresql_conf(&spec, &options);
            let values: Vec<String> = crate::parse_conf(&conf)
                .into_iter()
                .filter(|l| l.name.eq_ignore_ascii_case("unix_socket_directories"))
                .map(|l| l.value)
                .collect();
            assert_eq!(values, expect, "{conf}");
        };
        check("", None, &["/tmp"]);
        let spec_dir = r#"{"name":"Unix_Socket_Directories","value":"/run/x","vartype":"string"}"#;
        check(spec_dir, None, &["/run/x"]);
        check(
            "",
            Some("unix_socket_directories = '/srv/s'\n"),
            &["/srv/s"],
        );
        let spec = ValidatedSpec::from_json(
            r#"{"format_version":1.0,"cluster":{"roles":[],"databases":[]}}"#,
        )
        .unwrap();
        let conf = render_postgresql_conf(&spec, &ConfigOptions::default());
        assert!(!conf.contains("unix_socket_directories"), "{conf}");
    }

    #[test]
    fn names() {
        for ok in ["fsync", "neon.safekeepers", "_x", "a1.b_2"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "", "1x", "a.b.c", "a b", "a=b", "x\n", "a.", ".a", "é", "a-b",
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
