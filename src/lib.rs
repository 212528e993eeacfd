//! userorg: the Sunbird Lern UserOrg service re-implemented on ractor actors behind axum.
//!
//! # Layout
//! - [`app`]: `Application::build(settings)` wires everything and binds the listeners.
//! - [`config`]: layered, typed settings.
//! - [`http`]: routes, the Sunbird envelope, extractors, authentication, aliases.
//! - [`services`]: use cases (validation, authorisation, reads, search) over the traits.
//! - [`actors`]: the supervisor, the user owners (keyed factory) and the indexer.
//! - [`domain`]: pure types and rules, and the Sunbird error table.
//! - [`storage`]: the store trait, the redb engine, the read-through cache decorator.
//! - [`cache`]: the cache trait and its moka engine.
//! - [`search`]: the Sunbird search DSL, the search index trait and the tantivy engine.
//! - [`crypto`]: PII sealing and the blind index.
//! - [`auth`]: offline RS256 token verification and the local signing key.
//! - [`seed`]: what a fresh data dir is given on first start.

pub mod actors;
pub mod app;
pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod engines;
pub mod http;
pub mod search;
pub mod seed;
pub mod services;
pub mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod test_tiers;
