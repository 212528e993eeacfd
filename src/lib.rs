//! userorg: the Sunbird Lern UserOrg service re-implemented on ractor actors behind axum.
//!
//! # Layout
//! Calls run one way, `http -> services -> actors -> engines -> domain` (`tests/layers.rs`
//! holds the table and fails on a back-edge); `docs/ARCHITECTURE.md` draws it.
//! - [`app`]: `Application::build(settings)` wires everything and binds the listeners.
//! - [`config`]: layered, typed settings.
//! - [`engines`]: the resolver building the store, search and cache engines from the settings.
//! - [`http`]: routes, the Sunbird envelope, extractors, gateway aliases, the access log.
//! - [`services`]: use cases over the engines and the actor clients: validation, authorisation
//!   (the caller resolved once per request), reads, the search pipeline, health.
//! - [`actors`]: the data-driven supervision tree, the user and organisation owners (keyed
//!   factories), the indexer (an outbox consumer) and their typed clients.
//! - [`domain`]: pure types and rules: the typed records (`UserRecord`, `OrgRecord`,
//!   memberships, role grants), commands, and the Sunbird error table.
//! - [`storage`]: the store trait and its contract, the redb engine, typed reads, the outbox
//!   consumer loop, read-modify-write, the read-through cache decorator.
//! - [`cache`]: the cache trait and its moka and Redis engines.
//! - [`search`]: the Sunbird search DSL, the search index trait, the index documents, the
//!   tantivy engine.
//! - [`crypto`]: PII sealing and the blind index.
//! - [`auth`]: offline RS256 token verification and the local signing key.
//! - [`clock`]: time, injectable.
//! - [`seed`]: what a fresh data dir is given on first start.
//!
//! Test support (fault-injecting decorators, conformance suites, external test tiers) is
//! compiled only for tests and with the `testing` feature.

pub mod actors;
pub mod app;
pub mod auth;
pub mod blob;
pub mod cache;
pub mod clock;
pub mod config;
pub mod content;
pub mod crypto;
pub mod domain;
pub mod engines;
pub mod http;
pub mod notify;
pub mod search;
pub mod seed;
pub mod services;
pub mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod test_tiers;
