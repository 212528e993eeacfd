//! The root supervisor: starts a list of [`ChildSpec`]s in order, and when a child stops,
//! unpublishes it and, by its [`Restart`] policy, starts it again after an exponential backoff.
//! The tree is data: nothing here knows which actors exist.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, Message, SupervisionEvent};

use super::slot::ActorSlot;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long shutdown waits for one child to stop.
const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// When a stopped child is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always: a long-lived actor the service needs (owners, indexer).
    Permanent,
    /// Only after a failure; a child that stopped on its own is done.
    Transient,
}

/// Whether a child runs now; never waits on it.
pub type Liveness = Arc<dyn Fn() -> bool + Send + Sync>;

type StartFn = Box<
    dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, ActorProcessingErr>> + Send + Sync,
>;

/// One child of the root: how it starts (linked to the supervisor, publishing its reference),
/// how it is unpublished, and whether it runs now.
pub struct ChildSpec {
    pub name: &'static str,
    pub restart: Restart,
    start: StartFn,
    clear: Box<dyn Fn() + Send + Sync>,
    alive: Liveness,
}

impl ChildSpec {
    /// A child published in `slot`: `spawn` starts it linked to the given supervisor cell.
    pub fn new<M, F>(
        name: &'static str,
        restart: Restart,
        slot: ActorSlot<ActorRef<M>>,
        spawn: F,
    ) -> Self
    where
        M: Message,
        F: Fn(ActorCell) -> BoxFuture<'static, Result<ActorRef<M>, ActorProcessingErr>>
            + Send
            + Sync
            + 'static,
    {
        let spawn = Arc::new(spawn);
        let published = slot.clone();
        let start: StartFn = Box::new(move |supervisor| {
            let spawn = Arc::clone(&spawn);
            let published = published.clone();
            Box::pin(async move {
                let actor = spawn(supervisor).await?;
                let cell = actor.get_cell();
                published.set(Some(actor));
                Ok(cell)
            })
        });
        let cleared = slot.clone();
        ChildSpec {
            name,
            restart,
            start,
            clear: Box::new(move || cleared.set(None)),
            alive: Arc::new(move || slot.alive()),
        }
    }
}

/// The running tree: its children's liveness, and the root for shutdown.
pub struct ActorTree {
    root: ActorRef<RootMessage>,
    handle: ractor::concurrency::JoinHandle<()>,
    liveness: Vec<(&'static str, Liveness)>,
}

impl ActorTree {
    /// True when every child runs now; never waits on a child (a long rebuild must not fail
    /// `/health`).
    pub fn all_alive(&self) -> bool {
        self.liveness.iter().all(|(_, alive)| alive())
    }

    /// A liveness check that outlives the borrow of the tree (for the health service).
    pub fn liveness(&self) -> Liveness {
        let checks = self.liveness.clone();
        Arc::new(move || checks.iter().all(|(_, alive)| alive()))
    }

    /// The names of the children not running now.
    pub fn stopped_children(&self) -> Vec<&'static str> {
        self.liveness
            .iter()
            .filter(|(_, alive)| !alive())
            .map(|(name, _)| *name)
            .collect()
    }

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

pub enum RootMessage {
    /// Start the child at this index of the spec list again.
    Restart(usize),
    Shutdown,
}

struct RootState {
    specs: Vec<ChildSpec>,
    cells: Vec<Option<ActorCell>>,
    backoff: Vec<Duration>,
    stopping: bool,
}

struct Root;

impl Root {
    async fn start_child(
        myself: &ActorRef<RootMessage>,
        state: &mut RootState,
        index: usize,
    ) -> Result<(), ActorProcessingErr> {
        let cell = (state.specs[index].start)(myself.get_cell()).await?;
        state.cells[index] = Some(cell);
        Ok(())
    }

    fn schedule_restart(myself: &ActorRef<RootMessage>, state: &mut RootState, index: usize) {
        let delay = state.backoff[index];
        state.backoff[index] = (delay * 2).min(MAX_BACKOFF);
        let me = myself.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(RootMessage::Restart(index));
        });
    }
}

impl Actor for Root {
    type Msg = RootMessage;
    type State = RootState;
    type Arguments = Vec<ChildSpec>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        specs: Vec<ChildSpec>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let count = specs.len();
        let mut state = RootState {
            specs,
            cells: vec![None; count],
            backoff: vec![FIRST_BACKOFF; count],
            stopping: false,
        };
        for index in 0..count {
            Root::start_child(&myself, &mut state, index).await?;
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
            RootMessage::Restart(index) => {
                if state.stopping || state.cells[index].is_some() {
                    return Ok(());
                }
                let child = state.specs[index].name;
                match Root::start_child(&myself, state, index).await {
                    Ok(()) => tracing::info!(actor.child = child, "actor restarted"),
                    Err(error) => {
                        tracing::error!(actor.child = child, error = %error, "actor restart failed");
                        Root::schedule_restart(&myself, state, index);
                    }
                }
            }
            RootMessage::Shutdown => {
                state.stopping = true;
                // Children stop in the reverse order of their start, each waited for, so what
                // they hold (engines, files) is released when the tree has stopped.
                for index in (0..state.specs.len()).rev() {
                    (state.specs[index].clear)();
                    if let Some(cell) = state.cells[index].take()
                        && let Err(error) = cell
                            .stop_and_wait(Some("shutdown".into()), Some(CHILD_STOP_TIMEOUT))
                            .await
                    {
                        tracing::warn!(
                            actor.child = state.specs[index].name,
                            error = %error,
                            "actor did not stop in time"
                        );
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
        let (cell, reason, failed) = match &event {
            SupervisionEvent::ActorFailed(cell, error) => (cell.clone(), error.to_string(), true),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell.clone(), reason.clone().unwrap_or_default(), false)
            }
            _ => return Ok(()),
        };
        if state.stopping {
            return Ok(());
        }
        let Some(index) = state
            .cells
            .iter()
            .position(|c| c.as_ref().map(|c| c.get_id()) == Some(cell.get_id()))
        else {
            return Ok(());
        };
        state.cells[index] = None;
        (state.specs[index].clear)();
        let spec = &state.specs[index];
        let restart = match spec.restart {
            Restart::Permanent => true,
            Restart::Transient => failed,
        };
        if restart {
            tracing::error!(actor.child = spec.name, reason = %reason, "actor stopped, restarting");
            Root::schedule_restart(&myself, state, index);
        } else {
            tracing::info!(actor.child = spec.name, reason = %reason, "actor finished");
        }
        Ok(())
    }
}

/// Starts the root with its children, in the order of `specs`.
pub async fn spawn_tree(specs: Vec<ChildSpec>) -> anyhow::Result<ActorTree> {
    let liveness = specs
        .iter()
        .map(|spec| (spec.name, Arc::clone(&spec.alive)))
        .collect();
    let (root, handle) = Actor::spawn(None, Root, specs)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the actor tree: {e}"))?;
    Ok(ActorTree {
        root,
        handle,
        liveness,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An actor that stops itself on `Finish` and fails on `Fail`.
    struct Probe;

    enum ProbeMessage {
        Finish,
        Fail,
    }

    impl Actor for Probe {
        type Msg = ProbeMessage;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<Self::Msg>,
            _arguments: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            myself: ActorRef<Self::Msg>,
            message: Self::Msg,
            _state: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            match message {
                ProbeMessage::Finish => {
                    myself.stop(None);
                    Ok(())
                }
                ProbeMessage::Fail => Err("probe failure".into()),
            }
        }
    }

    fn probe(
        name: &'static str,
        restart: Restart,
        slot: ActorSlot<ActorRef<ProbeMessage>>,
    ) -> ChildSpec {
        ChildSpec::new(name, restart, slot, |supervisor| {
            Box::pin(async move {
                let (probe, _handle) = Actor::spawn_linked(None, Probe, (), supervisor).await?;
                Ok(probe)
            })
        })
    }

    /// Lets virtual time run (the test clock is paused) until `done` holds.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..1_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 10 s of virtual time");
    }

    #[tokio::test(start_paused = true)]
    async fn children_restart_by_their_policy() {
        let (permanent, transient) = (ActorSlot::new(), ActorSlot::new());
        let tree = spawn_tree(vec![
            probe("permanent", Restart::Permanent, permanent.clone()),
            probe("transient", Restart::Transient, transient.clone()),
        ])
        .await
        .expect("tree");
        until(|| tree.all_alive()).await;

        let first = permanent.get().expect("published");
        first.cast(ProbeMessage::Finish).expect("cast");
        until(|| {
            permanent
                .get()
                .is_some_and(|p| p.get_id() != first.get_id())
        })
        .await;
        assert!(
            permanent.alive(),
            "a permanent child comes back even after a clean stop"
        );

        let failing = transient.get().expect("published");
        failing.cast(ProbeMessage::Fail).expect("cast");
        until(|| {
            transient
                .get()
                .is_some_and(|p| p.get_id() != failing.get_id())
        })
        .await;

        let finishing = transient.get().expect("published");
        finishing.cast(ProbeMessage::Finish).expect("cast");
        until(|| transient.get().is_none()).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            transient.get().is_none(),
            "a transient child that finished stays stopped"
        );
        assert_eq!(tree.stopped_children(), vec!["transient"]);
        assert!(!tree.all_alive());
        tree.shutdown().await;
    }
}
