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

/// A key's invalidation generation, as a miss saw it: a fill made with it is refused once the
/// key has been invalidated since (see [`Cache::fill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence(pub u64);

/// What [`Cache::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(Vec<u8>),
    Miss(Fence),
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    /// Stores `value` under `key` for at most `ttl`.
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<(), CacheError>;

    /// The value, or on a miss the key's generation to fill it with.
    async fn lookup(&self, key: &str) -> Result<Lookup, CacheError>;
    /// Stores `value` only if `key` was not invalidated since the miss that gave `fence`, and
    /// answers whether it did. A reader that loaded a row before another instance's commit and
    /// fills after that commit's invalidation is refused, so the old row is not served again.
    async fn fill(
        &self,
        key: &str,
        fence: Fence,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, CacheError>;
    /// Drops the value and moves the key to its next generation, remembered for `fence_ttl`
    /// (longer than any read between a miss and its fill).
    async fn invalidate(&self, key: &str, fence_ttl: Duration) -> Result<(), CacheError>;

    async fn healthy(&self) -> bool;
}
