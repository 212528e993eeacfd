//! The embedded cache on moka, with a time to live chosen per entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache as MokaInner;
use moka::ops::compute::{CompResult, Op};

use super::{Cache, CacheError, Fence, Lookup};

/// A value, or (after an invalidation) only the key's generation.
#[derive(Clone)]
struct Entry {
    value: Option<Arc<Vec<u8>>>,
    generation: u64,
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
            .and_then(|entry| entry.value.map(|value| value.as_ref().clone())))
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        self.entries
            .insert(
                key.to_string(),
                Entry {
                    value: Some(Arc::new(value)),
                    generation: 0,
                    ttl,
                },
            )
            .await;
        Ok(())
    }

    async fn lookup(&self, key: &str) -> Result<Lookup, CacheError> {
        Ok(match self.entries.get(key).await {
            Some(Entry {
                value: Some(value), ..
            }) => Lookup::Hit(value.as_ref().clone()),
            Some(entry) => Lookup::Miss(Fence(entry.generation)),
            None => Lookup::Miss(Fence(0)),
        })
    }

    async fn fill(
        &self,
        key: &str,
        fence: Fence,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        // Compared and stored under the entry's lock: an invalidation cannot slip in between.
        let value = Arc::new(value);
        let outcome = self
            .entries
            .entry_by_ref(key)
            .and_compute_with(|current| {
                let generation = current.map_or(0, |entry| entry.value().generation);
                let op = if generation == fence.0 {
                    Op::Put(Entry {
                        value: Some(value),
                        generation,
                        ttl,
                    })
                } else {
                    Op::Nop
                };
                std::future::ready(op)
            })
            .await;
        Ok(matches!(
            outcome,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        ))
    }

    async fn invalidate(&self, key: &str, fence_ttl: Duration) -> Result<(), CacheError> {
        self.entries
            .entry_by_ref(key)
            .and_compute_with(|current| {
                let generation = current.map_or(0, |entry| entry.value().generation);
                std::future::ready(Op::Put(Entry {
                    value: None,
                    generation: generation + 1,
                    ttl: fence_ttl,
                }))
            })
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
