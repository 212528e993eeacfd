//! Typed reads of request fields with Sunbird's error messages for wrong types.

use serde_json::{Map, Value};

use crate::domain::DomainError;

/// A request body: the `request` object of the Sunbird envelope.
pub type Body = Map<String, Value>;

/// A string field: absent or null gives `None`; another type is a data type error.
pub fn opt_str(body: &Body, field: &str) -> Result<Option<String>, DomainError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(DomainError::data_type(field, "String")),
    }
}

/// A non-blank string field, trimmed; blank counts as absent.
pub fn opt_nonblank(body: &Body, field: &str) -> Result<Option<String>, DomainError> {
    Ok(opt_str(body, field)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// A mandatory, non-blank string field.
pub fn required_str(body: &Body, field: &str) -> Result<String, DomainError> {
    opt_nonblank(body, field)?.ok_or_else(|| DomainError::mandatory_missing(field))
}

/// A boolean field; Sunbird clients sometimes send "true"/"false" strings.
pub fn opt_bool(body: &Body, field: &str) -> Result<Option<bool>, DomainError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(DomainError::data_type(field, "Boolean")),
    }
}

/// A list of strings: absent gives `None`; a non-list is "should be List".
pub fn opt_str_list(body: &Body, field: &str) -> Result<Option<Vec<String>>, DomainError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(DomainError::data_type(field, "List of String")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(DomainError::data_type(field, "List")),
    }
}

/// True when the field is present with a non-null value (Sunbird's "not allowed" checks).
pub fn present(body: &Body, field: &str) -> bool {
    body.get(field).is_some_and(|v| !v.is_null())
}

/// The string value of a field in a stored document, if it is a non-empty string.
pub fn doc_str<'a>(doc: &'a Value, field: &str) -> Option<&'a str> {
    doc.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `{"response": "SUCCESS"}`, the usual result of a write.
pub fn success() -> Map<String, Value> {
    let mut result = Map::new();
    result.insert("response".into(), Value::String("SUCCESS".into()));
    result
}

/// `{"response": value}`.
pub fn response(value: Value) -> Map<String, Value> {
    let mut result = Map::new();
    result.insert("response".into(), value);
    result
}
