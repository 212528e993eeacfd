//! The cache on Redis, for deployments of several instances that must share invalidations. The
//! connection manager reconnects by itself; every command has a deadline, and a failure is
//! reported to the read-through decorator, which then reads the store: Redis being down slows
//! reads, it never fails them.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{COMMAND_TIMEOUT, Cache, CacheError, Fence, Lookup, unavailable};

pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisCache {
    /// Connects to `url` (`redis://host:port/db`); every key is stored under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCache, CacheError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        Ok(RedisCache {
            connection,
            prefix: prefix.to_string(),
        })
    }

    /// A rate counter on the same connection and under the same prefix.
    pub fn rate_counter(&self) -> super::rate::RedisRateCounter {
        super::rate::RedisRateCounter::new(self.connection.clone(), &self.prefix)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Where a key's invalidation generation is counted.
    fn generation_key(&self, key: &str) -> String {
        format!("{}{key}#generation", self.prefix)
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Stores the value only while the key's generation is the one its miss saw (absent = 0).
/// Sent as text with EVAL, as the rate counter's script is: nothing to reload after a restart.
const FILL_SCRIPT: &str = r"
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// Drops the value and moves the key to its next generation, kept for ARGV[1] ms.
const INVALIDATE_SCRIPT: &str = r"
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
";

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(COMMAND_TIMEOUT, connection.get(self.key(key)))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(
            COMMAND_TIMEOUT,
            connection.pset_ex::<_, _, ()>(self.key(key), value, millis(ttl)),
        )
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(COMMAND_TIMEOUT, connection.del::<_, ()>(self.key(key)))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
    }

    async fn lookup(&self, key: &str) -> Result<Lookup, CacheError> {
        let mut connection = self.connection.clone();
        // One round trip for both: the value, and the generation a miss fills with.
        let (value, generation): (Option<Vec<u8>>, Option<u64>) = tokio::time::timeout(
            COMMAND_TIMEOUT,
            redis::cmd("MGET")
                .arg(self.key(key))
                .arg(self.generation_key(key))
                .query_async(&mut connection),
        )
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
        Ok(match value {
            Some(value) => Lookup::Hit(value),
            None => Lookup::Miss(Fence(generation.unwrap_or(0))),
        })
    }

    async fn fill(
        &self,
        key: &str,
        fence: Fence,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("EVAL");
        command
            .arg(FILL_SCRIPT)
            .arg(2)
            .arg(self.key(key))
            .arg(self.generation_key(key))
            .arg(fence.0)
            .arg(value)
            .arg(millis(ttl));
        let stored: i64 =
            tokio::time::timeout(COMMAND_TIMEOUT, command.query_async(&mut connection))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
        Ok(stored == 1)
    }

    async fn invalidate(&self, key: &str, fence_ttl: Duration) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("EVAL");
        command
            .arg(INVALIDATE_SCRIPT)
            .arg(2)
            .arg(self.key(key))
            .arg(self.generation_key(key))
            .arg(millis(fence_ttl));
        tokio::time::timeout(COMMAND_TIMEOUT, command.query_async::<i64>(&mut connection))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        Ok(())
    }

    async fn healthy(&self) -> bool {
        let mut connection = self.connection.clone();
        matches!(
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                redis::cmd("PING").query_async::<String>(&mut connection),
            )
            .await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn redis_cache_passes_the_conformance_suite() {
        let Some(url) = crate::test_tiers::redis() else {
            return;
        };
        let prefix = format!("userorg-test:{}:", uuid::Uuid::new_v4().simple());
        let cache = RedisCache::connect(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("the redis tier's server must answer: {e}"));
        crate::cache::conformance::run_cache_conformance(Arc::new(cache)).await;
    }

    #[tokio::test]
    async fn the_store_cached_on_redis_passes_the_store_conformance_suite() {
        let Some(url) = crate::test_tiers::redis() else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        let prefix = format!("userorg-test:{}:", uuid::Uuid::new_v4().simple());
        let open =
            move || -> futures::future::BoxFuture<'static, Arc<dyn crate::storage::Store>> {
                let (path, url, prefix) = (path.clone(), url.clone(), prefix.clone());
                Box::pin(async move {
                    let inner: Arc<dyn crate::storage::Store> =
                        Arc::new(crate::storage::redb_store::RedbStore::open(&path).expect("open"));
                    let cache = RedisCache::connect(&url, &prefix).await.expect("redis");
                    let store: Arc<dyn crate::storage::Store> =
                        Arc::new(crate::storage::cached::CachedStore::new(
                            inner,
                            Arc::new(cache),
                            Duration::from_secs(60),
                        ));
                    store
                })
            };
        crate::storage::conformance::run_store_conformance(&open).await;
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_not_a_hang() {
        let started = std::time::Instant::now();
        let outcome = RedisCache::connect("redis://127.0.0.1:1/", "x:").await;
        assert!(outcome.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
