//! A `host:port` address of a syslog collector (the spec's `logs_export_host`, compute_ctl's
//! audit collector): parsed strictly, so that what reaches an rsyslog config is a DNS name, an
//! IPv4 address or an IPv6 address, and a port.

// `core::net`: the address types only (no sockets), so compute-spec stays free of I/O.
use core::net::{Ipv4Addr, Ipv6Addr};

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
/// use compute_spec::{SyslogTarget, parse_syslog_target};
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
}
