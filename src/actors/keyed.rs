//! Keyed factories: a pool of workers where every job with one key runs in order on one worker
//! (`KeyPersistentRouting`), which is how entity owners serialise mutations of one entity.

use ractor::factory::{
    Factory, FactoryArguments, FactoryRef, Worker, queues, routing, worker_builder,
};
use ractor::{Actor, ActorCell, ActorProcessingErr, Message};

/// Spawns a factory of `workers` workers built by `build`, linked to `supervisor`.
pub async fn spawn_keyed_factory<W, F>(
    build: F,
    workers: usize,
    supervisor: ActorCell,
) -> Result<
    (
        FactoryRef<String, W::Message>,
        ractor::concurrency::JoinHandle<()>,
    ),
    ActorProcessingErr,
>
where
    W: Worker<Key = String>,
    W::Arguments: Clone + Sync,
    W::Message: Message,
    F: Fn() -> (W, W::Arguments) + Send + Sync + 'static,
{
    let factory = Factory::<
        String,
        W::Message,
        W::Arguments,
        W,
        routing::KeyPersistentRouting<String, W::Message>,
        queues::DefaultQueue<String, W::Message>,
    >::default();
    let arguments = FactoryArguments::builder()
        .worker_builder(Box::new(worker_builder(move |_wid| build())))
        .queue(Default::default())
        .router(Default::default())
        .num_initial_workers(workers)
        .build();
    let (factory_ref, handle) = Actor::spawn_linked(None, factory, arguments, supervisor).await?;
    Ok((factory_ref, handle))
}
