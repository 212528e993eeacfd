//! A read-through cache in front of any [`Store`], as a decorator: reads of cacheable tables go to
//! the cache (any [`Cache`] engine) first, and every committed write invalidates the rows it
//! touched. A cache failure is never an error: the read falls back to the store.
//!
//! A reader that loaded a row before a concurrent commit must not put that stale row into the
//! cache after the commit invalidated it; an epoch counter bumped on every commit guards the
//! insert (a load that overlapped any commit is simply not cached).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    ClaimKind, CommitInfo, OutboxRecord, Row, Store, StoreError, Table, Transaction, Write,
};
use crate::cache::Cache;

pub struct CachedStore {
    inner: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    ttl: Duration,
    epoch: AtomicU64,
}

fn cache_key(table: Table, key: &str) -> String {
    format!("row:{}:{key}", table.name())
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, cache: Arc<dyn Cache>, ttl: Duration) -> CachedStore {
        CachedStore {
            inner,
            cache,
            ttl,
            epoch: AtomicU64::new(0),
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
                Write::Put { table, key, .. } | Write::Delete { table, key, .. } => {
                    Self::cacheable(*table).then(|| cache_key(*table, key))
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
            && let Err(error) = self.cache.set(&cache_key, bytes, self.ttl).await
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
        self.inner.scan(table, prefix, start_after, limit).await
    }

    async fn claim_owner(
        &self,
        kind: ClaimKind,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.claim_owner(kind, value).await
    }

    async fn read_outbox(&self, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        self.inner.read_outbox(after, limit).await
    }

    async fn consumer_position(&self, consumer: &str) -> Result<u64, StoreError> {
        self.inner.consumer_position(consumer).await
    }

    async fn acknowledge(&self, consumer: &str, sequence: u64) -> Result<(), StoreError> {
        self.inner.acknowledge(consumer, sequence).await
    }

    async fn healthy(&self) -> bool {
        self.inner.healthy().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::moka_cache::MokaCache;
    use crate::storage::Expect;
    use crate::storage::redb_store::RedbStore;

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
        crate::storage::conformance::run_store_conformance(Arc::new(cached(dir.path()))).await;
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
}
