//! The actor tree: one root supervisor owns the user owners (a keyed factory) and the indexer,
//! restarts a failed child with exponential backoff, and publishes each child's current
//! reference in an [`slot::ActorSlot`] so the typed clients follow restarts.
//!
//! ractor's default supervision stops the parent when a child dies; the root overrides it.

pub mod indexer;
pub mod slot;
pub mod user_owner;

use std::sync::Arc;
use std::time::Duration;

use ractor::factory::FactoryRef;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use indexer::{Indexer, IndexerClient, IndexerContext, IndexerMessage};
use slot::ActorSlot;
use user_owner::{UserMessage, UserOwnerContext, UserOwners, spawn_user_owners};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the tree needs to start.
pub struct TreeSettings {
    pub user_owner_context: Arc<UserOwnerContext>,
    pub user_owner_workers: usize,
    pub indexer_context: Arc<IndexerContext>,
    pub call_timeout: Duration,
}

/// The running tree: clients for callers, and the root for shutdown.
pub struct ActorTree {
    pub user_owners: UserOwners,
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
    Indexer,
}

pub enum RootMessage {
    Restart(ChildId),
    Shutdown,
}

/// Identifies a child kind in restart messages.
#[derive(Debug, Clone, Copy)]
pub struct ChildId(Child);

struct RootArguments {
    settings: TreeSettings,
    user_slot: ActorSlot<FactoryRef<String, UserMessage>>,
    indexer_slot: ActorSlot<ActorRef<IndexerMessage>>,
}

struct RootState {
    settings: TreeSettings,
    user_slot: ActorSlot<FactoryRef<String, UserMessage>>,
    indexer_slot: ActorSlot<ActorRef<IndexerMessage>>,
    user_owners: Option<ractor::ActorCell>,
    indexer: Option<ractor::ActorCell>,
    backoff: [Duration; 2],
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
        match child {
            Child::UserOwners => {
                let (factory, _handle) = spawn_user_owners(
                    Arc::clone(&state.settings.user_owner_context),
                    state.settings.user_owner_workers,
                    myself.get_cell(),
                )
                .await?;
                state.user_owners = Some(factory.get_cell());
                state.user_slot.set(Some(factory));
            }
            Child::Indexer => {
                let (indexer, _handle) = Actor::spawn_linked(
                    None,
                    Indexer,
                    Arc::clone(&state.settings.indexer_context),
                    myself.get_cell(),
                )
                .await?;
                state.indexer = Some(indexer.get_cell());
                state.indexer_slot.set(Some(indexer));
            }
        }
        Ok(())
    }
}

fn child_index(child: Child) -> usize {
    match child {
        Child::UserOwners => 0,
        Child::Indexer => 1,
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
            user_slot: arguments.user_slot,
            indexer_slot: arguments.indexer_slot,
            user_owners: None,
            indexer: None,
            backoff: [FIRST_BACKOFF; 2],
            stopping: false,
        };
        self.start(&myself, &mut state, Child::UserOwners).await?;
        self.start(&myself, &mut state, Child::Indexer).await?;
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
                state.user_slot.set(None);
                state.indexer_slot.set(None);
                for cell in [state.user_owners.take(), state.indexer.take()]
                    .into_iter()
                    .flatten()
                {
                    cell.stop(Some("shutdown".into()));
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
        let child = if state.user_owners.as_ref().map(|c| c.get_id()) == Some(cell.get_id()) {
            state.user_owners = None;
            state.user_slot.set(None);
            Child::UserOwners
        } else if state.indexer.as_ref().map(|c| c.get_id()) == Some(cell.get_id()) {
            state.indexer = None;
            state.indexer_slot.set(None);
            Child::Indexer
        } else {
            return Ok(());
        };
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
    let user_slot = ActorSlot::new();
    let indexer_slot = ActorSlot::new();
    let timeout = settings.call_timeout;
    let (root, handle) = Actor::spawn(
        None,
        Root,
        RootArguments {
            settings,
            user_slot: user_slot.clone(),
            indexer_slot: indexer_slot.clone(),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start the actor tree: {e}"))?;
    Ok(ActorTree {
        user_owners: UserOwners::new(user_slot, timeout),
        indexer: IndexerClient::new(indexer_slot, timeout),
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
        let head = redb.outbox_head();
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
            indexer_context: Arc::new(IndexerContext {
                store,
                search,
                outbox_head: Some(head),
            }),
            call_timeout: Duration::from_secs(5),
        })
        .await
        .expect("tree");
        tree.indexer.wait_for(0).await.expect("indexer answers");
        let first = tree.indexer.current().expect("running");
        first.kill();
        let started = std::time::Instant::now();
        loop {
            if let Some(current) = tree.indexer.current()
                && current.get_id() != first.get_id()
                && tree.indexer.wait_for(0).await.is_ok()
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
