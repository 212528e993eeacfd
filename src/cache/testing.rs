//! A cache that is always down, for the fail-open tests: nothing may depend on the cache for
//! correctness, so a store behind it must behave exactly as without it.

use std::time::Duration;

use async_trait::async_trait;

use super::{Cache, CacheError, Fence, Lookup};

#[derive(Debug, Default)]
pub struct FailingCache;

#[async_trait]
impl Cache for FailingCache {
    async fn get(&self, _key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Err(CacheError::Unavailable("injected: cache down".into()))
    }

    async fn set(&self, _key: &str, _value: Vec<u8>, _ttl: Duration) -> Result<(), CacheError> {
        Err(CacheError::Unavailable("injected: cache down".into()))
    }

    async fn delete(&self, _key: &str) -> Result<(), CacheError> {
        Err(CacheError::Unavailable("injected: cache down".into()))
    }

    async fn lookup(&self, _key: &str) -> Result<Lookup, CacheError> {
        Err(CacheError::Unavailable("injected: cache down".into()))
    }

    async fn fill(
        &self,
        _key: &str,
        _fence: Fence,
        _value: Vec<u8>,
        _ttl: Duration,
    ) -> Result<bool, CacheError> {
        Err(CacheError::Unavailable("injected: cache down".into()))
    }

    async fn invalidate(&self, _key: &str, _fence_ttl: Duration) -> Result<(), CacheError> {
        Err(CacheError::Unavailable("injected: cache down".into()))
    }

    async fn healthy(&self) -> bool {
        false
    }
}
