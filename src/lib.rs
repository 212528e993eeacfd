//! userorg: the Sunbird Lern UserOrg service re-implemented on ractor actors behind axum.
//!
//! # Layout
//! - [`config`]: layered, typed settings.
//! - [`domain`]: pure types and rules, and the Sunbird error table.
//! - [`crypto`]: PII sealing and the blind index.
//! - [`auth`]: offline RS256 token verification and the local signing key.
//! - [`storage`]: the store trait, the redb engine, the cache decorator.
//! - [`search`]: the Sunbird search DSL, the search index trait and the tantivy engine.

pub mod auth;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod search;
pub mod storage;
