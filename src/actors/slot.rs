//! Where clients find the current reference of a supervised actor: the supervisor replaces it
//! after a restart, so clients never hold a stale `ActorRef`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::factory::{FactoryMessage, FactoryRef, JobKey};
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::{DomainError, DomainResult};

/// Calls one actor (or factory) may have in flight, queued or running: past it a call is
/// answered "unavailable" (503) at once, so an overload cannot grow the mailbox without end.
pub const MAILBOX_LIMIT: usize = 4096;

/// A shared, replaceable actor reference, and the bound on calls in flight to it.
pub struct ActorSlot<R> {
    current: Arc<RwLock<Option<R>>>,
    in_flight: Arc<Semaphore>,
}

impl<R> Clone for ActorSlot<R> {
    fn clone(&self) -> Self {
        ActorSlot {
            current: Arc::clone(&self.current),
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

impl<R: Clone> Default for ActorSlot<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Clone> ActorSlot<R> {
    pub fn new() -> Self {
        Self::with_mailbox_limit(MAILBOX_LIMIT)
    }

    /// A slot admitting at most `limit` calls in flight.
    pub fn with_mailbox_limit(limit: usize) -> Self {
        ActorSlot {
            current: Arc::new(RwLock::new(None)),
            in_flight: Arc::new(Semaphore::new(limit)),
        }
    }

    /// A place in the mailbox for one call, or "unavailable" when it is full.
    fn admit(&self, what: &str) -> DomainResult<OwnedSemaphorePermit> {
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| DomainError::Unavailable(format!("{what} is overloaded")))
    }

    pub fn set(&self, actor: Option<R>) {
        match self.current.write() {
            Ok(mut guard) => *guard = actor,
            Err(poisoned) => *poisoned.into_inner() = actor,
        }
    }

    pub fn get(&self) -> Option<R> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl<M: Message> ActorSlot<ActorRef<M>> {
    /// True when the current actor runs: a liveness check that never waits on it.
    pub fn alive(&self) -> bool {
        self.get()
            .is_some_and(|actor| actor.get_status() == ractor::ActorStatus::Running)
    }
}

fn unavailable(what: &str) -> DomainError {
    DomainError::Unavailable(format!("{what} not running"))
}

/// Calls a keyed factory and waits for the reply: a missing or dead actor is `Unavailable`
/// (503), a reply past `timeout` is `Timeout` (504).
pub async fn call_factory<K, M, T, F>(
    slot: &ActorSlot<FactoryRef<K, M>>,
    key: K,
    timeout: Duration,
    what: &str,
    build: F,
) -> DomainResult<T>
where
    K: JobKey,
    M: Message,
    T: Send + 'static,
    F: FnOnce(RpcReplyPort<T>) -> M,
    FactoryMessage<K, M>: Message,
{
    let factory = slot.get().ok_or_else(|| unavailable(what))?;
    let _admitted = slot.admit(what)?;
    match factory.call_job(key, build, Some(timeout)).await {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => Err(DomainError::Timeout(format!("{what} call"))),
        Ok(CallResult::SenderError) => Err(DomainError::Unavailable(format!(
            "{what} dropped the request"
        ))),
        Err(_) => Err(unavailable(what)),
    }
}

/// Runs one command of `key` for its caller and sends the outcome back. A caller that stopped
/// waiting (its call timed out and it answered 504) is not served: its command is dropped
/// before it starts, so a client told "timed out, please retry" does not find the write applied
/// later, behind its retry. A command already running when its caller gives up completes.
pub async fn serve<T, W>(what: &str, key: &str, reply: RpcReplyPort<T>, work: W)
where
    T: Send + 'static,
    W: std::future::Future<Output = T>,
{
    if reply.is_closed() {
        tracing::info!(
            actor = what,
            key,
            "caller stopped waiting; command dropped unstarted"
        );
        return;
    }
    let outcome = work.await;
    if reply.send(outcome).is_err() {
        tracing::debug!(actor = what, key, "reply dropped by caller");
    }
}

/// Calls a plain actor and waits for the reply, with the same error mapping.
pub async fn call_actor<M, T, F>(
    slot: &ActorSlot<ActorRef<M>>,
    timeout: Duration,
    what: &str,
    build: F,
) -> DomainResult<T>
where
    M: Message,
    T: Send + 'static,
    F: FnOnce(RpcReplyPort<T>) -> M,
{
    let actor = slot.get().ok_or_else(|| unavailable(what))?;
    let _admitted = slot.admit(what)?;
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => Err(DomainError::Timeout(format!("{what} call"))),
        Ok(CallResult::SenderError) => Err(DomainError::Unavailable(format!(
            "{what} dropped the request"
        ))),
        Err(_) => Err(unavailable(what)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
    use tokio::sync::Semaphore;

    use super::*;

    /// Answers each call once the test opens its gate.
    struct Gated;

    impl Actor for Gated {
        type Msg = RpcReplyPort<()>;
        type State = Arc<Semaphore>;
        type Arguments = Arc<Semaphore>;

        async fn pre_start(
            &self,
            _myself: ActorRef<Self::Msg>,
            gate: Arc<Semaphore>,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(gate)
        }

        async fn handle(
            &self,
            _myself: ActorRef<Self::Msg>,
            reply: RpcReplyPort<()>,
            gate: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            let _ = reply.send(());
            Ok(())
        }
    }

    #[tokio::test]
    async fn calls_past_the_mailbox_limit_are_refused_at_once() {
        let gate = Arc::new(Semaphore::new(0));
        let (actor, _handle) = Actor::spawn(None, Gated, Arc::clone(&gate))
            .await
            .expect("actor");
        let slot = ActorSlot::with_mailbox_limit(2);
        slot.set(Some(actor));
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let slot = slot.clone();
                tokio::spawn(async move {
                    call_actor(&slot, Duration::from_secs(30), "gated", |reply| reply).await
                })
            })
            .collect();
        // Let both calls take their places (each does before its first wait).
        while slot.in_flight.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = call_actor(&slot, Duration::from_secs(30), "gated", |reply| reply).await;
        assert!(
            matches!(&refused, Err(DomainError::Unavailable(what)) if what == "gated is overloaded"),
            "{refused:?}"
        );
        gate.add_permits(3);
        for call in waiting {
            assert!(call.await.expect("joined").is_ok());
        }
        // Places are given back: the next call goes through.
        call_actor(&slot, Duration::from_secs(30), "gated", |reply| reply)
            .await
            .expect("admitted again");
    }
}
