//! The cache trait: a lossy key/value store with per-entry time to live. The embedded engine is
//! moka (in process); Redis implements the same trait for deployments with several instances.
//! Nothing may depend on the cache for correctness: a miss or an error falls back to the store.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod moka_cache;
pub mod rate;
pub mod redis_cache;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(String),
}

/// Longest wait for one Redis command before the caller falls back (to the store, or to
/// counting rate limits in process).
const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);

fn unavailable(error: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(error.to_string())
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    /// Stores `value` under `key` for at most `ttl`.
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    async fn healthy(&self) -> bool;
}
