//! The `pg_hba.conf` access line compute_ctl adds, as a pure edit of the existing text.
//!
//! compute_ctl adds one line so that clients can log in from anywhere with a password:
//! [`HBA_ACCESS_LINE`]. It is added once: an exact whole-line match means "already there".
//!
//! Nothing else is needed for compute_ctl's own superuser connection (`--connstr`, over
//! loopback or the unix socket): `pg_hba.conf` is read top-down and the first matching line
//! decides, and ours is appended *after* what the data directory already has.
//!
//! - Standalone mode: compute_ctl runs `initdb --auth=trust` (as `test_postgres::initdb`
//!   does), whose file trusts the unix socket, `127.0.0.1/32` and `::1/128` (and replication
//!   on them). Those lines come first, so compute_ctl connects without a password, while
//!   every other address reaches our line and needs the role's password (`md5` in pg_hba also
//!   accepts SCRAM verifiers).
//! - From a basebackup: the `pg_hba.conf` is whatever the pageserver ships; compute_ctl relies
//!   on it letting the local superuser in, as upstream does. The test pageserver must ship one
//!   that trusts loopback.
//!
//! A file that has no line letting the superuser in locally is not repaired here: that is a
//! decision about authentication this crate does not make.

use std::borrow::Cow;

/// The line compute_ctl adds (tabs as upstream writes them).
pub const HBA_ACCESS_LINE: &str = "host\tall\t\tall\t\tall\t\tmd5";

/// `existing` with [`HBA_ACCESS_LINE`] appended, or `existing` unchanged (borrowed) when a line
/// equal to it is already present. The result ends with a newline when it was changed.
pub fn with_hba_access_line(existing: &str) -> Cow<'_, str> {
    if existing.lines().any(|line| line == HBA_ACCESS_LINE) {
        return Cow::Borrowed(existing);
    }
    let mut out = String::with_capacity(existing.len() + HBA_ACCESS_LINE.len() + 2);
    out.push_str(existing);
    if !existing.is_empty() && !existing.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(HBA_ACCESS_LINE);
    out.push('\n');
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_once() {
        let check = |existing: &str, expect: &str, changed: bool| {
            let out = with_hba_access_line(existing);
            assert_eq!(out, expect, "{existing:?}");
            assert_eq!(matches!(out, Cow::Owned(_)), changed, "{existing:?}");
            // Idempotent: a second pass changes nothing.
            assert!(matches!(with_hba_access_line(&out), Cow::Borrowed(_)));
        };
        let line = HBA_ACCESS_LINE;
        check("", &format!("{line}\n"), true);
        check(
            "local all all trust\n",
            &format!("local all all trust\n{line}\n"),
            true,
        );
        check(
            "local all all trust",
            &format!("local all all trust\n{line}\n"),
            true,
        );
        check(
            &format!("a\n{line}\nb\n"),
            &format!("a\n{line}\nb\n"),
            false,
        );
        check(&format!("a\n{line}"), &format!("a\n{line}"), false);
        check(
            &format!("a\r\n{line}\r\n"),
            &format!("a\r\n{line}\r\n"),
            false,
        );
        // Not an exact match: same words, other spacing, or commented out.
        check(
            "host all all all md5\n",
            &format!("host all all all md5\n{line}\n"),
            true,
        );
        check(&format!("#{line}\n"), &format!("#{line}\n{line}\n"), true);
    }
}
