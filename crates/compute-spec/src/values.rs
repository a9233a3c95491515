//! Pure shape checks of single values: password hashes, identifiers, GUC values by vartype,
//! characters that could inject a line into a config file.

use base64::Engine;

/// What is wrong with an `encrypted_password`. Messages never contain the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashProblem {
    /// A valid md5 hash written without its `md5` prefix: accepted, but it never compares equal
    /// to what `pg_authid` stores.
    Md5WithoutPrefix,
    /// Not a valid hash; the reason.
    Invalid(String),
}

/// Checks an md5 (`md5` + 32 hex digits, or 32 hex digits alone) or SCRAM-SHA-256 verifier
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64, 32-byte keys).
pub(crate) fn check_password_hash(hash: &str) -> Result<(), HashProblem> {
    let is_hex32 = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = hash.strip_prefix("SCRAM-SHA-256$") {
        return check_scram(rest).map_err(HashProblem::Invalid);
    }
    if let Some(rest) = hash.strip_prefix("md5") {
        if is_hex32(rest) {
            return Ok(());
        }
        if is_hex32(hash) {
            // 32 hex digits that happen to start with "md5"? Impossible: 'm' is not hex.
            return Err(HashProblem::Md5WithoutPrefix);
        }
        return Err(HashProblem::Invalid(format!(
            "an md5 hash is `md5` followed by 32 hexadecimal digits; this one has {} characters after `md5`",
            rest.len()
        )));
    }
    if is_hex32(hash) {
        return Err(HashProblem::Md5WithoutPrefix);
    }
    Err(HashProblem::Invalid(
        "neither an md5 hash (`md5` + 32 hex digits) nor a SCRAM-SHA-256 verifier \
         (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`)"
            .to_owned(),
    ))
}

fn check_scram(rest: &str) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let shape =
        "a SCRAM-SHA-256 verifier is `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`";
    let (params, keys) = rest
        .split_once('$')
        .ok_or_else(|| format!("{shape}; the `$` before the keys is missing"))?;
    let (iterations, salt) = params
        .split_once(':')
        .ok_or_else(|| format!("{shape}; the `:` between iterations and salt is missing"))?;
    match iterations.parse::<u32>() {
        Ok(n) if n > 0 => {}
        _ => {
            return Err(format!(
                "{shape}; the iteration count is not a positive integer"
            ));
        }
    }
    if b64.decode(salt).map_or(true, |s| s.is_empty()) {
        return Err(format!("{shape}; the salt is not valid base64"));
    }
    let (stored, server) = keys
        .split_once(':')
        .ok_or_else(|| format!("{shape}; the `:` between StoredKey and ServerKey is missing"))?;
    for (what, key) in [("StoredKey", stored), ("ServerKey", server)] {
        match b64.decode(key) {
            Ok(bytes) if bytes.len() == 32 => {}
            Ok(bytes) => {
                return Err(format!(
                    "{shape}; the {what} decodes to {} bytes, not 32",
                    bytes.len()
                ));
            }
            Err(_) => return Err(format!("{shape}; the {what} is not valid base64")),
        }
    }
    Ok(())
}

/// PostgreSQL's limit on identifier length (NAMEDATALEN - 1).
pub(crate) const MAX_IDENTIFIER_BYTES: usize = 63;

/// The first character that must not appear in a value written into postgresql.conf (or
/// another line-oriented config file): control characters other than tab.
pub(crate) fn injection_char(value: &str) -> Option<(usize, char)> {
    value
        .char_indices()
        .find(|&(_, c)| (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}')
}

/// Describes a forbidden character for a message, e.g. `a newline (U+000A)`.
pub(crate) fn describe_char(c: char) -> String {
    let name = match c {
        '\n' => "a newline",
        '\r' => "a carriage return",
        '\0' => "a NUL byte",
        _ => "a control character",
    };
    format!("{name} (U+{:04X})", c as u32)
}

/// Whether `name` has the shape of a GUC name: identifiers separated by dots.
pub(crate) fn is_guc_name(name: &str) -> bool {
    // postgresql.conf's grammar (guc-file.l): ID or ID.ID, where ID is a letter or `_`
    // followed by letters, digits and `_`. `$` and a second dot are syntax errors there.
    // The `include` directives are not settings: a spec must never be able to write them.
    let is_id = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let is_directive = ["include", "include_if_exists", "include_dir"]
        .iter()
        .any(|d| name.eq_ignore_ascii_case(d));
    !is_directive
        && match name.split_once('.') {
            None => is_id(name),
            Some((class, rest)) => is_id(class) && is_id(rest),
        }
}

/// PostgreSQL's boolean spellings: unique prefixes of true/false/yes/no, on/off, 1/0.
pub(crate) fn is_pg_bool(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return false;
    }
    let prefix_of = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    prefix_of("true", 1)
        || prefix_of("false", 1)
        || prefix_of("yes", 1)
        || prefix_of("no", 1)
        || v == "on"
        || prefix_of("off", 2)
        || v == "1"
        || v == "0"
}

/// Units PostgreSQL accepts after numeric GUC values (memory and time).
pub(crate) const GUC_UNITS: &[&str] = &[
    "B", "kB", "MB", "GB", "TB", "us", "ms", "s", "min", "h", "d",
];

/// Splits `32MB` into the number and the unit (unit may be empty).
pub(crate) fn split_unit(value: &str) -> (&str, &str) {
    let v = value.trim();
    let at = v
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphabetic())
        .last()
        .map_or(v.len(), |(i, _)| i);
    // "0x1F" must not lose its hex digits to the unit: only split when the rest is a unit.
    let (number, unit) = v.split_at(at);
    (number.trim_end(), unit)
}

/// Whether `value` is a valid integer GUC value: decimal or hex, optionally fractional (rounded
/// by PostgreSQL), optionally followed by a memory or time unit.
pub(crate) fn is_pg_integer(value: &str) -> bool {
    let v = value.trim();
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    let (number, unit) = split_unit(v);
    (unit.is_empty() || GUC_UNITS.contains(&unit)) && is_decimal(number)
}

/// Whether `value` is a valid real GUC value, optionally followed by a unit.
pub(crate) fn is_pg_real(value: &str) -> bool {
    let (number, unit) = split_unit(value);
    if !unit.is_empty() && !GUC_UNITS.contains(&unit) {
        // "inf"/"nan" are accepted by strtod.
        return value.trim().parse::<f64>().is_ok();
    }
    is_decimal(number)
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = !(int.is_empty() && frac.is_empty()) && all_digits(int) && all_digits(frac);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes() {
        let check = |hash: &str, expect: &str| {
            let got = match check_password_hash(hash) {
                Ok(()) => "ok".to_owned(),
                Err(HashProblem::Md5WithoutPrefix) => "md5-without-prefix".to_owned(),
                Err(HashProblem::Invalid(why)) => why,
            };
            assert!(got.starts_with(expect), "{hash:?}: {got}");
        };
        check("md5b093c0d3b281ba6da1eacc608620abd8", "ok");
        check("b093c0d3b281ba6da1eacc608620abd8", "md5-without-prefix");
        check("md5b093c0d3b281ba6da1eacc608620abd", "an md5 hash is");
        check("md5b093c0d3b281ba6da1eacc608620abdz", "an md5 hash is");
        check("hunter2", "neither");
        check("", "neither");
        check(
            "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$\
             AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "ok",
        );
        check(
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "a SCRAM-SHA-256 verifier is",
        );
        check("SCRAM-SHA-256$0:c2FsdA==$a:b", "a SCRAM");
        check("SCRAM-SHA-256$4096:c2FsdA==", "a SCRAM");
        check("SCRAM-SHA-256$4096:!!$a:b", "a SCRAM");
    }

    #[test]
    fn guc_values() {
        for v in ["on", "off", "true", "t", "FALSE", "ye", "n", "1", "0", "of"] {
            assert!(is_pg_bool(v), "{v}");
        }
        for v in ["o", "maybe", "", "2", "onn"] {
            assert!(!is_pg_bool(v), "{v}");
        }
        for v in [
            "0", "-1", "55433", "32MB", "5s", "1.5GB", "0x1F", " 10 min", "128kB",
        ] {
            assert!(is_pg_integer(v), "{v}");
        }
        for v in ["", "x", "32 parsecs", "1e", "0x", "MB"] {
            assert!(!is_pg_integer(v), "{v}");
        }
        for v in ["0.5", "1e10", "-3", ".5", "5ms", "inf"] {
            assert!(is_pg_real(v), "{v}");
        }
        for v in ["", "a", "1.2.3", "."] {
            assert!(!is_pg_real(v), "{v}");
        }
        for v in ["fsync", "neon.tenant_id", "test.escaping", "_x1"] {
            assert!(is_guc_name(v), "{v}");
        }
        for v in [
            "",
            "a b",
            "a=b",
            "x\ny",
            "1abc",
            "a..b",
            "neon.",
            "a.b.c",
            "a$b",
            "include",
            "Include_If_Exists",
            "include_dir",
        ] {
            assert!(!is_guc_name(v), "{v}");
        }
        assert_eq!(injection_char("a\nb"), Some((1, '\n')));
        assert_eq!(injection_char("tab\tok"), None);
    }
}
