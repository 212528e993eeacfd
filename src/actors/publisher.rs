//! The event publisher: hands every domain event of the outbox to the configured sink (a Redis
//! stream, `[events] redis_stream`) in outbox order, and acknowledges a batch only once the
//! sink took it. It is a competing outbox consumer named `event-publisher`: one instance
//! publishes at a time, and when it dies another takes the stream over after the lease
//! (`[store] lease_ttl_ms`) and goes on from the last acknowledged event. A batch published
//! before a crash, and not yet acknowledged, is offered again; every event carries its outbox
//! position, which the Redis stream takes as the entry's id, so it keeps each event once.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::slot::ActorSlot;
use super::supervisor::{ChildSpec, Restart};
use crate::clock::Clock;
use crate::notify::{EventSink, PublishedEvent};
use crate::storage::consumer::OutboxConsumer;
use crate::storage::{ConsumerMode, Store, StoreError, Topic};

/// The outbox consumer name of the publisher.
pub const PUBLISHER_CONSUMER: &str = "event-publisher";

const BATCH: usize = 500;
/// How often the publisher looks at the outbox without being woken (other instances' commits,
/// retries after a failure, taking the stream over).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

pub struct PublisherContext {
    /// The store behind the cache.
    pub store: Arc<dyn Store>,
    pub sink: Arc<dyn EventSink>,
    pub clock: Arc<dyn Clock>,
    /// This instance's id: the holder of the lease.
    pub instance: String,
    pub lease_ttl_ms: i64,
}

impl PublisherContext {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

pub enum PublisherMessage {
    /// Something may be waiting in the outbox.
    Wake,
}

pub struct PublisherState {
    context: Arc<PublisherContext>,
    consumer: Option<OutboxConsumer>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

pub struct Publisher;

impl Actor for Publisher {
    type Msg = PublisherMessage;
    type State = PublisherState;
    type Arguments = Arc<PublisherContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        context: Arc<PublisherContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let consumer = OutboxConsumer::start(
            Arc::clone(&context.store),
            PUBLISHER_CONSUMER,
            ConsumerMode::Competing,
            &context.instance,
            context.lease_ttl_ms,
            context.now_ms(),
        )
        .await
        .map_err(|e| -> ActorProcessingErr { Box::new(e) })?;
        let me = myself.clone();
        let watcher =
            super::waker::spawn_waker(context.store.commit_signal(), POLL_INTERVAL, move || {
                me.cast(PublisherMessage::Wake).is_ok()
            });
        Ok(PublisherState {
            context,
            consumer: Some(consumer),
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
            PublisherMessage::Wake => {
                if let Err(error) = drain(state).await {
                    tracing::warn!(error = %error, "event publication paused, will retry");
                }
            }
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
        // A clean stop hands the stream over at once instead of after the lease.
        if let Some(consumer) = state.consumer.take()
            && let Err(error) = consumer.stop().await
        {
            tracing::warn!(error = %error, "could not give the publication lease up");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] crate::notify::SinkError),
}

/// Publishes outbox records until none is left, the sink refuses, or another instance holds
/// the stream.
async fn drain(state: &mut PublisherState) -> Result<(), DrainError> {
    let Some(consumer) = state.consumer.as_mut() else {
        return Ok(());
    };
    loop {
        let now = state.context.now_ms();
        let Some(records) = consumer.next_batch(BATCH, now).await? else {
            return Ok(());
        };
        let last = records.last().map(|r| r.cursor.clone()).unwrap_or_default();
        // Notifications and bulk uploads are work for the dispatcher and the bulk runner, not
        // domain events.
        let events: Vec<PublishedEvent> = records
            .into_iter()
            .filter(|record| !matches!(record.event.topic, Topic::Notification | Topic::Bulk))
            .map(|record| PublishedEvent {
                topic: record.event.topic.name().to_string(),
                entity_id: record.event.entity_id,
                version: record.event.version,
                position: hex::encode(record.cursor.as_bytes()),
                order: order_of(record.cursor.as_bytes()),
                event: record
                    .event
                    .payload
                    .get("event")
                    .and_then(|name| name.as_str())
                    .map(|name| (name.to_string(), record.event.payload.to_string())),
            })
            .collect();
        if !events.is_empty() {
            state.context.sink.publish(&events).await?;
        }
        match consumer.acknowledge(&last, state.context.now_ms()).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost(_)) => {
                tracing::info!("another instance took the event publication over");
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// An outbox position as two numbers in the same order: its first 8 bytes and the next 8,
/// each big-endian (the cursors of one store all have one length: 8 bytes on redb and
/// PostgreSQL, 12 on Scylla).
fn order_of(cursor: &[u8]) -> (u64, u64) {
    let number = |bytes: &[u8]| {
        bytes
            .iter()
            .take(8)
            .fold(0u64, |n, byte| (n << 8) | u64::from(*byte))
    };
    let (high, low) = cursor.split_at(cursor.len().min(8));
    (number(high), number(low))
}

/// The publisher as a child of the root supervisor, published in `slot`.
pub fn child_spec(
    context: Arc<PublisherContext>,
    slot: ActorSlot<ActorRef<PublisherMessage>>,
) -> ChildSpec {
    ChildSpec::new("publisher", Restart::Permanent, slot, move |supervisor| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            let (publisher, _handle) =
                Actor::spawn_linked(None, Publisher, context, supervisor).await?;
            Ok(publisher)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_become_ordered_number_pairs() {
        assert_eq!(order_of(&7u64.to_be_bytes()), (7, 0));
        let mut scylla = 300u64.to_be_bytes().to_vec();
        scylla.extend(2u32.to_be_bytes());
        assert_eq!(order_of(&scylla), (300, 2));
        let mut later = 300u64.to_be_bytes().to_vec();
        later.extend(3u32.to_be_bytes());
        assert!(order_of(&later) > order_of(&scylla));
    }
}
