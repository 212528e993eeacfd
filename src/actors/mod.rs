//! The actor tree: one root supervisor owns the user owners (a keyed factory) and the indexer,
//! restarts a failed child with exponential backoff, and publishes each child's current
//! reference in an [`slot::ActorSlot`] so the typed clients follow restarts.
//!
//! ractor's default supervision stops the parent when a child dies; the root overrides it.

pub mod indexer;
pub mod keyed;
pub mod org_owner;
pub mod slot;
pub mod user_owner;

use std::sync::Arc;
use std::time::Duration;

use ractor::factory::FactoryRef;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use indexer::{Indexer, IndexerClient, IndexerContext, IndexerMessage};
use org_owner::{OrgMessage, OrgOwnerContext, OrgOwners, spawn_org_owners};
use slot::ActorSlot;
use user_owner::{UserMessage, UserOwnerContext, UserOwners, spawn_user_owners};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the tree needs to start.
pub struct TreeSettings {
    pub user_owner_context: Arc<UserOwnerContext>,
    pub user_owner_workers: usize,
    pub org_owner_context: Arc<OrgOwnerContext>,
    pub org_owner_workers: usize,
    pub indexer_context: Arc<IndexerContext>,
    pub call_timeout: Duration,
}

/// The running tree: clients for callers, and the root for shutdown.
pub struct ActorTree {
    pub user_owners: UserOwners,
    pub org_owners: OrgOwners,
    pub indexer: IndexerClient,
    root: ActorRef<RootMessage>,
    handle: ractor::concurrency::JoinHandle<()>,
}

impl ActorTree {
    /// Stops every actor (children first) and waits for the root to finish.
    pub async fn shutdown(self) {
        let _ = self.root.cast(RootMessage::Shutdown);
        if tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .is_err()
        {
            tracing::warn!("actor tree did not stop within 10 s");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    UserOwners,
    OrgOwners,
    Indexer,
}

const CHILDREN: [Child; 3] = [Child::UserOwners, Child::OrgOwners, Child::Indexer];

pub enum RootMessage {
    Restart(ChildId),
    Shutdown,
}

/// Identifies a child kind in restart messages.
#[derive(Debug, Clone, Copy)]
pub struct ChildId(Child);

/// The published references of the children.
#[derive(Clone)]
struct Slots {
    users: ActorSlot<FactoryRef<String, UserMessage>>,
    orgs: ActorSlot<FactoryRef<String, OrgMessage>>,
    indexer: ActorSlot<ActorRef<IndexerMessage>>,
}

impl Slots {
    fn clear(&self, child: Child) {
        match child {
            Child::UserOwners => self.users.set(None),
            Child::OrgOwners => self.orgs.set(None),
            Child::Indexer => self.indexer.set(None),
        }
    }
}

struct RootArguments {
    settings: TreeSettings,
    slots: Slots,
}

struct RootState {
    settings: TreeSettings,
    slots: Slots,
    cells: [Option<ractor::ActorCell>; 3],
    backoff: [Duration; 3],
    stopping: bool,
}

struct Root;

impl Root {
    async fn start(
        &self,
        myself: &ActorRef<RootMessage>,
        state: &mut RootState,
        child: Child,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match child {
            Child::UserOwners => {
                let (factory, _handle) = spawn_user_owners(
                    Arc::clone(&state.settings.user_owner_context),
                    state.settings.user_owner_workers,
                    myself.get_cell(),
                )
                .await?;
                let cell = factory.get_cell();
                state.slots.users.set(Some(factory));
                cell
            }
            Child::OrgOwners => {
                let (factory, _handle) = spawn_org_owners(
                    Arc::clone(&state.settings.org_owner_context),
                    state.settings.org_owner_workers,
                    myself.get_cell(),
                )
                .await?;
                let cell = factory.get_cell();
                state.slots.orgs.set(Some(factory));
                cell
            }
            Child::Indexer => {
                let (indexer, _handle) = Actor::spawn_linked(
                    None,
                    Indexer,
                    Arc::clone(&state.settings.indexer_context),
                    myself.get_cell(),
                )
                .await?;
                let cell = indexer.get_cell();
                state.slots.indexer.set(Some(indexer));
                cell
            }
        };
        state.cells[child_index(child)] = Some(cell);
        Ok(())
    }
}

fn child_index(child: Child) -> usize {
    match child {
        Child::UserOwners => 0,
        Child::OrgOwners => 1,
        Child::Indexer => 2,
    }
}

impl Actor for Root {
    type Msg = RootMessage;
    type State = RootState;
    type Arguments = RootArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: RootArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = RootState {
            settings: arguments.settings,
            slots: arguments.slots,
            cells: [None, None, None],
            backoff: [FIRST_BACKOFF; 3],
            stopping: false,
        };
        for child in CHILDREN {
            self.start(&myself, &mut state, child).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMessage::Restart(ChildId(child)) => {
                if state.stopping {
                    return Ok(());
                }
                match self.start(&myself, state, child).await {
                    Ok(()) => tracing::info!(child = ?child, "actor restarted"),
                    Err(error) => {
                        tracing::error!(child = ?child, error = %error, "actor restart failed");
                        schedule_restart(&myself, state, child);
                    }
                }
            }
            RootMessage::Shutdown => {
                state.stopping = true;
                for child in CHILDREN {
                    state.slots.clear(child);
                    if let Some(cell) = state.cells[child_index(child)].take() {
                        cell.stop(Some("shutdown".into()));
                    }
                }
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match &event {
            SupervisionEvent::ActorFailed(cell, error) => (cell.clone(), error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell.clone(), reason.clone().unwrap_or_default())
            }
            _ => return Ok(()),
        };
        if state.stopping {
            return Ok(());
        }
        let Some(child) = CHILDREN.into_iter().find(|child| {
            state.cells[child_index(*child)]
                .as_ref()
                .map(|c| c.get_id())
                == Some(cell.get_id())
        }) else {
            return Ok(());
        };
        state.cells[child_index(child)] = None;
        state.slots.clear(child);
        tracing::error!(child = ?child, reason = %reason, "actor stopped, restarting");
        schedule_restart(&myself, state, child);
        Ok(())
    }
}

fn schedule_restart(myself: &ActorRef<RootMessage>, state: &mut RootState, child: Child) {
    let index = child_index(child);
    let delay = state.backoff[index];
    state.backoff[index] = (delay * 2).min(MAX_BACKOFF);
    let me = myself.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = me.cast(RootMessage::Restart(ChildId(child)));
    });
}

/// Starts the whole tree and returns its clients.
pub async fn spawn_tree(settings: TreeSettings) -> anyhow::Result<ActorTree> {
    let slots = Slots {
        users: ActorSlot::new(),
        orgs: ActorSlot::new(),
        indexer: ActorSlot::new(),
    };
    let timeout = settings.call_timeout;
    let (root, handle) = Actor::spawn(
        None,
        Root,
        RootArguments {
            settings,
            slots: slots.clone(),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start the actor tree: {e}"))?;
    Ok(ActorTree {
        user_owners: UserOwners::new(slots.users, timeout),
        org_owners: OrgOwners::new(slots.orgs, timeout),
        indexer: IndexerClient::new(slots.indexer, timeout),
        root,
        handle,
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
        let tree = spawn_tree(TreeSettings {
            user_owner_context: Arc::new(UserOwnerContext {
                store: Arc::clone(&store),
                vault: PiiVault::new(PiiCipher::new(&[1; 32]), BlindIndex::new(&[2; 32])),
                clock: Arc::new(SystemClock),
                username_suffix_length: 4,
                deletion_allowed_roles: vec!["PUBLIC".into()],
            }),
            user_owner_workers: 2,
            org_owner_context: Arc::new(OrgOwnerContext {
                store: Arc::clone(&store),
                clock: Arc::new(SystemClock),
            }),
            org_owner_workers: 2,
            indexer_context: Arc::new(IndexerContext {
                store,
                search,
                clock: Arc::new(SystemClock),
                instance: "test".into(),
                mode: crate::storage::ConsumerMode::EachInstance,
                lease_ttl_ms: 1_000,
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
