//! A read-through cache in front of any [`Store`], as a decorator: reads of cacheable tables go to
//! the cache first, and every committed write invalidates the rows it touched.
//!
//! A reader that loaded a row before a concurrent commit must not put that stale row into the
//! cache after the commit invalidated it; an epoch counter bumped on every commit guards the
//! insert (a load that overlapped any commit is simply not cached).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use super::{
    ClaimKind, CommitInfo, OutboxRecord, Row, Store, StoreError, Table, Transaction, Write,
};

pub struct CachedStore {
    inner: Arc<dyn Store>,
    rows: Cache<(Table, String), Arc<Row>>,
    epoch: AtomicU64,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, max_entries: u64, ttl: Duration) -> CachedStore {
        CachedStore {
            inner,
            rows: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
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
        let touched: Vec<(Table, String)> = transaction
            .writes
            .iter()
            .map(|write| match write {
                Write::Put { table, key, .. } | Write::Delete { table, key, .. } => {
                    (*table, key.clone())
                }
            })
            .filter(|(table, _)| Self::cacheable(*table))
            .collect();
        // Bump before and after: a load that started before the commit finished sees a change.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let outcome = self.inner.commit(transaction).await;
        for key in touched {
            self.rows.invalidate(&key).await;
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        outcome
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<Row>, StoreError> {
        if !Self::cacheable(table) {
            return self.inner.get(table, key).await;
        }
        let cache_key = (table, key.to_string());
        if let Some(row) = self.rows.get(&cache_key).await {
            return Ok(Some((*row).clone()));
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let loaded = self.inner.get(table, key).await?;
        if let Some(row) = &loaded
            && self.epoch.load(Ordering::SeqCst) == epoch
        {
            self.rows.insert(cache_key, Arc::new(row.clone())).await;
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
    use crate::storage::redb_store::RedbStore;

    #[tokio::test]
    async fn cached_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(&dir.path().join("store.redb")).expect("open");
        let cached = CachedStore::new(Arc::new(store), 1000, Duration::from_secs(60));
        crate::storage::conformance::run_store_conformance(Arc::new(cached)).await;
    }

    #[tokio::test]
    async fn a_commit_replaces_what_readers_see() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(&dir.path().join("store.redb")).expect("open");
        let cached = CachedStore::new(Arc::new(store), 1000, Duration::from_secs(60));
        let mut insert = Transaction::default();
        insert.put(
            Table::User,
            "u",
            serde_json::json!({"n": 1}),
            crate::storage::Expect::Absent,
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
            crate::storage::Expect::Version(1),
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
