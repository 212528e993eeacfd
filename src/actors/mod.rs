//! The actor tree. One root supervisor ([`supervisor`]) starts a list of child specs — the user
//! owners and organisation owners (keyed factories) and the indexer — restarts a failed child
//! with exponential backoff by its restart policy, and publishes each child's current reference
//! in an [`slot::ActorSlot`] so the typed clients follow restarts.
//!
//! Adding an actor is its module (messages, actor or worker, typed client, `child_spec`) plus
//! one spec in [`start`] and its client in [`Actors`] (docs/CONVENTIONS.md "Adding an actor").
//!
//! ractor's default supervision stops the parent when a child dies; the root overrides it.

pub mod bulk;
pub mod dispatcher;
pub mod indexer;
pub mod keyed;
pub mod merge;
pub mod org_owner;
pub mod publisher;
pub mod scheduler;
pub mod slot;
pub mod supervisor;
pub mod user_owner;
pub mod waker;

use std::sync::Arc;
use std::time::Duration;

use indexer::{IndexerClient, IndexerContext};
use org_owner::{OrgOwnerContext, OrgOwners};
use slot::ActorSlot;
use supervisor::{ActorTree, spawn_tree};
use user_owner::{UserOwnerContext, UserOwners};

/// How long a flush of the bulk upload runner may take.
const BULK_FLUSH_TIMEOUT: Duration = Duration::from_secs(600);

/// What the actors need to start.
pub struct ActorSettings {
    pub user_owner_context: Arc<UserOwnerContext>,
    pub user_owner_workers: usize,
    pub org_owner_context: Arc<OrgOwnerContext>,
    pub org_owner_workers: usize,
    pub indexer_context: Arc<IndexerContext>,
    /// The event publisher, when `[events] redis_stream` names a stream.
    pub publisher_context: Option<Arc<publisher::PublisherContext>>,
    /// The notification dispatcher.
    pub dispatcher_context: Arc<dispatcher::DispatcherContext>,
    /// Periodic housekeeping.
    pub scheduler_context: Arc<scheduler::SchedulerContext>,
    /// Account merges.
    pub merge_context: Arc<merge::MergeContext>,
    /// Bulk uploads.
    pub bulk_context: Arc<bulk::BulkContext>,
    pub call_timeout: Duration,
}

/// The running actors: a typed client per actor, and the tree for liveness and shutdown.
pub struct Actors {
    pub user_owners: UserOwners,
    pub org_owners: OrgOwners,
    pub indexer: IndexerClient,
    pub dispatcher: dispatcher::DispatcherClient,
    pub scheduler: scheduler::SchedulerClient,
    pub merges: merge::MergeClient,
    pub bulk: bulk::BulkClient,
    pub tree: ActorTree,
}

impl Actors {
    /// Stops every actor (children first) and waits for the root to finish.
    pub async fn shutdown(self) {
        self.tree.shutdown().await
    }
}

/// Starts the whole tree and returns its clients.
pub async fn start(settings: ActorSettings) -> anyhow::Result<Actors> {
    let (users, orgs, index) = (ActorSlot::new(), ActorSlot::new(), ActorSlot::new());
    let mut specs = vec![
        user_owner::child_spec(
            Arc::clone(&settings.user_owner_context),
            settings.user_owner_workers,
            users.clone(),
        ),
        org_owner::child_spec(
            Arc::clone(&settings.org_owner_context),
            settings.org_owner_workers,
            orgs.clone(),
        ),
        indexer::child_spec(Arc::clone(&settings.indexer_context), index.clone()),
    ];
    let dispatch = ActorSlot::new();
    specs.push(dispatcher::child_spec(
        Arc::clone(&settings.dispatcher_context),
        dispatch.clone(),
    ));
    let schedule = ActorSlot::new();
    specs.push(scheduler::child_spec(
        Arc::clone(&settings.scheduler_context),
        schedule.clone(),
    ));
    let merging = ActorSlot::new();
    specs.push(merge::child_spec(
        Arc::clone(&settings.merge_context),
        merging.clone(),
    ));
    let bulk_runner = ActorSlot::new();
    specs.push(bulk::child_spec(
        Arc::clone(&settings.bulk_context),
        bulk_runner.clone(),
    ));
    if let Some(context) = &settings.publisher_context {
        specs.push(publisher::child_spec(Arc::clone(context), ActorSlot::new()));
    }
    let tree = spawn_tree(specs).await?;
    let timeout = settings.call_timeout;
    Ok(Actors {
        user_owners: UserOwners::new(users, timeout),
        org_owners: OrgOwners::new(orgs, timeout),
        indexer: IndexerClient::new(index, timeout),
        dispatcher: dispatcher::DispatcherClient::new(dispatch, timeout),
        scheduler: scheduler::SchedulerClient::new(schedule, timeout),
        merges: merge::MergeClient::new(merging, timeout),
        // A flush runs whole uploads (a thousand rows): more than a call's timeout.
        bulk: bulk::BulkClient::new(bulk_runner, BULK_FLUSH_TIMEOUT),
        tree,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::crypto::{BlindIndex, PiiCipher, PiiVault};
    use crate::search::tantivy_index::TantivyIndex;
    use crate::storage::redb_store::RedbStore;

    #[tokio::test]
    async fn a_killed_child_is_restarted_and_clients_follow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redb = RedbStore::open(&dir.path().join("store.redb")).expect("store");
        let store: Arc<dyn crate::storage::Store> = Arc::new(redb);
        let search: Arc<dyn crate::search::SearchIndex> =
            Arc::new(TantivyIndex::in_memory().expect("index"));
        let tree = start(ActorSettings {
            user_owner_context: Arc::new(UserOwnerContext {
                store: Arc::clone(&store),
                vault: PiiVault::new(PiiCipher::new(&[1; 32]), BlindIndex::new(&[2; 32])),
                clock: Arc::new(SystemClock),
                username_suffix_length: 4,
                deletion_allowed_roles: vec!["PUBLIC".into()],
                managed_user_limit: 30,
            }),
            user_owner_workers: 2,
            org_owner_context: Arc::new(OrgOwnerContext {
                store: Arc::clone(&store),
                clock: Arc::new(SystemClock),
            }),
            org_owner_workers: 2,
            indexer_context: Arc::new(IndexerContext {
                store: Arc::clone(&store),
                search,
                clock: Arc::new(SystemClock),
                instance: "test".into(),
                mode: crate::storage::ConsumerMode::EachInstance,
                lease_ttl_ms: 1_000,
            }),
            publisher_context: None,
            dispatcher_context: Arc::new(dispatcher::DispatcherContext {
                store: Arc::clone(&store),
                vault: PiiVault::new(PiiCipher::new(&[1; 32]), BlindIndex::new(&[2; 32])),
                email: Arc::new(
                    crate::notify::email::FileSender::new(dir.path().join("mail")).expect("dir"),
                ),
                sms: Arc::new(
                    crate::notify::sms::FileSmsSender::new(dir.path().join("sms.jsonl"))
                        .expect("file"),
                ),
                calls: Arc::new(crate::content::NoServiceCaller),
                clock: Arc::new(SystemClock),
                instance: "test".into(),
                lease_ttl_ms: 1_000,
                settings: dispatcher::DispatchSettings {
                    from: "no-reply@userorg.local".into(),
                    message_id_domain: "userorg.local".into(),
                    retry: crate::domain::notification::RetryPolicy {
                        max_attempts: 3,
                        base_ms: 10,
                        max_ms: 100,
                    },
                    concurrency: 2,
                },
            }),
            scheduler_context: Arc::new(scheduler::SchedulerContext {
                store: Arc::clone(&store),
                clock: Arc::new(SystemClock),
                instance: "test".into(),
                interval: Duration::from_secs(300),
            }),
            merge_context: Arc::new(merge::MergeContext {
                store: Arc::clone(&store),
                vault: PiiVault::new(PiiCipher::new(&[1; 32]), BlindIndex::new(&[2; 32])),
                clock: Arc::new(SystemClock),
                installation_name: "Sunbird".into(),
                message_id_domain: "userorg.local".into(),
                fail_after: None,
            }),
            bulk_context: Arc::new(bulk::BulkContext {
                store: Arc::clone(&store),
                clock: Arc::new(SystemClock),
                instance: "test".into(),
                lease_ttl_ms: 1_000,
                rows: Arc::default(),
            }),
            call_timeout: Duration::from_secs(5),
        })
        .await
        .expect("tree");
        tree.indexer.catch_up().await.expect("indexer answers");
        let first = tree.indexer.current().expect("running");
        first.kill();
        let started = std::time::Instant::now();
        loop {
            if let Some(current) = tree.indexer.current()
                && current.get_id() != first.get_id()
                && tree.indexer.catch_up().await.is_ok()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "indexer not restarted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // While nothing runs, calls fail fast with "unavailable", never hang.
        tree.shutdown().await;
    }
}
