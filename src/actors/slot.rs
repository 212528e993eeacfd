//! Where clients find the current reference of a supervised actor: the supervisor replaces it
//! after a restart, so clients never hold a stale `ActorRef`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::factory::{FactoryMessage, FactoryRef, JobKey};
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::domain::{DomainError, DomainResult};

/// A shared, replaceable actor reference.
pub struct ActorSlot<R> {
    current: Arc<RwLock<Option<R>>>,
}

impl<R> Clone for ActorSlot<R> {
    fn clone(&self) -> Self {
        ActorSlot {
            current: Arc::clone(&self.current),
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
        ActorSlot {
            current: Arc::new(RwLock::new(None)),
        }
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
    match factory.call_job(key, build, Some(timeout)).await {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => Err(DomainError::Timeout(format!("{what} call"))),
        Ok(CallResult::SenderError) => Err(DomainError::Unavailable(format!(
            "{what} dropped the request"
        ))),
        Err(_) => Err(unavailable(what)),
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
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => Err(DomainError::Timeout(format!("{what} call"))),
        Ok(CallResult::SenderError) => Err(DomainError::Unavailable(format!(
            "{what} dropped the request"
        ))),
        Err(_) => Err(unavailable(what)),
    }
}
