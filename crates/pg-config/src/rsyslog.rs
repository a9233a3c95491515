//! The rsyslog configuration files compute_ctl writes for audit logging and log export, and
//! the `host:port` targets they forward to: pure rendering, every value spelled through
//! [`pg_quote::quote_rsyslog_string`] and [`pg_quote::quote_rsyslog_param`] after strict validation of hosts and ports.
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
use std::net::{Ipv4Addr, Ipv6Addr};

use pg_quote::{quote_rsyslog_param, quote_rsyslog_string};

/// File name of the audit forwarding config in the rsyslog config directory.
pub const AUDIT_RSYSLOG_CONF: &str = "compute_audit_rsyslog.conf";

/// File name of the log export config in the rsyslog config directory.
pub const POSTGRES_LOGS_CONF: &str = "postgres_logs.conf";

/// Where rsyslog keeps its state files (how far each audit file was read), as upstream.
pub const RSYSLOG_WORK_DIRECTORY: &str = "/var/log/rsyslog";

/// The CA bundle rsyslog checks a TLS collector's certificate against, as upstream.
pub const RSYSLOG_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A syslog collector: a host name, IPv4 address or IPv6 address, and a TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    /// The host: a DNS name, an IPv4 address, or an IPv6 address (without brackets).
    pub host: String,
    /// The TCP port, 1–65535.
    pub port: u16,
}

/// Why a `host:port` text is not a [`SyslogTarget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyslogTargetError {
    /// No `:port` (IPv6 addresses go in brackets: `[::1]:514`).
    #[error("{value:?}: expected host:port")]
    NotHostPort {
        /// The text.
        value: String,
    },
    /// The host is not a DNS name (labels of letters, digits and inner hyphens), an IPv4
    /// address or a bracketed IPv6 address.
    #[error("{value:?}: invalid host {host:?}")]
    InvalidHost {
        /// The text.
        value: String,
        /// Its host part.
        host: String,
    },
    /// The port is not a number in 1–65535.
    #[error("{value:?}: invalid port {port:?} (expected 1-65535)")]
    InvalidPort {
        /// The text.
        value: String,
        /// Its port part.
        port: String,
    },
}

/// Parses `host:port`, `ipv4:port` or `[ipv6]:port`.
///
/// ```
/// use pg_config::{SyslogTarget, parse_syslog_target};
/// assert_eq!(
///     parse_syslog_target("collector.example:514").unwrap(),
///     SyslogTarget { host: "collector.example".into(), port: 514 }
/// );
/// assert_eq!(parse_syslog_target("[::1]:6514").unwrap().host, "::1");
/// assert!(parse_syslog_target("collector.example").is_err());
/// ```
pub fn parse_syslog_target(value: &str) -> Result<SyslogTarget, SyslogTargetError> {
    let not_host_port = || SyslogTargetError::NotHostPort {
        value: value.to_owned(),
    };
    let (host, port, valid) = match value.strip_prefix('[') {
        Some(rest) => {
            let (host, port) = rest.split_once("]:").ok_or_else(not_host_port)?;
            (host, port, host.parse::<Ipv6Addr>().is_ok())
        }
        None => {
            let (host, port) = value.rsplit_once(':').ok_or_else(not_host_port)?;
            let valid = host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host);
            (host, port, valid)
        }
    };
    if !valid {
        return Err(SyslogTargetError::InvalidHost {
            value: value.to_owned(),
            host: host.to_owned(),
        });
    }
    let number = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()));
    let port = number.ok_or_else(|| SyslogTargetError::InvalidPort {
        value: value.to_owned(),
        port: port.to_owned(),
    })?;
    Ok(SyslogTarget {
        host: host.to_owned(),
        port,
    })
}

/// A DNS host name: at most 253 characters of dot-separated labels, each 1–63 ASCII letters,
/// digits and hyphens, not starting or ending with a hyphen; not all digits and dots (that
/// would be a malformed IPv4 address).
fn is_dns_name(host: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(label_ok)
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

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
    fn targets() {
        let check = |value: &str, expect: &str| {
            let got = match parse_syslog_target(value) {
                Ok(t) => format!("{} {}", t.host, t.port),
                Err(e) => format!("error: {e}"),
            };
            assert_eq!(got, expect, "{value:?}");
        };
        check("collector.host.tld:5555", "collector.host.tld 5555");
        check("10.0.0.1:5555", "10.0.0.1 5555");
        check(
            "[7e60:82ed:cb2e:d617:f904:f395:aaca:e252]:5555",
            "7e60:82ed:cb2e:d617:f904:f395:aaca:e252 5555",
        );
        check("localhost:1", "localhost 1");
        check(
            "collector.host.tld",
            r#"error: "collector.host.tld": expected host:port"#,
        );
        check(":5555", r#"error: ":5555": invalid host """#);
        check(
            "collector.host.tld:90001",
            r#"error: "collector.host.tld:90001": invalid port "90001" (expected 1-65535)"#,
        );
        check(
            "h:0",
            r#"error: "h:0": invalid port "0" (expected 1-65535)"#,
        );
        check(
            "h:+5",
            r#"error: "h:+5": invalid port "+5" (expected 1-65535)"#,
        );
        check(
            "-collector.host.tld:5555",
            r#"error: "-collector.host.tld:5555": invalid host "-collector.host.tld""#,
        );
        check(
            "collector.host.tld:::5555",
            r#"error: "collector.host.tld:::5555": invalid host "collector.host.tld::""#,
        );
        check(
            "999.1.1.1:5",
            r#"error: "999.1.1.1:5": invalid host "999.1.1.1""#,
        );
        check("[::1:5", r#"error: "[::1:5": expected host:port"#);
        check("[zz]:5", r#"error: "[zz]:5": invalid host "zz""#);
        check("a\"b:5", r#"error: "a\"b:5": invalid host "a\"b""#);
        check("a b:5", r#"error: "a b:5": invalid host "a b""#);
        check("a\n:5", r#"error: "a\n:5": invalid host "a\n""#);
    }

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
