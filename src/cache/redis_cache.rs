//! The cache on Redis, for deployments of several instances that must share invalidations. The
//! connection manager reconnects by itself; every command has a deadline, and a failure is
//! reported to the read-through decorator, which then reads the store: Redis being down slows
//! reads, it never fails them.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Cache, CacheError};

/// Longest wait for one Redis command before the caller falls back to the store.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);

pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
}

fn unavailable(error: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(error.to_string())
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

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

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
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        tokio::time::timeout(
            COMMAND_TIMEOUT,
            connection.pset_ex::<_, _, ()>(self.key(key), value, millis),
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

    /// The Redis the tests use: `USERORG_TEST_REDIS`, else the local default. Redis is a test
    /// dependency (`.ci/run` installs and starts it), so an unreachable server fails the test.
    fn test_redis_url() -> String {
        std::env::var("USERORG_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
    }

    #[tokio::test]
    async fn redis_cache_passes_the_conformance_suite() {
        let prefix = format!("userorg-test:{}:", uuid::Uuid::new_v4().simple());
        let cache = RedisCache::connect(&test_redis_url(), &prefix)
            .await
            .unwrap_or_else(|e| panic!("redis must be reachable for the tests: {e}"));
        crate::cache::conformance::run_cache_conformance(Arc::new(cache)).await;
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_not_a_hang() {
        let started = std::time::Instant::now();
        let outcome = RedisCache::connect("redis://127.0.0.1:1/", "x:").await;
        assert!(outcome.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
