//! The rsyslog configuration files compute_ctl writes for audit logging and log export, and
//! the audit collector they forward to: pure rendering (targets parsed by
//! [`compute_spec::parse_syslog_target`]), every value spelled through
//! [`pg_quote::quote_rsyslog_string`] and [`pg_quote::quote_rsyslog_param`].
//!
//! - [`render_audit_rsyslog_conf`] ([`AUDIT_RSYSLOG_CONF`]): with a compliance audit level
//!   (`Hipaa`, `Extended`, `Full`), rsyslog tails the pgaudit files in `PGDATA/log`
//!   (pgauditlogtofile) and forwards each entry, as JSON with the endpoint and project ids, to
//!   the audit collector over TCP, with TLS when the collector came from
//!   `AUDIT_LOGGING_TLS_ENDPOINT` ([`audit_target`]).
//! - [`render_postgres_logs_conf`] ([`POSTGRES_LOGS_CONF`]): with the spec's
//!   `logs_export_host`, the server's syslog output (program name `postgres`) is forwarded to
//!   that host over TCP in RFC 5424 format.
//!
//! The directives, file names and defaults are upstream's (`compute_tools/src/rsyslog.rs` and
//! its templates); the text is this crate's.

use std::fmt::Write as _;

use compute_spec::{SyslogTarget, SyslogTargetError, parse_syslog_target};

use pg_quote::{quote_rsyslog_param, quote_rsyslog_string};

/// File name of the audit forwarding config in the rsyslog config directory.
pub const AUDIT_RSYSLOG_CONF: &str = "compute_audit_rsyslog.conf";

/// File name of the log export config in the rsyslog config directory.
pub const POSTGRES_LOGS_CONF: &str = "postgres_logs.conf";

/// Where rsyslog keeps its state files (how far each audit file was read), as upstream.
pub const RSYSLOG_WORK_DIRECTORY: &str = "/var/log/rsyslog";

/// The CA bundle rsyslog checks a TLS collector's certificate against, as upstream.
pub const RSYSLOG_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The audit collector from the two environment values (`AUDIT_LOGGING_ENDPOINT`,
/// `AUDIT_LOGGING_TLS_ENDPOINT`; an empty value counts as unset): the TLS one wins, as
/// upstream. `Ok(None)` when both are unset.
pub fn audit_target(
    plain: Option<&str>,
    tls: Option<&str>,
) -> Result<Option<(SyslogTarget, bool)>, SyslogTargetError> {
    let plain = plain.filter(|v| !v.is_empty());
    let tls = tls.filter(|v| !v.is_empty());
    match (plain, tls) {
        (_, Some(tls)) => Ok(Some((parse_syslog_target(tls)?, true))),
        (Some(plain), None) => Ok(Some((parse_syslog_target(plain)?, false))),
        (None, None) => Ok(None),
    }
}

/// A value that cannot be written into an rsyslog config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} cannot be written into an rsyslog config (it has a control character)")]
pub struct RsyslogValueError {
    /// What the value is (`endpoint_id`, `log directory`, …).
    pub what: &'static str,
}

/// What the audit forwarding config is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRsyslogConfig<'a> {
    /// The directory pgauditlogtofile writes its files into (`PGDATA/log`).
    pub log_directory: &'a str,
    /// The spec's `endpoint_id` (empty when absent), sent with every entry.
    pub endpoint_id: &'a str,
    /// The spec's `project_id` (empty when absent), sent with every entry.
    pub project_id: &'a str,
    /// The collector.
    pub target: &'a SyslogTarget,
    /// Forward over TLS (the collector came from `AUDIT_LOGGING_TLS_ENDPOINT`).
    pub tls: bool,
    /// rsyslog's state directory ([`RSYSLOG_WORK_DIRECTORY`] in production).
    pub work_directory: &'a str,
}

/// `value` as a string in an expression.
fn quoted(what: &'static str, value: &str) -> Result<String, RsyslogValueError> {
    quote_rsyslog_string(value).ok_or(RsyslogValueError { what })
}

/// `value` as an object parameter.
fn param(what: &'static str, value: &str) -> Result<String, RsyslogValueError> {
    quote_rsyslog_param(value).ok_or(RsyslogValueError { what })
}

/// The audit forwarding config ([`AUDIT_RSYSLOG_CONF`]).
pub fn render_audit_rsyslog_conf(c: &AuditRsyslogConfig<'_>) -> Result<String, RsyslogValueError> {
    let files = param("log directory", &format!("{}/*.log", c.log_directory))?;
    let endpoint = quoted("endpoint_id", c.endpoint_id)?;
    let project = quoted("project_id", c.project_id)?;
    let host = param("collector host", &c.target.host)?;
    let port = param("collector port", &c.target.port.to_string())?;
    let tls = if c.tls { "\"true\"" } else { "\"false\"" };
    let mut out = String::new();
    let w = &mut out;
    // Writing into a String cannot fail.
    let _ = writeln!(
        w,
        "# Written by compute_ctl: pgaudit files forwarded to the collector."
    );
    let _ = writeln!(w, "module(load=\"imfile\")");
    let _ = writeln!(
        w,
        "# An entry starts with its timestamp (log_line_prefix of the files)."
    );
    let _ = writeln!(
        w,
        "input(type=\"imfile\" File={files} Tag=\"pgaudit_log\" Severity=\"info\" \
         Facility=\"local5\"\n  startmsg.regex=\"^[[:digit:]]{{4}}-[[:digit:]]{{2}}-\
         [[:digit:]]{{2}} [[:digit:]]{{2}}:[[:digit:]]{{2}}:[[:digit:]]{{2}}.\
         [[:digit:]]{{3}} GMT,\")"
    );
    let work = param("work directory", c.work_directory)?;
    let ca = param("CA file", RSYSLOG_CA_FILE)?;
    let _ = writeln!(
        w,
        "global(workDirectory={work} DefaultNetstreamDriverCAFile={ca})"
    );
    let _ = writeln!(w, "set $.remote_syslog_tls = {tls};");
    let _ = writeln!(w, "set $.json_log!endpoint_id = {endpoint};");
    let _ = writeln!(w, "set $.json_log!project_id = {project};");
    let _ = writeln!(w, "set $.json_log!msg = $msg;");
    let _ = writeln!(
        w,
        "template(name=\"PgAuditLog\" type=\"string\"\n  \
         string=\"<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% - - - - %$.json_log%\")"
    );
    let action = format!(
        "action(type=\"omfwd\" target={host} port={port} protocol=\"tcp\" \
         template=\"PgAuditLog\"\n      queue.type=\"linkedList\" queue.size=\"1000\" \
         action.ResumeRetryCount=\"10\""
    );
    let _ = writeln!(w, "if ( $syslogtag == 'pgaudit_log' ) then {{");
    let _ = writeln!(w, "  if ( $.remote_syslog_tls == 'true' ) then {{");
    let _ = writeln!(
        w,
        "    {action}\n      StreamDriver=\"gtls\" StreamDriverMode=\"1\" \
         StreamDriverAuthMode=\"x509/name\"\n      StreamDriverPermittedPeers={host} \
         StreamDriver.CheckExtendedKeyPurpose=\"on\"\n      \
         StreamDriver.PermitExpiredCerts=\"off\")"
    );
    let _ = writeln!(w, "    stop");
    let _ = writeln!(w, "  }} else {{");
    let _ = writeln!(w, "    {action})");
    let _ = writeln!(w, "    stop");
    let _ = writeln!(w, "  }}");
    let _ = writeln!(w, "}}");
    Ok(out)
}

/// The log export config ([`POSTGRES_LOGS_CONF`]) forwarding the server's syslog output to
/// `target`.
pub fn render_postgres_logs_conf(target: &SyslogTarget) -> Result<String, RsyslogValueError> {
    let host = param("logs_export_host", &target.host)?;
    let port = param("logs_export_host port", &target.port.to_string())?;
    Ok(format!(
        "# Written by compute_ctl: the server's syslog output (logs_export_host).\n\
         if $programname == 'postgres' then {{\n    \
         action(type=\"omfwd\" target={host} port={port} protocol=\"tcp\"\n           \
         template=\"RSYSLOG_SyslogProtocol23Format\" action.resumeRetryCount=\"3\"\n           \
         queue.type=\"linkedList\" queue.size=\"1000\")\n    \
         stop\n\
         }}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_targets() {
        let t = |host: &str, port| SyslogTarget {
            host: host.to_owned(),
            port,
        };
        assert_eq!(audit_target(None, None), Ok(None));
        assert_eq!(audit_target(Some(""), Some("")), Ok(None));
        assert_eq!(
            audit_target(Some("plain.tld:5555"), None),
            Ok(Some((t("plain.tld", 5555), false)))
        );
        assert_eq!(
            audit_target(Some("plain.tld:5555"), Some("tls.tld:5556")),
            Ok(Some((t("tls.tld", 5556), true)))
        );
        assert_eq!(
            audit_target(Some(""), Some("tls.tld:5556")),
            Ok(Some((t("tls.tld", 5556), true)))
        );
        assert!(audit_target(Some("plain"), None).is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        let target = SyslogTarget {
            host: "h".to_owned(),
            port: 1,
        };
        let config = AuditRsyslogConfig {
            log_directory: "/pgdata/log",
            endpoint_id: "ep\n",
            project_id: "p",
            target: &target,
            tls: false,
            work_directory: RSYSLOG_WORK_DIRECTORY,
        };
        assert_eq!(
            render_audit_rsyslog_conf(&config),
            Err(RsyslogValueError {
                what: "endpoint_id"
            })
        );
    }
}
