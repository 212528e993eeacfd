//! Health of the running instance: the store and the search index answer, and every actor of
//! the tree runs. The actor check never waits on an actor (a long rebuild must not fail it).

use std::sync::Arc;

use crate::actors::supervisor::Liveness;
use crate::search::SearchIndex;
use crate::storage::Store;

/// What `/health` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthReport {
    pub store: bool,
    pub search: bool,
    pub actors: bool,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.store && self.search && self.actors
    }
}

#[derive(Clone)]
pub struct HealthService {
    store: Arc<dyn Store>,
    search: Arc<dyn SearchIndex>,
    actors: Liveness,
}

impl HealthService {
    pub fn new(store: Arc<dyn Store>, search: Arc<dyn SearchIndex>, actors: Liveness) -> Self {
        HealthService {
            store,
            search,
            actors,
        }
    }

    pub async fn check(&self) -> HealthReport {
        HealthReport {
            store: self.store.healthy().await,
            search: self.search.healthy().await,
            actors: (self.actors)(),
        }
    }
}
