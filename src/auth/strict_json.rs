//! JSON parsing that rejects duplicate object keys.
//!
//! `serde_json::Value` keeps the last of two equal keys, other parsers keep the first. A token
//! with `{"sub":"victim","sub":"attacker"}` could then mean one user to us and another to a proxy
//! or audit tool reading the same token (a parser differential), so JWT headers and claims with a
//! repeated key are rejected outright, at any depth.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as a JSON object, rejecting duplicate keys at any depth.
///
/// Returns `None` for invalid JSON, a non-object document, or a duplicate key; callers map that to
/// one "malformed" error because the distinction is of no use to anyone but an attacker.
pub(crate) fn parse_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    match value.0 {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a json value without duplicate object keys")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(deserializer).map(|value| value.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom("duplicate object key"));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_object;

    #[test]
    fn parses_objects_and_rejects_duplicates_at_any_depth() {
        let map = parse_object(br#"{"a":1,"b":[1,2.5,"x",null,true],"c":{"d":{}}}"#);
        assert_eq!(map.map(|m| m.len()), Some(3));
        assert!(parse_object(br#"{"sub":"a","sub":"b"}"#).is_none());
        assert!(parse_object(br#"{"a":{"x":1,"x":2}}"#).is_none());
        assert!(parse_object(br#"{"a":[{"x":1,"x":2}]}"#).is_none());
    }

    #[test]
    fn rejects_non_objects_and_trailing_data() {
        assert!(parse_object(b"[1,2]").is_none());
        assert!(parse_object(b"\"x\"").is_none());
        assert!(parse_object(b"{} {}").is_none());
        assert!(parse_object(b"{").is_none());
        assert!(parse_object(b"").is_none());
    }
}
