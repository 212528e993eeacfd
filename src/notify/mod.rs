//! What leaves the service for the outside: domain events published to a Redis stream
//! (`[events]`), for consumers outside userorg, and email and SMS messages (`[notifications]`),
//! with the templates they are rendered from. Every sink is a trait, fed by an outbox consumer
//! in the actors layer (the publisher, the notification dispatcher).

pub mod email;
pub mod redis_stream;
pub mod sms;
pub mod templates;

use async_trait::async_trait;

/// One domain event as published: the entity that changed, the version it reached, and the
/// outbox position it came from (hex), by which an outside consumer drops a repeat. `order` is
/// the position as two numbers, in the same order: a sink that can use it as the entry's id
/// (a Redis stream) takes each event once even when two instances offer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedEvent {
    pub topic: String,
    pub entity_id: String,
    pub version: u64,
    pub position: String,
    pub order: (u64, u64),
    /// A named domain event the change carries (`user.merged`) and its data as JSON; `None`
    /// for a plain change of the entity.
    pub event: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination could not take the events; they are offered again later.
    #[error("event sink unavailable: {0}")]
    Unavailable(String),
}

/// Where domain events go. `publish` returns once every event is durably taken, in order;
/// after a failure (or a crash before the outbox acknowledgement) the same events are
/// offered again, so a sink that cannot recognise them delivers at least once.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    async fn publish(&self, events: &[PublishedEvent]) -> Result<(), SinkError>;
}
