//! Pure types and rules: no I/O. Values such as [`contact::Email`] and [`contact::Phone`] are valid
//! by construction.

pub mod bulk;
pub mod consent;
pub mod consumer;
pub mod contact;
pub mod data_security;
pub mod error;
pub mod framework;
pub mod location;
pub mod membership;
pub mod merge;
pub mod notification;
pub mod org;
pub mod otp;
pub mod role;
pub mod rules;
pub mod setting;
pub mod signin;
pub mod user;
pub mod validation;

pub use error::{DomainError, DomainResult, ErrorCode, RuleError};

use serde_json::Value;

/// A stored row as a typed record, and back. Records with an open-ended part (users,
/// organisations) read their typed fields without serde's `flatten`, which buffers every field
/// and made reads measurably slower, and keep the other fields of the row as given.
pub trait Record: Sized {
    /// The stored JSON document (always an object).
    fn to_doc(&self) -> Value;
    /// The record of a stored document, taking the document's fields.
    fn from_value(doc: Value) -> Result<Self, serde_json::Error>;
    /// The record of a borrowed document; `None` when it is not one.
    fn from_doc(doc: &Value) -> Option<Self> {
        Self::from_value(doc.clone()).ok()
    }
}

/// A record whose typed fields are the whole row.
macro_rules! plain_record {
    ($($record:ty),* $(,)?) => {$(
        impl $crate::domain::Record for $record {
            fn to_doc(&self) -> serde_json::Value {
                serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
            }
            fn from_value(doc: serde_json::Value) -> Result<Self, serde_json::Error> {
                serde_json::from_value(doc)
            }
        }
    )*};
}

/// A record with typed fields (`FIELDS`, the stored names) and an open-ended map (`$open`)
/// holding every other field of the row.
macro_rules! open_record {
    ($record:ty, $open:ident, $fields:expr) => {
        impl $crate::domain::Record for $record {
            fn to_doc(&self) -> serde_json::Value {
                let mut doc = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
                if let serde_json::Value::Object(map) = &mut doc {
                    for (field, value) in &self.$open {
                        // A typed field always wins: the open map never shadows one.
                        map.entry(field.clone()).or_insert_with(|| value.clone());
                    }
                }
                doc
            }
            fn from_value(doc: serde_json::Value) -> Result<Self, serde_json::Error> {
                use serde::Deserialize;
                let mut record = <$record>::deserialize(&doc)?;
                if let serde_json::Value::Object(map) = doc {
                    record.$open = map
                        .into_iter()
                        .filter(|(field, _)| !$fields.contains(&field.as_str()))
                        .collect();
                }
                Ok(record)
            }
        }
    };
}

pub(crate) use {open_record, plain_record};
