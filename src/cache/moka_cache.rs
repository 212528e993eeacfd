//! The embedded cache on moka, with a time to live chosen per entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache as MokaInner;

use super::{Cache, CacheError};

#[derive(Clone)]
struct Entry {
    value: Arc<Vec<u8>>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Entry,
        _created: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _updated: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

pub struct MokaCache {
    entries: MokaInner<String, Entry>,
}

impl MokaCache {
    pub fn new(max_entries: u64) -> MokaCache {
        MokaCache {
            entries: MokaInner::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

#[async_trait]
impl Cache for MokaCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self
            .entries
            .get(key)
            .await
            .map(|entry| entry.value.as_ref().clone()))
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        self.entries
            .insert(
                key.to_string(),
                Entry {
                    value: Arc::new(value),
                    ttl,
                },
            )
            .await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.entries.invalidate(key).await;
        Ok(())
    }

    async fn healthy(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn moka_cache_passes_the_conformance_suite() {
        super::super::conformance::run_cache_conformance(Arc::new(MokaCache::new(10_000))).await;
    }
}
