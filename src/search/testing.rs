//! Fault injection for tests: a search index decorator that fails on demand (an unreachable
//! Elasticsearch, a broken tantivy writer). Compiled for tests and with the `testing` feature.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{IndexDoc, IndexName, SearchError, SearchIndex, SearchQuery, SearchResult};

/// The switches of a [`FaultySearch`].
#[derive(Debug, Default)]
pub struct SearchFaults {
    unavailable: AtomicBool,
}

impl SearchFaults {
    /// Every call fails with [`SearchError::Unavailable`], and the index reports unhealthy.
    pub fn set_unavailable(&self, on: bool) {
        self.unavailable.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), SearchError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(SearchError::Unavailable(
                "injected: index unreachable".into(),
            ));
        }
        Ok(())
    }
}

pub struct FaultySearch {
    inner: Arc<dyn SearchIndex>,
    faults: Arc<SearchFaults>,
}

impl FaultySearch {
    pub fn new(inner: Arc<dyn SearchIndex>) -> (FaultySearch, Arc<SearchFaults>) {
        let faults = Arc::new(SearchFaults::default());
        (
            FaultySearch {
                inner,
                faults: Arc::clone(&faults),
            },
            faults,
        )
    }
}

#[async_trait]
impl SearchIndex for FaultySearch {
    async fn upsert(&self, index: IndexName, docs: Vec<IndexDoc>) -> Result<(), SearchError> {
        self.faults.check()?;
        self.inner.upsert(index, docs).await
    }

    async fn delete(&self, index: IndexName, ids: Vec<String>) -> Result<(), SearchError> {
        self.faults.check()?;
        self.inner.delete(index, ids).await
    }

    async fn get(&self, index: IndexName, id: &str) -> Result<Option<IndexDoc>, SearchError> {
        self.faults.check()?;
        self.inner.get(index, id).await
    }

    async fn search(
        &self,
        index: IndexName,
        query: &SearchQuery,
    ) -> Result<SearchResult, SearchError> {
        self.faults.check()?;
        self.inner.search(index, query).await
    }

    async fn clear(&self, index: IndexName) -> Result<(), SearchError> {
        self.faults.check()?;
        self.inner.clear(index).await
    }

    async fn begin_rebuild(&self, index: IndexName) -> Result<(), SearchError> {
        self.faults.check()?;
        self.inner.begin_rebuild(index).await
    }

    async fn finish_rebuild(&self, index: IndexName) -> Result<(), SearchError> {
        self.faults.check()?;
        self.inner.finish_rebuild(index).await
    }

    async fn healthy(&self) -> bool {
        self.faults.check().is_ok() && self.inner.healthy().await
    }

    fn shared_across_instances(&self) -> bool {
        self.inner.shared_across_instances()
    }
}
