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
    /// Connects to `url` (`redis://host:port/db`, or `rediss://` for TLS); every key is stored
    /// under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCache, CacheError> {
        Self::connect_with(url, prefix, None).await
    }

    /// As [`RedisCache::connect`], a `rediss://` server's certificate checked against `ca_pem`
    /// (a private CA) instead of the system's roots.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<RedisCache, CacheError> {
        let client = match ca_pem {
            Some(root_cert) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            ),
            None => redis::Client::open(url),
        }
        .map_err(unavailable)?;
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

    /// A redis-server speaking TLS only, on a free port, with a new self-signed certificate for
    /// localhost; stopped when dropped.
    struct TlsRedis {
        child: std::process::Child,
        port: u16,
        certificate: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for TlsRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn tls_redis() -> Option<TlsRedis> {
        let program = crate::test_tiers::redis_server_program()?;
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).expect("cert");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("key");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let path = |p: &std::path::Path| p.display().to_string();
        let child = std::process::Command::new(program)
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .args([
                "--tls-cert-file",
                &path(&cert),
                "--tls-key-file",
                &path(&key),
            ])
            .args(["--tls-ca-cert-file", &path(&cert)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = TlsRedis {
            child,
            port,
            certificate: generated.cert.pem(),
            _dir: dir,
        };
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..200 {
            if std::net::TcpStream::connect(address).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the TLS redis-server never listened on {address}");
    }

    #[tokio::test]
    async fn rediss_urls_speak_tls_and_check_the_servers_certificate() {
        let Some(server) = tls_redis() else {
            return;
        };
        let url = format!("rediss://localhost:{}/", server.port);
        let prefix = format!("userorg-test:{}:", uuid::Uuid::new_v4().simple());
        let cache =
            RedisCache::connect_with(&url, &prefix, Some(server.certificate.clone().into_bytes()))
                .await
                .unwrap_or_else(|e| panic!("TLS with the server's CA connects: {e}"));
        crate::cache::conformance::run_cache_conformance(Arc::new(cache)).await;
        // Without that CA the system's roots do not know the certificate: no connection.
        let refused = RedisCache::connect(&url, &prefix).await;
        let Err(CacheError::Unavailable(why)) = refused else {
            panic!("a certificate no root vouches for must be refused");
        };
        assert!(why.to_lowercase().contains("certificate"), "{why}");
        // And plain text to the TLS port gets nowhere either.
        let plain = format!("redis://localhost:{}/", server.port);
        assert!(RedisCache::connect(&plain, &prefix).await.is_err());
    }

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
