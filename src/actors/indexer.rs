//! The indexer: tails the change outbox and applies it to the search index, and rebuilds the
//! index from the store on request.
//!
//! Each batch re-reads the current state of every changed entity, so replaying an event (after a
//! crash before the acknowledgement) rewrites the same document, and the index's version check
//! keeps an older document from replacing a newer one. The outbox cursor is acknowledged only
//! after the index committed the batch.
//!
//! It is an outbox consumer named `indexer`: each-instance for an index every instance keeps for
//! itself (tantivy), competing for one index several instances share (Elasticsearch).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::slot::{ActorSlot, call_actor};
use super::supervisor::{ChildSpec, Restart};
use crate::clock::Clock;
use crate::domain::Record;
use crate::domain::{DomainError, DomainResult};
use crate::search::documents::{index_document, into_fields, organisation_document};
use crate::search::{IndexDoc, IndexName, SearchIndex};
use crate::storage::consumer::OutboxConsumer;
use crate::storage::records::{get_org, memberships, role_grants};
use crate::storage::{ConsumerMode, OutboxCursor, Store, StoreError, Topic};

/// The outbox consumer name of the indexer.
pub const INDEXER_CONSUMER: &str = "indexer";

const BATCH: usize = 500;
/// How often the indexer looks at the outbox without being woken (retries after a failure).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

pub struct IndexerContext {
    /// The store behind the cache (see `app::Engines::uncached_store`).
    pub store: Arc<dyn Store>,
    pub search: Arc<dyn SearchIndex>,
    pub clock: Arc<dyn Clock>,
    /// This instance's id: the holder of a competing lease, the suffix of an each-instance
    /// consumer.
    pub instance: String,
    pub mode: ConsumerMode,
    pub lease_ttl_ms: i64,
}

impl IndexerContext {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

pub enum IndexerMessage {
    /// Something may be waiting in the outbox.
    Wake,
    /// Wait until everything up to this outbox cursor is indexed.
    WaitFor(OutboxCursor, RpcReplyPort<DomainResult<()>>),
    /// Wait until everything committed before this message is indexed.
    CatchUp(RpcReplyPort<DomainResult<()>>),
    /// Clear and rebuild one index (or all) from the store.
    Rebuild(Option<IndexName>, RpcReplyPort<DomainResult<u64>>),
    /// Re-index the given ids of one table (`/v1/data/sync`); answers how many were indexed.
    Sync(Topic, Vec<String>, RpcReplyPort<DomainResult<Vec<String>>>),
}

pub struct IndexerState {
    context: Arc<IndexerContext>,
    consumer: OutboxConsumer,
    waiters: Vec<(OutboxCursor, RpcReplyPort<DomainResult<()>>)>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

pub struct Indexer;

impl Actor for Indexer {
    type Msg = IndexerMessage;
    type State = IndexerState;
    type Arguments = Arc<IndexerContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        context: Arc<IndexerContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let consumer = OutboxConsumer::start(
            Arc::clone(&context.store),
            INDEXER_CONSUMER,
            context.mode,
            &context.instance,
            context.lease_ttl_ms,
            context.now_ms(),
        )
        .await
        .map_err(|e| -> ActorProcessingErr { Box::new(e) })?;
        // A small task turns local commits and a slow timer into wake-ups.
        let me = myself.clone();
        let watcher =
            super::waker::spawn_waker(context.store.commit_signal(), POLL_INTERVAL, move || {
                me.cast(IndexerMessage::Wake).is_ok()
            });
        myself.cast(IndexerMessage::Wake)?;
        Ok(IndexerState {
            context,
            consumer,
            waiters: Vec::new(),
            watcher: Some(watcher),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            IndexerMessage::Wake => {
                if let Err(error) = drain_outbox(state).await {
                    tracing::warn!(error = %error, "indexing paused, will retry");
                }
            }
            IndexerMessage::WaitFor(cursor, reply) => {
                if let Err(error) = drain_outbox(state).await {
                    tracing::warn!(error = %error, "indexing paused, will retry");
                }
                state.waiters.push((cursor, reply));
            }
            IndexerMessage::CatchUp(reply) => match state.context.store.outbox_head().await {
                Ok(head) => {
                    if let Err(error) = drain_outbox(state).await {
                        tracing::warn!(error = %error, "indexing paused, will retry");
                    }
                    state.waiters.push((head, reply));
                }
                Err(error) => answer(reply, Err(error.into())),
            },
            IndexerMessage::Rebuild(index, reply) => {
                answer(reply, rebuild(&state.context, index).await);
            }
            IndexerMessage::Sync(topic, ids, reply) => {
                answer(reply, sync_ids(&state.context, topic, ids).await);
            }
        }
        let position = state.consumer.cursor().clone();
        let (ready, waiting): (Vec<_>, Vec<_>) = state
            .waiters
            .drain(..)
            .partition(|(cursor, _)| *cursor <= position);
        state.waiters = waiting;
        for (_, reply) in ready {
            answer(reply, Ok(()));
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(watcher) = state.watcher.take() {
            watcher.abort();
        }
        Ok(())
    }
}

/// A closed reply port only means the caller gave up (timeout): not the indexer's failure.
fn answer<T>(reply: RpcReplyPort<DomainResult<T>>, outcome: DomainResult<T>) {
    if reply.send(outcome).is_err() {
        tracing::debug!("indexer reply dropped by caller");
    }
}

/// Applies outbox records until none is left, the index refuses, or (competing) another
/// instance holds the stream.
async fn drain_outbox(state: &mut IndexerState) -> DomainResult<()> {
    loop {
        let now = state.context.now_ms();
        let Some(records) = state.consumer.next_batch(BATCH, now).await? else {
            return Ok(());
        };
        let last = records.last().map(|r| r.cursor.clone()).unwrap_or_default();
        let mut seen = HashSet::new();
        let targets: Vec<(Topic, String)> = records
            .into_iter()
            .filter(|r| index_of(r.event.topic).is_some())
            .map(|r| (r.event.topic, r.event.entity_id))
            .filter(|key| seen.insert(key.clone()))
            .collect();
        apply(&state.context, &targets).await?;
        match state
            .consumer
            .acknowledge(&last, state.context.now_ms())
            .await
        {
            Ok(()) => {}
            Err(StoreError::LeaseLost(_)) => {
                tracing::info!("another instance took the indexing stream over");
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Builds and writes the documents of `targets`, grouped by index. An entity whose document
/// cannot be built is logged and skipped: one bad row must not stop indexing for everyone.
async fn apply(context: &IndexerContext, targets: &[(Topic, String)]) -> DomainResult<Vec<String>> {
    let mut upserts: Vec<(IndexName, Vec<IndexDoc>)> = Vec::new();
    let mut deletes: Vec<(IndexName, Vec<String>)> = Vec::new();
    let mut indexed = Vec::new();
    for (topic, id) in targets {
        match document_for(&context.store, *topic, id).await {
            Ok(Some(IndexChange::Upsert(index, doc))) => {
                indexed.push(id.clone());
                match upserts.iter_mut().find(|(name, _)| *name == index) {
                    Some((_, docs)) => docs.push(doc),
                    None => upserts.push((index, vec![doc])),
                }
            }
            Ok(Some(IndexChange::Delete(index, id))) => {
                match deletes.iter_mut().find(|(name, _)| *name == index) {
                    Some((_, ids)) => ids.push(id),
                    None => deletes.push((index, vec![id])),
                }
            }
            Ok(None) => {}
            Err(DomainError::Unavailable(what)) => return Err(DomainError::Unavailable(what)),
            Err(error) => {
                tracing::error!(entity.topic = topic.name(), entity.id = %id, error = %error, "cannot build search document");
            }
        }
    }
    for (index, docs) in upserts {
        context.search.upsert(index, docs).await?;
    }
    for (index, ids) in deletes {
        context.search.delete(index, ids).await?;
    }
    Ok(indexed)
}

/// The index an outbox topic feeds, if any (notifications have none).
fn index_of(topic: Topic) -> Option<IndexName> {
    match topic {
        Topic::User => Some(IndexName::User),
        Topic::Organisation => Some(IndexName::Organisation),
        Topic::Location => Some(IndexName::Location),
        Topic::Note => Some(IndexName::Note),
        Topic::Notification | Topic::Bulk => None,
    }
}

/// What the index should hold for one entity: a document, or nothing (the row is gone).
enum IndexChange {
    Upsert(IndexName, IndexDoc),
    Delete(IndexName, String),
}

/// The current document of `id` under `topic`, read from the store: the index is always a
/// function of the store.
async fn document_for(
    store: &Arc<dyn Store>,
    topic: Topic,
    id: &str,
) -> DomainResult<Option<IndexChange>> {
    let Some(index) = index_of(topic) else {
        return Ok(None);
    };
    let Some(row) = store.get(topic.table(), id).await? else {
        return Ok(Some(IndexChange::Delete(index, id.to_string())));
    };
    let source = match topic {
        Topic::User => user_document(store, &row.doc, id).await?,
        Topic::Organisation => organisation_document(row.doc),
        Topic::Location | Topic::Note | Topic::Notification | Topic::Bulk => into_fields(row.doc),
    };
    Ok(Some(IndexChange::Upsert(
        index,
        IndexDoc {
            id: id.to_string(),
            version: row.version,
            source,
        },
    )))
}

/// A user's document with its memberships, roles and root organisation name.
async fn user_document(
    store: &Arc<dyn Store>,
    doc: &serde_json::Value,
    id: &str,
) -> DomainResult<serde_json::Map<String, serde_json::Value>> {
    let memberships: Vec<serde_json::Value> = memberships(store, id)
        .await?
        .into_iter()
        .map(|m| m.record.to_doc())
        .collect();
    let roles: Vec<serde_json::Value> = role_grants(store, id)
        .await?
        .into_iter()
        .map(|grant| grant.record.to_doc())
        .collect();
    let root_org_name = match doc.get("rootOrgId").and_then(serde_json::Value::as_str) {
        Some(root) => get_org(store, root).await?.and_then(|org| org.org_name),
        None => None,
    };
    Ok(index_document(
        doc,
        &memberships,
        &roles,
        root_org_name.as_deref(),
    ))
}

/// Rebuilds the index (or one of its three parts) from the store while searches keep reading
/// the live copy (on engines that keep copies; see `SearchIndex::begin_rebuild`).
async fn rebuild(context: &IndexerContext, only: Option<IndexName>) -> DomainResult<u64> {
    let wanted = |index: IndexName| only.is_none_or(|wanted| wanted == index);
    // From the head, or from the indexer's own cursor if that is behind it: a slot still in
    // flight below the head (on Scylla) commits later, and no consumer passes it before.
    let consumer = match context.mode {
        ConsumerMode::Competing => INDEXER_CONSUMER.to_string(),
        ConsumerMode::EachInstance => format!("{INDEXER_CONSUMER}@{}", context.instance),
    };
    let started_at = context
        .store
        .outbox_head()
        .await?
        .min(context.store.consumer_cursor(&consumer).await?);
    let mut total = 0u64;
    for topic in Topic::INDEXED {
        let (Some(index), table) = (index_of(topic), topic.table()) else {
            continue;
        };
        if !wanted(index) {
            continue;
        }
        context.search.begin_rebuild(index).await?;
        let mut after: Option<String> = None;
        loop {
            let rows = context
                .store
                .scan(table, "", after.as_deref(), BATCH)
                .await?;
            let Some(last) = rows.last().map(|row| row.key.clone()) else {
                break;
            };
            let targets: Vec<(Topic, String)> =
                rows.into_iter().map(|row| (topic, row.key)).collect();
            total += apply(context, &targets).await?.len() as u64;
            after = Some(last);
        }
        context.search.finish_rebuild(index).await?;
    }
    // A change another instance's indexer applied while a row was already copied reached the
    // old copy only: every change since the rebuild began is applied again (idempotently, by
    // version) to the new one.
    let mut cursor = started_at;
    loop {
        let records = context.store.read_outbox(&cursor, BATCH).await?;
        let Some(last) = records.last().map(|record| record.cursor.clone()) else {
            break;
        };
        let targets: Vec<(Topic, String)> = records
            .into_iter()
            .filter(|record| index_of(record.event.topic).is_some_and(&wanted))
            .map(|record| (record.event.topic, record.event.entity_id))
            .collect();
        apply(context, &targets).await?;
        cursor = last;
    }
    Ok(total)
}

async fn sync_ids(
    context: &IndexerContext,
    topic: Topic,
    ids: Vec<String>,
) -> DomainResult<Vec<String>> {
    let targets: Vec<(Topic, String)> = ids.into_iter().map(|id| (topic, id)).collect();
    apply(context, &targets).await
}

/// The indexer as a child of the root supervisor, published in `slot`.
pub fn child_spec(
    context: Arc<IndexerContext>,
    slot: ActorSlot<ActorRef<IndexerMessage>>,
) -> ChildSpec {
    ChildSpec::new("indexer", Restart::Permanent, slot, move |supervisor| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            let (indexer, _handle) =
                Actor::spawn_linked(None, Indexer, context, supervisor).await?;
            Ok(indexer)
        })
    })
}

/// The typed client of the indexer.
#[derive(Clone)]
pub struct IndexerClient {
    slot: ActorSlot<ActorRef<IndexerMessage>>,
    timeout: Duration,
}

impl IndexerClient {
    pub fn new(slot: ActorSlot<ActorRef<IndexerMessage>>, timeout: Duration) -> Self {
        IndexerClient { slot, timeout }
    }

    /// True when the indexer runs. A liveness check that never waits on the actor, which may be
    /// busy with a long rebuild.
    pub fn alive(&self) -> bool {
        self.slot.alive()
    }

    /// The indexer's current reference (tests use it to kill the actor).
    pub fn current(&self) -> Option<ActorRef<IndexerMessage>> {
        self.slot.get()
    }

    /// Waits until every outbox record up to `cursor` is in the index.
    pub async fn wait_for(&self, cursor: OutboxCursor) -> DomainResult<()> {
        call_actor(&self.slot, self.timeout, "indexer", |reply| {
            IndexerMessage::WaitFor(cursor, reply)
        })
        .await?
    }

    /// Waits until everything committed before this call is in the index.
    pub async fn catch_up(&self) -> DomainResult<()> {
        call_actor(&self.slot, self.timeout, "indexer", IndexerMessage::CatchUp).await?
    }

    pub async fn rebuild(&self, index: Option<IndexName>, timeout: Duration) -> DomainResult<u64> {
        call_actor(&self.slot, timeout, "indexer", |reply| {
            IndexerMessage::Rebuild(index, reply)
        })
        .await?
    }

    pub async fn sync(&self, topic: Topic, ids: Vec<String>) -> DomainResult<Vec<String>> {
        call_actor(&self.slot, self.timeout, "indexer", |reply| {
            IndexerMessage::Sync(topic, ids, reply)
        })
        .await?
    }
}

/// Rebuilds every index from the store without a running actor tree (`userorg reindex`).
pub async fn rebuild_all(
    store: &Arc<dyn Store>,
    search: &Arc<dyn SearchIndex>,
) -> anyhow::Result<u64> {
    let context = IndexerContext {
        store: Arc::clone(store),
        search: Arc::clone(search),
        clock: Arc::new(crate::clock::SystemClock),
        instance: String::new(),
        mode: ConsumerMode::EachInstance,
        lease_ttl_ms: 0,
    };
    rebuild(&context, None)
        .await
        .map_err(|e| anyhow::anyhow!("reindex failed: {e}"))
}
