//! Pure types and rules: no I/O. Values such as [`contact::Email`] and [`contact::Phone`] are valid
//! by construction.

pub mod contact;
pub mod data_security;
pub mod error;
pub mod location;
pub mod membership;
pub mod org;
pub mod role;
pub mod rules;
pub mod user;

pub use error::{DomainError, DomainResult, ErrorCode, RuleError};
