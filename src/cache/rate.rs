//! Rate counters: the GCRA budget "`per_minute` requests a minute, all of them at once at most"
//! kept per key. In process they are governor's keyed limiters; on Redis one Lua script per
//! request keeps the theoretical arrival time of a key under the cache prefix, timed by the
//! Redis server's clock, so every instance on that Redis spends one shared budget. A Redis that
//! does not answer makes the decorator [`FallbackRateCounter`] count in process meanwhile:
//! limits loosen to one budget per instance, they never switch off.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use redis::aio::ConnectionManager;

use super::{COMMAND_TIMEOUT, CacheError, unavailable};

/// Keys idle this many checks are pruned from the in-process limiters.
const PRUNE_EVERY: u64 = 10_000;

/// What one request costs its key's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Refused; the budget has room again after this long.
    RetryAfter(Duration),
}

#[async_trait]
pub trait RateCounter: Send + Sync + 'static {
    /// Counts one request of `key` in `bucket` (a limit's name) against `per_minute`.
    async fn admit(
        &self,
        bucket: &'static str,
        key: &str,
        per_minute: NonZeroU32,
    ) -> Result<Admission, CacheError>;
}

type Keyed<C> = RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    C,
    governor::middleware::NoOpMiddleware<<C as Clock>::Instant>,
>;

/// The keyed limiters by (bucket, requests a minute).
type Limiters<C> = HashMap<(&'static str, u32), Arc<Keyed<C>>>;

/// Budgets kept in this process, one keyed limiter per bucket and rate.
pub struct LocalRateCounter<C: Clock + Clone = DefaultClock> {
    clock: C,
    limiters: Mutex<Limiters<C>>,
    checks: std::sync::atomic::AtomicU64,
}

impl LocalRateCounter<DefaultClock> {
    pub fn new() -> Self {
        LocalRateCounter::with_clock(DefaultClock::default())
    }
}

impl Default for LocalRateCounter<DefaultClock> {
    fn default() -> Self {
        LocalRateCounter::new()
    }
}

impl<C: Clock + Clone> LocalRateCounter<C> {
    pub fn with_clock(clock: C) -> Self {
        LocalRateCounter {
            clock,
            limiters: Mutex::new(HashMap::new()),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The limiter of `bucket` at `per_minute`; every [`PRUNE_EVERY`] checks, all limiters
    /// forget their idle keys so they do not grow without bound.
    fn limiter(&self, bucket: &'static str, per_minute: NonZeroU32) -> Arc<Keyed<C>> {
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let checks = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if checks % PRUNE_EVERY == PRUNE_EVERY - 1 {
            limiters
                .values()
                .for_each(|limiter| limiter.retain_recent());
        }
        Arc::clone(
            limiters
                .entry((bucket, per_minute.get()))
                .or_insert_with(|| {
                    Arc::new(RateLimiter::dashmap_with_clock(
                        Quota::per_minute(per_minute),
                        self.clock.clone(),
                    ))
                }),
        )
    }

    /// The synchronous check, for callers without a runtime at hand.
    pub fn admit_now(&self, bucket: &'static str, key: &str, per_minute: NonZeroU32) -> Admission {
        let limiter = self.limiter(bucket, per_minute);
        match limiter.check_key(&key.to_string()) {
            Ok(()) => Admission::Admitted,
            Err(not_until) => Admission::RetryAfter(not_until.wait_time_from(self.clock.now())),
        }
    }
}

#[async_trait]
impl<C> RateCounter for LocalRateCounter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    async fn admit(
        &self,
        bucket: &'static str,
        key: &str,
        per_minute: NonZeroU32,
    ) -> Result<Admission, CacheError> {
        Ok(self.admit_now(bucket, key, per_minute))
    }
}

/// GCRA over the key's theoretical arrival time (TAT, milliseconds on the Redis clock). A
/// request is admitted when TAT + interval - burst * interval is not in the future; admitting
/// moves TAT on by one interval and keeps the key only as long as it matters. Answers -1 for
/// admitted, else the milliseconds to wait.
const GCRA_SCRIPT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat + interval - burst * interval
if allowed_at > now then
  return math.ceil(allowed_at - now)
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.max(1, math.ceil(next_tat - now)))
return -1
";

/// Budgets shared by every instance on one Redis.
pub struct RedisRateCounter {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisRateCounter {
    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        RedisRateCounter {
            connection,
            prefix: prefix.to_string(),
        }
    }
}

#[async_trait]
impl RateCounter for RedisRateCounter {
    async fn admit(
        &self,
        bucket: &'static str,
        key: &str,
        per_minute: NonZeroU32,
    ) -> Result<Admission, CacheError> {
        let mut connection = self.connection.clone();
        let interval_ms = 60_000.0 / f64::from(per_minute.get());
        // EVAL with the script's text: a few hundred bytes a request, and no script cache
        // to reload after a Redis restart.
        let mut command = redis::cmd("EVAL");
        command
            .arg(GCRA_SCRIPT)
            .arg(1)
            .arg(format!("{}rate:{bucket}:{key}", self.prefix))
            .arg(interval_ms)
            .arg(per_minute.get());
        let waited: i64 =
            tokio::time::timeout(COMMAND_TIMEOUT, command.query_async(&mut connection))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
        Ok(match u64::try_from(waited) {
            Ok(millis) => Admission::RetryAfter(Duration::from_millis(millis)),
            Err(_) => Admission::Admitted,
        })
    }
}

/// Counts on `primary`, and in process while `primary` fails.
pub struct FallbackRateCounter {
    primary: Arc<dyn RateCounter>,
    fallback: LocalRateCounter,
    /// The primary failed its last check: the outage is logged once, when it starts, and once
    /// when it ends, never once per request.
    degraded: AtomicBool,
}

impl FallbackRateCounter {
    pub fn new(primary: Arc<dyn RateCounter>) -> Self {
        FallbackRateCounter {
            primary,
            fallback: LocalRateCounter::new(),
            degraded: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl RateCounter for FallbackRateCounter {
    async fn admit(
        &self,
        bucket: &'static str,
        key: &str,
        per_minute: NonZeroU32,
    ) -> Result<Admission, CacheError> {
        match self.primary.admit(bucket, key, per_minute).await {
            Ok(admission) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::warn!("shared rate counter answers again, counting there");
                }
                Ok(admission)
            }
            Err(error) => {
                if self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::debug!(%error, "shared rate counter still unavailable");
                } else {
                    tracing::warn!(%error, "shared rate counter unavailable, counting in process");
                }
                Ok(self.fallback.admit_now(bucket, key, per_minute))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::conformance::run_rate_counter_conformance;

    struct Down;

    #[async_trait]
    impl RateCounter for Down {
        async fn admit(
            &self,
            _: &'static str,
            _: &str,
            _: NonZeroU32,
        ) -> Result<Admission, CacheError> {
            Err(CacheError::Unavailable("connection refused".into()))
        }
    }

    /// A shared counter that can be taken down and brought back.
    struct Switchable(AtomicBool);

    #[async_trait]
    impl RateCounter for Switchable {
        async fn admit(
            &self,
            _: &'static str,
            _: &str,
            _: NonZeroU32,
        ) -> Result<Admission, CacheError> {
            if self.0.load(Ordering::Relaxed) {
                Ok(Admission::Admitted)
            } else {
                Err(CacheError::Unavailable("connection refused".into()))
            }
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_outage_of_the_shared_counter_is_logged_when_it_starts_and_ends_only() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let primary = Arc::new(Switchable(AtomicBool::new(false)));
        let counter = FallbackRateCounter::new(primary.clone());
        let budget = NonZeroU32::new(1000).expect("non-zero");
        for _ in 0..50 {
            counter
                .admit("outage", "client", budget)
                .await
                .expect("admit");
        }
        primary.0.store(true, Ordering::Relaxed);
        for _ in 0..50 {
            counter
                .admit("outage", "client", budget)
                .await
                .expect("admit");
        }
        let log = String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "one line when the outage starts, one when it ends: {log}"
        );
        assert!(lines[0].contains("shared rate counter unavailable, counting in process"));
        assert!(lines[0].contains("connection refused"));
        assert!(lines[1].contains("shared rate counter answers again"));
    }

    #[tokio::test]
    async fn the_in_process_counter_keeps_the_contract() {
        run_rate_counter_conformance(Arc::new(LocalRateCounter::new())).await;
    }

    #[tokio::test]
    async fn a_failing_shared_counter_falls_back_to_counting_in_process() {
        // The fallback keeps the whole contract with its primary down: limits never switch off.
        run_rate_counter_conformance(Arc::new(FallbackRateCounter::new(Arc::new(Down)))).await;
    }

    async fn redis_counter(prefix: &str) -> Option<RedisRateCounter> {
        let url = crate::test_tiers::redis()?;
        let cache = crate::cache::redis_cache::RedisCache::connect(&url, prefix)
            .await
            .expect("redis");
        Some(cache.rate_counter())
    }

    #[tokio::test]
    async fn the_redis_counter_keeps_the_contract() {
        let prefix = format!("userorg-rate-test:{}:", uuid::Uuid::new_v4().simple());
        let Some(counter) = redis_counter(&prefix).await else {
            return;
        };
        run_rate_counter_conformance(Arc::new(counter)).await;
    }

    #[tokio::test]
    async fn two_redis_counters_on_one_prefix_spend_one_budget() {
        let prefix = format!("userorg-rate-test:{}:", uuid::Uuid::new_v4().simple());
        let (Some(first), Some(second)) =
            (redis_counter(&prefix).await, redis_counter(&prefix).await)
        else {
            return;
        };
        let four = NonZeroU32::new(4).expect("non-zero");
        let mut admitted = 0;
        for n in 0..10 {
            let counter = if n % 2 == 0 { &first } else { &second };
            if counter
                .admit("shared", "client", four)
                .await
                .expect("admit")
                == Admission::Admitted
            {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 4, "two instances share the budget of four");
    }
}
