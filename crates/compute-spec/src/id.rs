//! `TenantId` and `TimelineId`: 128-bit identifiers written as 32 lower-case hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a 32-hex-digit identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: expected 32 hexadecimal digits")]
pub struct IdParseError {
    /// Which identifier was being parsed ("tenant id" or "timeline id").
    pub kind: &'static str,
    /// The text that failed to parse.
    pub input: String,
}

fn parse_hex16(kind: &'static str, s: &str) -> Result<[u8; 16], IdParseError> {
    let err = || IdParseError {
        kind,
        input: s.to_owned(),
    };
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| err())?;
    }
    Ok(out)
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 16]);

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex16($kind, s).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": "^[0-9A-Fa-f]{32}$",
                    "description": concat!("A ", $kind, ": 32 hexadecimal digits."),
                })
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// A Neon tenant: the unit of isolation on the pageserver. Lower-case hex on output;
    /// either case is accepted on input.
    TenantId,
    "tenant id"
);
hex_id!(
    /// A branch of a tenant's history. Lower-case hex on output; either case accepted on input.
    TimelineId,
    "timeline id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let check = |input: &str, expect: Option<&str>| {
            let got = input.parse::<TenantId>().ok().map(|t| t.to_string());
            assert_eq!(got.as_deref(), expect, "input {input:?}");
            let got = input.parse::<TimelineId>().ok().map(|t| t.to_string());
            assert_eq!(got.as_deref(), expect, "input {input:?}");
        };
        check(
            "b0554b632bd4d547a63b86c3630317e8",
            Some("b0554b632bd4d547a63b86c3630317e8"),
        );
        check(
            "B0554B632BD4D547A63B86C3630317E8",
            Some("b0554b632bd4d547a63b86c3630317e8"),
        );
        check("b0554b632bd4d547a63b86c3630317e", None);
        check("b0554b632bd4d547a63b86c3630317e8a", None);
        check("TENANT_ID", None);
        check("+0554b632bd4d547a63b86c3630317e8", None);
        check("", None);
    }
}
