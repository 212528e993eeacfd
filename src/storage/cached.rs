//! A read-through cache in front of any [`Store`], as a decorator: reads of cacheable tables go to
//! the cache (any [`Cache`] engine) first, and every committed write invalidates the rows it
//! touched. A cache failure is never an error: the read falls back to the store.
//!
//! A reader that loaded a row before a concurrent commit must not put that stale row into the
//! cache after the commit invalidated it; an epoch counter bumped on every commit guards the
//! insert (a load that overlapped any commit is simply not cached).
//!
//! Staleness is bounded, and tighter for what decides access. An invalidation that fails (a
//! Redis outage during a commit) leaves other instances reading the old entry until it expires:
//! rows that decide who may do what (a user's row with its status, the user's roles and
//! memberships) live at most `access_ttl` (`cache.access_ttl_seconds`, 5 s by default), every
//! other row at most `ttl`. Password hashes are in `user_credential`, which is never cached.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Acknowledgement, ClaimKind, CommitInfo, KEY_SEPARATOR, Lease, OutboxCursor, OutboxRecord, Row,
    Store, StoreError, Table, Transaction, Write, key_prefix,
};
use crate::cache::{Cache, Fence, Lookup};

pub struct CachedStore {
    inner: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    ttl: Duration,
    access_ttl: Duration,
    epoch: AtomicU64,
    /// Keys whose invalidation failed (the cache did not answer): retried until the cache
    /// takes them, and never served from the cache by this instance meanwhile.
    pending: Arc<Mutex<HashSet<String>>>,
    /// A retrier task runs.
    retrying: Arc<AtomicBool>,
}

/// How often owed invalidations are retried while the cache does not take them.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Invalidates `keys` in order and answers those done and those not: all from the first
/// failure on (the cache is down; the rest need not each wait for a timeout).
async fn invalidate_keys(
    cache: &dyn Cache,
    keys: Vec<String>,
    fence_ttl: Duration,
) -> (Vec<String>, Vec<String>) {
    let mut keys = keys.into_iter();
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for key in keys.by_ref() {
        match cache.invalidate(&key, fence_ttl).await {
            Ok(()) => done.push(key),
            Err(error) => {
                tracing::debug!(error = %error, "cache invalidation failed");
                failed.push(key);
                break;
            }
        }
    }
    failed.extend(keys);
    (done, failed)
}

/// How long a key's invalidation generation is remembered at least: far longer than any read
/// between a miss and its fill.
const MIN_FENCE_TTL: Duration = Duration::from_secs(60);

/// How long an access-deciding entry lives unless configured otherwise.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(5);

/// Tables whose rows decide access: a stale entry could let a blocked user in or keep a revoked
/// role working, so they get the short time to live.
fn decides_access(table: Table) -> bool {
    matches!(
        table,
        Table::User | Table::UserRoles | Table::UserOrganisation
    )
}

fn cache_key(table: Table, key: &str) -> String {
    format!("row:{}:{key}", table.name())
}

fn scan_cache_key(table: Table, prefix: &str) -> String {
    format!("scan:{}:{prefix}", table.name())
}

/// A partition is cached whole only when it has fewer rows than this.
const SCAN_CACHE_ROWS: usize = 1000;

/// Tables whose rows are read by partition (`parent␟child` keys: a user's memberships and
/// roles), so the whole partition can be cached and invalidated by any write into it.
fn scan_cacheable(table: Table) -> bool {
    matches!(table, Table::UserRoles | Table::UserOrganisation)
}

/// The partition prefix (`parent␟`) of a composite key.
fn partition_prefix(key: &str) -> Option<String> {
    key.split_once(KEY_SEPARATOR)
        .map(|(partition, _)| key_prefix(partition))
}

/// The owed invalidations of one cached store, and the retrier that makes them.
struct Owed {
    cache: Arc<dyn Cache>,
    pending: Arc<Mutex<HashSet<String>>>,
    retrying: Arc<AtomicBool>,
    fence_ttl: Duration,
}

impl Owed {
    /// `keys` are owed: not served from the cache here until a retrier, started if none runs,
    /// has invalidated them (every [`RETRY_EVERY`]).
    fn owe(self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        lock(&self.pending).extend(keys);
        if self.retrying.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.retrying.store(false, Ordering::SeqCst);
            return;
        };
        let Owed {
            cache,
            pending,
            retrying,
            fence_ttl,
        } = self;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(RETRY_EVERY).await;
                let keys: Vec<String> = lock(&pending).iter().cloned().collect();
                let (done, _) = invalidate_keys(cache.as_ref(), keys, fence_ttl).await;
                let mut pending = lock(&pending);
                for key in &done {
                    pending.remove(key);
                }
                if pending.is_empty() {
                    retrying.store(false, Ordering::SeqCst);
                    tracing::info!("owed cache invalidations done");
                    return;
                }
            }
        });
    }
}

/// Owes a commit's invalidations if the commit's caller goes away (its future dropped) after
/// the commit may have reached the store and before they were made.
struct OwedUnlessDone {
    owed: Option<Owed>,
    keys: Vec<String>,
}

impl OwedUnlessDone {
    fn done(mut self) {
        self.owed = None;
    }
}

impl Drop for OwedUnlessDone {
    fn drop(&mut self) {
        if let Some(owed) = self.owed.take() {
            owed.owe(std::mem::take(&mut self.keys));
        }
    }
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, cache: Arc<dyn Cache>, ttl: Duration) -> CachedStore {
        CachedStore {
            inner,
            cache,
            ttl,
            access_ttl: DEFAULT_ACCESS_TTL.min(ttl),
            epoch: AtomicU64::new(0),
            pending: Arc::default(),
            retrying: Arc::default(),
        }
    }

    /// The time to live of access-deciding entries (never longer than the general one).
    pub fn with_access_ttl(mut self, access_ttl: Duration) -> CachedStore {
        self.access_ttl = access_ttl.min(self.ttl);
        self
    }

    fn ttl_of(&self, table: Table) -> Duration {
        if decides_access(table) {
            self.access_ttl
        } else {
            self.ttl
        }
    }

    fn fence_ttl(&self) -> Duration {
        self.ttl.max(MIN_FENCE_TTL)
    }

    /// Invalidates `keys` and every earlier key whose invalidation failed. What fails stays
    /// pending, and a retrier task tries it again every [`RETRY_EVERY`] until the cache takes
    /// it: the entries are then gone for every instance, though this one may stay idle.
    async fn invalidate(&self, keys: Vec<String>) {
        // Owed keys stay owed (not served from the cache here) until their invalidation lands.
        let mut keys = keys;
        keys.extend(lock(&self.pending).iter().cloned());
        if keys.is_empty() {
            return;
        }
        let (done, failed) = invalidate_keys(self.cache.as_ref(), keys, self.fence_ttl()).await;
        {
            let mut pending = lock(&self.pending);
            for key in &done {
                pending.remove(key);
            }
        }
        if failed.is_empty() {
            return;
        }
        // Until then other instances may read these entries: at most their time to live.
        tracing::warn!(
            keys = failed.len(),
            "cache invalidation failed; retried until the cache answers"
        );
        self.owed().owe(failed);
    }

    fn owed(&self) -> Owed {
        Owed {
            cache: Arc::clone(&self.cache),
            pending: Arc::clone(&self.pending),
            retrying: Arc::clone(&self.retrying),
            fence_ttl: self.fence_ttl(),
        }
    }

    /// Whether `key` may be served from (and filled into) the cache: not while its own
    /// invalidation, or any other, is still owed.
    async fn usable(&self, key: &str) -> bool {
        if lock(&self.pending).is_empty() {
            return true;
        }
        self.invalidate(Vec::new()).await;
        !lock(&self.pending).contains(key)
    }

    /// The cached value of `key`, or the fence to fill it with after loading.
    async fn lookup(&self, key: &str) -> Option<Result<Vec<u8>, Fence>> {
        if !self.usable(key).await {
            return None;
        }
        match self.cache.lookup(key).await {
            Ok(Lookup::Hit(bytes)) => Some(Ok(bytes)),
            Ok(Lookup::Miss(fence)) => Some(Err(fence)),
            Err(_) => None,
        }
    }

    async fn fill(&self, key: &str, fence: Fence, epoch: u64, bytes: Vec<u8>, ttl: Duration) {
        // A local commit since the load (the process-wide epoch) or any instance's
        // invalidation since the miss (the key's fence) makes the loaded value unsafe to keep.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if let Err(error) = self.cache.fill(key, fence, bytes, ttl).await {
            tracing::debug!(error = %error, "cache fill failed");
        }
    }

    fn cacheable(table: Table) -> bool {
        matches!(
            table,
            Table::User
                | Table::Organisation
                | Table::Role
                | Table::RoleGroup
                | Table::SystemSettings
                | Table::Location
        )
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn commit(&self, transaction: Transaction) -> Result<CommitInfo, StoreError> {
        let touched: Vec<String> = transaction
            .writes
            .iter()
            .filter_map(|write| match write {
                Write::Check { .. } => None,
                Write::Put { table, key, .. } | Write::Delete { table, key, .. } => {
                    if Self::cacheable(*table) {
                        Some(cache_key(*table, key))
                    } else if scan_cacheable(*table) {
                        partition_prefix(key).map(|prefix| scan_cache_key(*table, &prefix))
                    } else {
                        None
                    }
                }
            })
            .collect();
        // Bump before and after: a load that started before the commit finished sees a change.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let guard = OwedUnlessDone {
            owed: Some(self.owed()),
            keys: touched.clone(),
        };
        let outcome = self.inner.commit(transaction).await;
        // Also after a failed commit: a conflict means this instance read an old row, which
        // may be the one cached.
        self.invalidate(touched).await;
        guard.done();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        outcome
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<Row>, StoreError> {
        if !Self::cacheable(table) {
            return self.inner.get(table, key).await;
        }
        let cache_key = cache_key(table, key);
        let fence = match self.lookup(&cache_key).await {
            Some(Ok(bytes)) => match serde_json::from_slice::<Row>(&bytes) {
                Ok(row) => return Ok(Some(row)),
                Err(_) => None,
            },
            Some(Err(fence)) => Some(fence),
            None => None,
        };
        let epoch = self.epoch.load(Ordering::SeqCst);
        let loaded = self.inner.get(table, key).await?;
        if let (Some(row), Some(fence)) = (&loaded, fence)
            && let Ok(bytes) = serde_json::to_vec(row)
        {
            self.fill(&cache_key, fence, epoch, bytes, self.ttl_of(table))
                .await;
        }
        Ok(loaded)
    }

    async fn scan(
        &self,
        table: Table,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let whole_partition = start_after.is_none()
            && prefix.ends_with(KEY_SEPARATOR)
            && prefix.matches(KEY_SEPARATOR).count() == 1;
        if !(scan_cacheable(table) && whole_partition) {
            return self.inner.scan(table, prefix, start_after, limit).await;
        }
        let cache_key = scan_cache_key(table, prefix);
        let fence = match self.lookup(&cache_key).await {
            Some(Ok(bytes)) => match serde_json::from_slice::<Vec<Row>>(&bytes) {
                Ok(rows) => return Ok(rows.into_iter().take(limit).collect()),
                Err(_) => None,
            },
            Some(Err(fence)) => Some(fence),
            None => None,
        };
        let epoch = self.epoch.load(Ordering::SeqCst);
        let rows = self
            .inner
            .scan(table, prefix, None, SCAN_CACHE_ROWS)
            .await?;
        if rows.len() < SCAN_CACHE_ROWS {
            if let Some(fence) = fence
                && let Ok(bytes) = serde_json::to_vec(&rows)
            {
                self.fill(&cache_key, fence, epoch, bytes, self.ttl_of(table))
                    .await;
            }
            return Ok(rows.into_iter().take(limit).collect());
        }
        // A partition too large to cache is read as asked.
        if limit <= rows.len() {
            return Ok(rows.into_iter().take(limit).collect());
        }
        self.inner.scan(table, prefix, None, limit).await
    }

    async fn claim_owner(
        &self,
        kind: ClaimKind,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.claim_owner(kind, value).await
    }

    async fn read_outbox(
        &self,
        after: &OutboxCursor,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        self.inner.read_outbox(after, limit).await
    }

    async fn outbox_head(&self) -> Result<OutboxCursor, StoreError> {
        self.inner.outbox_head().await
    }

    async fn register_consumer(&self, consumer: &str, now_ms: i64) -> Result<(), StoreError> {
        self.inner.register_consumer(consumer, now_ms).await
    }

    async fn consumer_cursor(&self, consumer: &str) -> Result<OutboxCursor, StoreError> {
        self.inner.consumer_cursor(consumer).await
    }

    async fn acknowledge(&self, acknowledgement: Acknowledgement<'_>) -> Result<(), StoreError> {
        self.inner.acknowledge(acknowledgement).await
    }

    async fn acquire_lease(
        &self,
        consumer: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.inner
            .acquire_lease(consumer, holder, now_ms, ttl_ms)
            .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.inner.release_lease(lease).await
    }

    fn commit_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.commit_signal()
    }

    async fn healthy(&self) -> bool {
        self.inner.healthy().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::moka_cache::MokaCache;
    use crate::storage::redb_store::RedbStore;
    use crate::storage::{Expect, compose_key};

    fn cached(dir: &std::path::Path) -> CachedStore {
        let store = RedbStore::open(&dir.join("store.redb")).expect("open");
        CachedStore::new(
            Arc::new(store),
            Arc::new(MokaCache::new(1000)),
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn cached_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let open = move || -> futures::future::BoxFuture<'static, Arc<dyn Store>> {
            let store: Arc<dyn Store> = Arc::new(cached(&path));
            Box::pin(async move { store })
        };
        crate::storage::conformance::run_store_conformance(&open).await;
    }

    /// Fail-open: with every cache call failing, the store behind it keeps its whole contract.
    #[tokio::test]
    async fn a_store_behind_a_failing_cache_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        let open = move || -> futures::future::BoxFuture<'static, Arc<dyn Store>> {
            let inner: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("open"));
            let store: Arc<dyn Store> = Arc::new(CachedStore::new(
                inner,
                Arc::new(crate::cache::testing::FailingCache),
                Duration::from_secs(60),
            ));
            Box::pin(async move { store })
        };
        crate::storage::conformance::run_store_conformance(&open).await;
    }

    /// Two instances on one store and one (shared) cache.
    fn two_instances(
        dir: &std::path::Path,
        cache: Arc<dyn Cache>,
    ) -> (
        Arc<CachedStore>,
        Arc<CachedStore>,
        Arc<crate::storage::testing::StoreFaults>,
    ) {
        let inner: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.join("store.redb")).expect("open"));
        let (faulty, faults) = crate::storage::testing::FaultyStore::new(Arc::clone(&inner));
        let a = CachedStore::new(inner, Arc::clone(&cache), Duration::from_secs(60));
        let b = CachedStore::new(Arc::new(faulty), cache, Duration::from_secs(60));
        (Arc::new(a), Arc::new(b), faults)
    }

    fn user_at(n: u64, expect: Expect) -> Transaction {
        let mut transaction = Transaction::default();
        transaction.put(Table::User, "u", serde_json::json!({"n": n}), expect);
        transaction
    }

    async fn version_of(store: &CachedStore) -> u64 {
        store
            .get(Table::User, "u")
            .await
            .expect("get")
            .expect("row")
            .version
    }

    /// Instance b loads the row, instance a commits a new version (and invalidates) before b
    /// fills the cache: b's fill is refused, so neither instance is served the old row. Each
    /// instance's own epoch cannot see the other's commit; the key's fence does.
    #[tokio::test]
    async fn a_fill_overtaken_by_another_instances_commit_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, faults) = two_instances(dir.path(), Arc::new(MokaCache::new(100)));
        a.commit(user_at(1, Expect::Absent)).await.expect("seed");
        let writer = Arc::clone(&a);
        faults.after_next_read(
            Table::User,
            Box::new(move || {
                Box::pin(async move {
                    writer
                        .commit(user_at(2, Expect::Version(1)))
                        .await
                        .expect("a's update");
                })
            }),
        );
        assert_eq!(
            version_of(&b).await,
            1,
            "b loaded the row before a's update"
        );
        assert_eq!(version_of(&a).await, 2, "a is not served b's old row");
        assert_eq!(version_of(&b).await, 2, "nor is b");
    }

    /// A commit whose caller goes away after the store applied it (the answer never came, the
    /// request was cancelled): its invalidation is still made, here and for other instances.
    #[tokio::test]
    async fn a_commit_whose_caller_went_away_is_still_invalidated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, faults) = two_instances(dir.path(), Arc::new(MokaCache::new(100)));
        a.commit(user_at(1, Expect::Absent)).await.expect("seed");
        assert_eq!(version_of(&a).await, 1, "cached at version 1");
        faults.set_commits_hang(true);
        let writer = Arc::clone(&b);
        let commit =
            tokio::spawn(async move { writer.commit(user_at(2, Expect::Version(1))).await });
        faults.hung().await;
        commit.abort();
        assert!(commit.await.expect_err("aborted").is_cancelled());
        faults.set_commits_hang(false);
        assert_eq!(version_of(&b).await, 2, "the instance that committed");
        let started = std::time::Instant::now();
        while version_of(&a).await != 2 {
            assert!(
                started.elapsed() < RETRY_EVERY * 8,
                "the other instance is still served the old row"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A cache that is down while `down` is set.
    struct SwitchableCache {
        inner: MokaCache,
        down: AtomicBool,
    }

    impl SwitchableCache {
        fn check(&self) -> Result<(), crate::cache::CacheError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(crate::cache::CacheError::Unavailable("injected".into()));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Cache for SwitchableCache {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::cache::CacheError> {
            self.check()?;
            self.inner.get(key).await
        }
        async fn set(
            &self,
            key: &str,
            value: Vec<u8>,
            ttl: Duration,
        ) -> Result<(), crate::cache::CacheError> {
            self.check()?;
            self.inner.set(key, value, ttl).await
        }
        async fn delete(&self, key: &str) -> Result<(), crate::cache::CacheError> {
            self.check()?;
            self.inner.delete(key).await
        }
        async fn lookup(&self, key: &str) -> Result<Lookup, crate::cache::CacheError> {
            self.check()?;
            self.inner.lookup(key).await
        }
        async fn fill(
            &self,
            key: &str,
            fence: Fence,
            value: Vec<u8>,
            ttl: Duration,
        ) -> Result<bool, crate::cache::CacheError> {
            self.check()?;
            self.inner.fill(key, fence, value, ttl).await
        }
        async fn invalidate(
            &self,
            key: &str,
            fence_ttl: Duration,
        ) -> Result<(), crate::cache::CacheError> {
            self.check()?;
            self.inner.invalidate(key, fence_ttl).await
        }
        async fn healthy(&self) -> bool {
            self.check().is_ok()
        }
    }

    /// A commit on instance a while the cache is down cannot invalidate b's cached row; a
    /// retries it until the cache answers, so b stops being served the old row within
    /// [`RETRY_EVERY`] of the cache's return, although a does nothing more.
    #[tokio::test(start_paused = true)]
    async fn an_invalidation_lost_in_a_cache_outage_is_made_when_the_cache_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Arc::new(SwitchableCache {
            inner: MokaCache::new(100),
            down: AtomicBool::new(false),
        });
        let (a, b, _) = two_instances(dir.path(), Arc::clone(&cache) as Arc<dyn Cache>);
        a.commit(user_at(1, Expect::Absent)).await.expect("seed");
        assert_eq!(version_of(&b).await, 1);
        assert_eq!(version_of(&b).await, 1, "served from the cache now");

        cache.down.store(true, Ordering::SeqCst);
        a.commit(user_at(2, Expect::Version(1)))
            .await
            .expect("update");
        assert_eq!(
            version_of(&b).await,
            2,
            "with the cache down, reads go to the store"
        );
        cache.down.store(false, Ordering::SeqCst);

        let key = cache_key(Table::User, "u");
        let mut waited = Duration::ZERO;
        while cache.inner.get(&key).await.expect("get").is_some() {
            assert!(
                waited <= RETRY_EVERY * 2,
                "the owed invalidation was not made after the cache came back"
            );
            tokio::time::advance(Duration::from_millis(10)).await;
            tokio::task::yield_now().await;
            waited += Duration::from_millis(10);
        }
        assert_eq!(
            version_of(&b).await,
            2,
            "b is not served the old row any more"
        );
    }

    #[tokio::test]
    async fn a_write_into_a_partition_refreshes_its_cached_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cached = cached(dir.path());
        let prefix = key_prefix("u1");
        let mut first = Transaction::default();
        first.put(
            Table::UserRoles,
            crate::storage::compose_key(&["u1", "A"]),
            serde_json::json!({"role": "A"}),
            Expect::Absent,
        );
        cached.commit(first).await.expect("first");
        let rows = cached
            .scan(Table::UserRoles, &prefix, None, 100)
            .await
            .expect("scan");
        assert_eq!(rows.len(), 1);
        let mut second = Transaction::default();
        second.put(
            Table::UserRoles,
            crate::storage::compose_key(&["u1", "B"]),
            serde_json::json!({"role": "B"}),
            Expect::Absent,
        );
        cached.commit(second).await.expect("second");
        let rows = cached
            .scan(Table::UserRoles, &prefix, None, 100)
            .await
            .expect("scan");
        assert_eq!(rows.len(), 2, "the cached partition was invalidated");
        assert_eq!(
            cached
                .scan(Table::UserRoles, &prefix, None, 1)
                .await
                .expect("scan")
                .len(),
            1,
            "the limit applies to cached partitions"
        );
        let mut delete = Transaction::default();
        delete.delete(
            Table::UserRoles,
            crate::storage::compose_key(&["u1", "A"]),
            Expect::Any,
        );
        cached.commit(delete).await.expect("delete");
        let rows = cached
            .scan(Table::UserRoles, &prefix, None, 100)
            .await
            .expect("scan");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].doc["role"], "B");
    }

    #[tokio::test]
    async fn a_commit_replaces_what_readers_see() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cached = cached(dir.path());
        let mut insert = Transaction::default();
        insert.put(
            Table::User,
            "u",
            serde_json::json!({"n": 1}),
            Expect::Absent,
        );
        cached.commit(insert).await.expect("insert");
        let first = cached
            .get(Table::User, "u")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(first.doc["n"], 1);
        let mut update = Transaction::default();
        update.put(
            Table::User,
            "u",
            serde_json::json!({"n": 2}),
            Expect::Version(1),
        );
        cached.commit(update).await.expect("update");
        let second = cached
            .get(Table::User, "u")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(
            (second.version, second.doc["n"].clone()),
            (2, serde_json::json!(2))
        );
    }

    /// A moka cache that notes the time to live of every entry set.
    struct RecordingCache {
        inner: MokaCache,
        sets: std::sync::Mutex<Vec<(String, Duration)>>,
    }

    #[async_trait]
    impl Cache for RecordingCache {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::cache::CacheError> {
            self.inner.get(key).await
        }
        async fn set(
            &self,
            key: &str,
            value: Vec<u8>,
            ttl: Duration,
        ) -> Result<(), crate::cache::CacheError> {
            self.sets.lock().expect("lock").push((key.to_string(), ttl));
            self.inner.set(key, value, ttl).await
        }
        async fn delete(&self, key: &str) -> Result<(), crate::cache::CacheError> {
            self.inner.delete(key).await
        }
        async fn lookup(&self, key: &str) -> Result<Lookup, crate::cache::CacheError> {
            self.inner.lookup(key).await
        }
        async fn fill(
            &self,
            key: &str,
            fence: Fence,
            value: Vec<u8>,
            ttl: Duration,
        ) -> Result<bool, crate::cache::CacheError> {
            self.sets.lock().expect("lock").push((key.to_string(), ttl));
            self.inner.fill(key, fence, value, ttl).await
        }
        async fn invalidate(
            &self,
            key: &str,
            fence_ttl: Duration,
        ) -> Result<(), crate::cache::CacheError> {
            self.inner.invalidate(key, fence_ttl).await
        }
        async fn healthy(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn access_deciding_rows_live_briefly_and_password_hashes_are_never_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("open"));
        let cache = Arc::new(RecordingCache {
            inner: MokaCache::new(100),
            sets: std::sync::Mutex::default(),
        });
        let store = CachedStore::new(
            Arc::clone(&inner),
            Arc::clone(&cache) as Arc<dyn Cache>,
            Duration::from_secs(300),
        )
        .with_access_ttl(Duration::from_secs(5));
        let mut seed = Transaction::default();
        seed.put(
            Table::User,
            "u1",
            serde_json::json!({"status": 1}),
            Expect::Absent,
        );
        seed.put(
            Table::UserRoles,
            compose_key(&["u1", "PUBLIC"]),
            serde_json::json!({}),
            Expect::Absent,
        );
        seed.put(
            Table::UserCredential,
            "u1",
            serde_json::json!({"passwordHash": "$argon2id$x"}),
            Expect::Absent,
        );
        seed.put(Table::Role, "PUBLIC", serde_json::json!({}), Expect::Absent);
        store.commit(seed).await.expect("seed");
        for _ in 0..2 {
            store.get(Table::User, "u1").await.expect("user");
            store
                .scan(Table::UserRoles, &key_prefix("u1"), None, 10)
                .await
                .expect("roles");
            store
                .get(Table::UserCredential, "u1")
                .await
                .expect("credential")
                .expect("row");
            store.get(Table::Role, "PUBLIC").await.expect("role");
        }
        let sets = cache.sets.lock().expect("lock").clone();
        assert_eq!(
            sets,
            vec![
                ("row:user:u1".to_string(), Duration::from_secs(5)),
                (
                    scan_cache_key(Table::UserRoles, &key_prefix("u1")),
                    Duration::from_secs(5)
                ),
                ("row:role:PUBLIC".to_string(), Duration::from_secs(300)),
            ],
            "each entry set once (the second round is served from the cache), none for credentials"
        );
        // The access time to live never exceeds the general one.
        let short = CachedStore::new(inner, cache, Duration::from_secs(2))
            .with_access_ttl(Duration::from_secs(5));
        assert_eq!(short.ttl_of(Table::User), Duration::from_secs(2));
    }
}
