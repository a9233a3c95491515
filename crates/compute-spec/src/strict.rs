//! Parsing JSON text into a `serde_json::Value` that refuses duplicate object keys.
//!
//! serde_json's own `Value` keeps the last of two equal keys silently, while upstream's typed
//! parsing rejects a repeated field. Rejecting here keeps both behaviours aligned and locates
//! the repeated key (serde_json reports the line:column where the visitor failed). Nesting is
//! still bounded by serde_json's recursion limit.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value without duplicate keys in any object.
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{key}` in an object (a repeated field is rejected by compute_ctl)"
                )));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_keys_anywhere() {
        let parse = |text: &str| serde_json::from_str::<StrictValue>(text).map(|v| v.0);
        assert_eq!(
            parse(r#"{"a": [1, -2, 2.5, "s", null, true, {"b": {}}]}"#).unwrap(),
            serde_json::json!({"a": [1, -2, 2.5, "s", null, true, {"b": {}}]})
        );
        let err = parse("{\"a\": 1,\n \"x\": [{\"k\": 1, \"k\": 2}]}").unwrap_err();
        assert!(err.to_string().starts_with("duplicate key `k`"), "{err}");
        assert_eq!((err.line(), err.column()), (2, 19));
        assert!(parse(&"[".repeat(1000)).is_err()); // recursion limit, no overflow
    }
}
