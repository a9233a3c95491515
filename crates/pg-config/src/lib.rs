//! The files compute_ctl writes into PGDATA before starting postgres: `postgresql.conf`
//! rendered from a [`ValidatedSpec`], the `pg_hba.conf` access line, and `standby.signal` for
//! read-only computes; the spec's settings in pgbouncer's ini file
//! ([`update_pgbouncer_ini`]) — plus one small I/O helper that writes a file atomically.
//!
//! Rendering is pure (no files, no processes, no clock): spec + [`ConfigOptions`] in, text out,
//! so every rendered file is snapshot-tested without PostgreSQL. The only I/O is
//! [`write_file_atomically`]. What one PostgreSQL installation supports comes in as plain data
//! ([`ServerSupport`], found by the `pg-binary` crate): with it, settings the binary would refuse
//! are dropped and listed ([`unsupported_settings`]). This crate does not decide *when* files are written or reloaded
//! (compute_ctl does), does not touch roles or databases (`pg-reconcile`), and spells every
//! value through `pg-quote`.
//!
//! ```
//! use compute_spec::ValidatedSpec;
//! use pg_config::{render_postgresql_conf, ConfigOptions, PgdataFile};
//!
//! let spec = ValidatedSpec::from_json(r#"{"format_version": 1.0, "mode": "Replica",
//!     "cluster": {"roles": [], "databases": [],
//!                 "settings": [{"name": "work_mem", "value": "4MB", "vartype": "integer"},
//!                              {"name": "log_line_prefix", "value": "it's %m ", "vartype": "string"}]}}"#)
//!     .unwrap();
//! let conf = render_postgresql_conf(&spec, &ConfigOptions::default());
//! assert!(conf.contains("\nhot_standby = on\n"));
//! assert!(conf.contains("\nwork_mem = 4MB\nlog_line_prefix = 'it''s %m '\n"));
//! assert!(conf.ends_with("include_if_exists = 'compute_ctl_temp_override.conf'\n"));
//!
//! let files = pg_config::pgdata_files(&spec, &ConfigOptions::default());
//! assert_eq!(files.iter().map(|f| f.name).collect::<Vec<_>>(), ["postgresql.conf", "standby.signal"]);
//! ```
#![warn(missing_docs)]

mod conf_text;
mod files;
mod pg_hba;
mod pgbouncer_ini;
mod postgresql_conf;
mod server_support;

use compute_spec::{ComputeMode, ValidatedSpec};

pub use conf_text::{ConfLine, parse_conf, preload_entries};
pub use files::{FileOptions, WriteFileError, WriteStep, write_file_atomically};
pub use pg_hba::{HBA_ACCESS_LINE, with_hba_access_line};
pub use pgbouncer_ini::{PGBOUNCER_SECTION, PgbouncerIniError, update_pgbouncer_ini};
pub use postgresql_conf::{
    ConfigOptions, MANAGED_BEGIN, MANAGED_END, SERVER_CRT, SERVER_KEY, SettingLineError,
    TEMP_OVERRIDE_CONF, render_postgresql_conf, render_setting_line,
};
pub use server_support::{
    DropReason, DroppedSetting, ServerSupport, SettingSource, unsupported_settings,
};

/// File name of the main configuration file in PGDATA.
pub const POSTGRESQL_CONF: &str = "postgresql.conf";

/// File name of the client authentication file in PGDATA.
pub const PG_HBA_CONF: &str = "pg_hba.conf";

/// File name of the (empty) file that makes postgres start as a hot standby.
pub const STANDBY_SIGNAL: &str = "standby.signal";

/// Whether postgres must start as a standby, i.e. `standby.signal` must exist: for
/// [`ComputeMode::Replica`] and [`ComputeMode::Static`], not for a primary.
pub fn needs_standby_signal(mode: &ComputeMode) -> bool {
    !mode.is_primary()
}

/// One file to write into PGDATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgdataFile {
    /// Name relative to PGDATA.
    pub name: &'static str,
    /// Full content.
    pub contents: String,
}

/// The files compute_ctl writes into PGDATA for `spec` that do not depend on what is already
/// there: `postgresql.conf` and, for read-only modes, an empty `standby.signal`. (`pg_hba.conf`
/// edits the existing file: see [`with_hba_access_line`].) Write each with
/// [`write_file_atomically`].
pub fn pgdata_files(spec: &ValidatedSpec, options: &ConfigOptions) -> Vec<PgdataFile> {
    let mut files = vec![PgdataFile {
        name: POSTGRESQL_CONF,
        contents: render_postgresql_conf(spec, options),
    }];
    if needs_standby_signal(&spec.spec().mode) {
        files.push(PgdataFile {
            name: STANDBY_SIGNAL,
            contents: String::new(),
        });
    }
    files
}
