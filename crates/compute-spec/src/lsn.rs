//! `Lsn`: a PostgreSQL write-ahead-log position, written `X/Y` on the wire.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A WAL position. On the wire it is the string `"%X/%X"`: the high and low 32 bits in
/// upper-case hex. Parsing is tolerant: surrounding whitespace and lower-case hex are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The zero position, `0/0`: "no particular LSN" (latest) in basebackup and sync results.
    pub const INVALID: Lsn = Lsn(0);

    /// Whether this is `0/0`.
    pub fn is_invalid(self) -> bool {
        self.0 == 0
    }
}

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid LSN {input:?}: expected two hexadecimal numbers of at most 8 digits separated by '/', such as 0/16B3748"
)]
pub struct LsnParseError {
    /// The text that failed to parse.
    pub input: String,
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError {
            input: s.to_owned(),
        };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let half = |part: &str| {
            let part = part.trim();
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u32::from_str_radix(part, 16).map_err(|_| err())
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Lsn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Lsn".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": r"^\s*[0-9A-Fa-f]{1,8}\s*/\s*[0-9A-Fa-f]{1,8}\s*$",
            "description": "A WAL position: two hexadecimal numbers of at most 8 digits, `X/Y`.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let check = |input: &str, expect: Option<(u64, &str)>| {
            let got = input.parse::<Lsn>().ok().map(|l| (l.0, l.to_string()));
            assert_eq!(
                got,
                expect.map(|(v, s)| (v, s.to_owned())),
                "input {input:?}"
            );
        };
        check("0/0", Some((0, "0/0")));
        check("0/16B3748", Some((0x16B3748, "0/16B3748")));
        check(" 1/abcdef \n", Some(((1 << 32) | 0xabcdef, "1/ABCDEF")));
        check("FFFFFFFF/FFFFFFFF", Some((u64::MAX, "FFFFFFFF/FFFFFFFF")));
        check("100000000/0", None);
        check("0/", None);
        check("/0", None);
        check("0-0", None);
        check("0/0/0", None);
        check("+1/2", None);
        check("g/0", None);
        check("", None);
    }
}
