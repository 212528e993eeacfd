//! Fault injection for tests: a store decorator whose failures are switched on and off while a
//! test runs (DESIGN.md: "test fault injection is a decorator"). Compiled for tests and with the
//! `testing` feature (the API tests enable it), never into the release binary.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::{
    Acknowledgement, ClaimKind, CommitInfo, Lease, OutboxCursor, OutboxRecord, Row, Store,
    StoreError, Table, Transaction, Write,
};

/// Work a test runs in the middle of an operation under test.
pub type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// The switches of a [`FaultyStore`]; shared, so a test flips them while the app runs.
#[derive(Default)]
pub struct StoreFaults {
    unavailable: AtomicBool,
    commits_time_out: AtomicBool,
    commits_hang: AtomicBool,
    hanging: tokio::sync::Notify,
    conflicts: AtomicUsize,
    commits: AtomicUsize,
    spared: Mutex<Vec<Table>>,
    after_read: Mutex<Option<(Table, Hook)>>,
    before_commit: Mutex<Option<Hook>>,
    refused_tables: Mutex<Vec<Table>>,
}

impl StoreFaults {
    /// Every call fails with [`StoreError::Unavailable`] (the engine cannot be reached; nothing
    /// is applied), and the store reports itself unhealthy.
    pub fn set_unavailable(&self, on: bool) {
        self.unavailable.store(on, Ordering::SeqCst);
    }

    /// While the store is unavailable, reads of these tables still succeed: how a test lets
    /// the caller be resolved (user and roles) and then finds the service's own reads failing.
    pub fn spare_reads_of(&self, tables: &[Table]) {
        *lock(&self.spared) = tables.to_vec();
    }

    /// Commits are applied, then answered [`StoreError::Indeterminate`]: the answer is lost, as
    /// after a timeout.
    pub fn set_commits_time_out(&self, on: bool) {
        self.commits_time_out.store(on, Ordering::SeqCst);
    }

    /// Commits are applied, and then never answered (the caller has to give up on them);
    /// [`StoreFaults::hung`] says when one got there.
    pub fn set_commits_hang(&self, on: bool) {
        self.commits_hang.store(on, Ordering::SeqCst);
    }

    /// Waits until a commit was applied and hangs.
    pub async fn hung(&self) {
        self.hanging.notified().await
    }

    /// The next `count` commits fail with [`StoreError::Conflict`] before reaching the engine,
    /// as if another instance had written the row in between.
    pub fn inject_conflicts(&self, count: usize) {
        self.conflicts.store(count, Ordering::SeqCst);
    }

    /// Commits that reached the engine so far.
    pub fn commits(&self) -> usize {
        self.commits.load(Ordering::SeqCst)
    }

    /// Runs `hook` once, right after the next read (get or scan) of `table`: forces an
    /// interleaving an API test could only hope to hit.
    pub fn after_next_read(&self, table: Table, hook: Hook) {
        *self.lock_hook() = Some((table, hook));
    }

    /// Commits that write any of these tables fail with [`StoreError::Unavailable`] before
    /// reaching the engine (nothing applied); others commit as usual. Empty: none refused.
    pub fn refuse_commits_writing(&self, tables: &[Table]) {
        *lock(&self.refused_tables) = tables.to_vec();
    }

    /// Runs `hook` once, before the next commit reaches the engine: holds a writer inside its
    /// command for as long as the test wants.
    pub fn before_next_commit(&self, hook: Hook) {
        *lock(&self.before_commit) = Some(hook);
    }

    fn lock_hook(&self) -> std::sync::MutexGuard<'_, Option<(Table, Hook)>> {
        lock(&self.after_read)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "injected: store unreachable".into(),
            ));
        }
        Ok(())
    }

    fn check_read(&self, table: Table) -> Result<(), StoreError> {
        if lock(&self.spared).contains(&table) {
            return Ok(());
        }
        self.check()
    }

    async fn after_read(&self, table: Table) {
        let hook = {
            let mut armed = self.lock_hook();
            match armed.take() {
                Some((wanted, hook)) if wanted == table => Some(hook),
                other => {
                    *armed = other;
                    None
                }
            }
        };
        if let Some(hook) = hook {
            hook().await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A store that fails on demand; otherwise a transparent decorator of `inner`.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    faults: Arc<StoreFaults>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> (FaultyStore, Arc<StoreFaults>) {
        let faults = Arc::new(StoreFaults::default());
        (FaultyStore::with_faults(inner, Arc::clone(&faults)), faults)
    }

    /// A decorator sharing switches with others (the cached and the uncached view of one store).
    pub fn with_faults(inner: Arc<dyn Store>, faults: Arc<StoreFaults>) -> FaultyStore {
        FaultyStore { inner, faults }
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn commit(&self, transaction: Transaction) -> Result<CommitInfo, StoreError> {
        self.faults.check()?;
        let injected = self
            .faults
            .conflicts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if injected {
            return Err(StoreError::Conflict {
                table: Table::User,
                key: "injected".into(),
            });
        }
        let refused = {
            let tables = lock(&self.faults.refused_tables);
            transaction.writes.iter().any(|write| match write {
                Write::Put { table, .. } | Write::Delete { table, .. } => tables.contains(table),
                Write::Check { .. } => false,
            })
        };
        if refused {
            return Err(StoreError::Unavailable("injected: commit refused".into()));
        }
        let hook = lock(&self.faults.before_commit).take();
        if let Some(hook) = hook {
            hook().await;
        }
        self.faults.commits.fetch_add(1, Ordering::SeqCst);
        let outcome = self.inner.commit(transaction).await;
        if self.faults.commits_hang.load(Ordering::SeqCst) {
            self.faults.hanging.notify_one();
            std::future::pending::<()>().await;
        }
        if self.faults.commits_time_out.load(Ordering::SeqCst) {
            return Err(StoreError::Indeterminate(
                "injected: commit timed out".into(),
            ));
        }
        outcome
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<Row>, StoreError> {
        self.faults.check_read(table)?;
        let row = self.inner.get(table, key).await;
        self.faults.after_read(table).await;
        row
    }

    async fn scan(
        &self,
        table: Table,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        self.faults.check_read(table)?;
        let rows = self.inner.scan(table, prefix, start_after, limit).await;
        self.faults.after_read(table).await;
        rows
    }

    async fn claim_owner(
        &self,
        kind: ClaimKind,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        self.faults.check()?;
        self.inner.claim_owner(kind, value).await
    }

    async fn read_outbox(
        &self,
        after: &OutboxCursor,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        self.faults.check()?;
        self.inner.read_outbox(after, limit).await
    }

    async fn outbox_head(&self) -> Result<OutboxCursor, StoreError> {
        self.faults.check()?;
        self.inner.outbox_head().await
    }

    async fn register_consumer(&self, consumer: &str, now_ms: i64) -> Result<(), StoreError> {
        self.faults.check()?;
        self.inner.register_consumer(consumer, now_ms).await
    }

    async fn consumer_cursor(&self, consumer: &str) -> Result<OutboxCursor, StoreError> {
        self.faults.check()?;
        self.inner.consumer_cursor(consumer).await
    }

    async fn acknowledge(&self, acknowledgement: Acknowledgement<'_>) -> Result<(), StoreError> {
        self.faults.check()?;
        self.inner.acknowledge(acknowledgement).await
    }

    async fn acquire_lease(
        &self,
        consumer: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.faults.check()?;
        self.inner
            .acquire_lease(consumer, holder, now_ms, ttl_ms)
            .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.faults.check()?;
        self.inner.release_lease(lease).await
    }

    fn commit_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.commit_signal()
    }

    async fn healthy(&self) -> bool {
        self.faults.check().is_ok() && self.inner.healthy().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::redb_store::RedbStore;

    #[tokio::test]
    async fn a_faulty_store_without_faults_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        let open = move || -> BoxFuture<'static, Arc<dyn Store>> {
            let inner: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("open"));
            let store: Arc<dyn Store> = Arc::new(FaultyStore::new(inner).0);
            Box::pin(async move { store })
        };
        crate::storage::conformance::run_store_conformance(&open).await;
    }
}
