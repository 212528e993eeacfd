//! userorg: the Sunbird Lern UserOrg service re-implemented on ractor actors behind axum.
//!
//! # Layout
//! - [`config`]: layered, typed settings.
//! - [`domain`]: pure types and rules, and the Sunbird error table.
//! - [`crypto`]: PII sealing and the blind index.

pub mod config;
pub mod crypto;
pub mod domain;
pub mod storage;
