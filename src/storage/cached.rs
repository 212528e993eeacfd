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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Acknowledgement, ClaimKind, CommitInfo, KEY_SEPARATOR, Lease, OutboxCursor, OutboxRecord, Row,
    Store, StoreError, Table, Transaction, Write, key_prefix,
};
use crate::cache::Cache;

pub struct CachedStore {
    inner: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    ttl: Duration,
    access_ttl: Duration,
    epoch: AtomicU64,
}

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

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, cache: Arc<dyn Cache>, ttl: Duration) -> CachedStore {
        CachedStore {
            inner,
            cache,
            ttl,
            access_ttl: DEFAULT_ACCESS_TTL.min(ttl),
            epoch: AtomicU64::new(0),
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
        let outcome = self.inner.commit(transaction).await;
        for key in touched {
            if let Err(error) = self.cache.delete(&key).await {
                // The entry expires with its time to live; until then other instances may see it.
                tracing::warn!(error = %error, "cache invalidation failed");
            }
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        outcome
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<Row>, StoreError> {
        if !Self::cacheable(table) {
            return self.inner.get(table, key).await;
        }
        let cache_key = cache_key(table, key);
        if let Ok(Some(bytes)) = self.cache.get(&cache_key).await
            && let Ok(row) = serde_json::from_slice::<Row>(&bytes)
        {
            return Ok(Some(row));
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let loaded = self.inner.get(table, key).await?;
        if let Some(row) = &loaded
            && self.epoch.load(Ordering::SeqCst) == epoch
            && let Ok(bytes) = serde_json::to_vec(row)
            && let Err(error) = self.cache.set(&cache_key, bytes, self.ttl_of(table)).await
        {
            tracing::debug!(error = %error, "cache fill failed");
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
        if let Ok(Some(bytes)) = self.cache.get(&cache_key).await
            && let Ok(rows) = serde_json::from_slice::<Vec<Row>>(&bytes)
        {
            return Ok(rows.into_iter().take(limit).collect());
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let rows = self
            .inner
            .scan(table, prefix, None, SCAN_CACHE_ROWS)
            .await?;
        if rows.len() < SCAN_CACHE_ROWS {
            if self.epoch.load(Ordering::SeqCst) == epoch
                && let Ok(bytes) = serde_json::to_vec(&rows)
                && let Err(error) = self.cache.set(&cache_key, bytes, self.ttl_of(table)).await
            {
                tracing::debug!(error = %error, "cache fill failed");
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
