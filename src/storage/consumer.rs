//! Tailing the outbox as one consumer, in either [`ConsumerMode`]: the loop every background
//! consumer (the indexer today; notifications and jobs later) runs on top of the store contract.
//!
//! ```text
//! loop { batch = next_batch(now)?; apply(batch); acknowledge(last cursor, now)? }
//! ```
//!
//! A competing consumer takes (or renews) its lease before every batch; without it the batch is
//! `None` and the cursor follows the holder's. An acknowledgement refused with
//! [`StoreError::LeaseLost`] means another instance took over: the batch may be applied again
//! there, which is harmless because events carry versions. Delivery is therefore at least once;
//! a holder that stops between batches hands over with nothing applied twice.

use std::sync::Arc;

use super::{Acknowledgement, ConsumerMode, Lease, OutboxCursor, OutboxRecord, Store, StoreError};

pub struct OutboxConsumer {
    store: Arc<dyn Store>,
    name: String,
    mode: ConsumerMode,
    holder: String,
    lease_ttl_ms: i64,
    lease: Option<Lease>,
    cursor: OutboxCursor,
}

impl OutboxConsumer {
    /// Registers the consumer and reads where it resumes. `name` is the stream's consumer name;
    /// an each-instance consumer keeps its cursor under `name@instance`.
    pub async fn start(
        store: Arc<dyn Store>,
        name: &str,
        mode: ConsumerMode,
        instance: &str,
        lease_ttl_ms: i64,
        now_ms: i64,
    ) -> Result<OutboxConsumer, StoreError> {
        let name = match mode {
            ConsumerMode::Competing => name.to_string(),
            ConsumerMode::EachInstance => format!("{name}@{instance}"),
        };
        store.register_consumer(&name, now_ms).await?;
        let cursor = store.consumer_cursor(&name).await?;
        Ok(OutboxConsumer {
            store,
            name,
            mode,
            holder: instance.to_string(),
            lease_ttl_ms,
            lease: None,
            cursor,
        })
    }

    /// The consumer name the cursor is kept under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything up to here is applied (by this instance or, competing, by the holder).
    pub fn cursor(&self) -> &OutboxCursor {
        &self.cursor
    }

    /// True while this instance may apply the stream.
    pub fn holds_the_stream(&self) -> bool {
        self.mode == ConsumerMode::EachInstance || self.lease.is_some()
    }

    /// The next records to apply; `None` when there is nothing new, or when another instance
    /// holds a competing stream.
    pub async fn next_batch(
        &mut self,
        limit: usize,
        now_ms: i64,
    ) -> Result<Option<Vec<OutboxRecord>>, StoreError> {
        if self.mode == ConsumerMode::Competing {
            let lease = self
                .store
                .acquire_lease(&self.name, &self.holder, now_ms, self.lease_ttl_ms)
                .await?;
            let taken_over = match (&self.lease, &lease) {
                (Some(before), Some(now)) => before.token != now.token,
                (None, Some(_)) => true,
                _ => false,
            };
            self.lease = lease;
            if self.lease.is_none() || taken_over {
                // Another holder moved the cursor meanwhile: resume from the stored one.
                self.cursor = self.store.consumer_cursor(&self.name).await?;
            }
            if self.lease.is_none() {
                return Ok(None);
            }
        }
        let records = self.store.read_outbox(&self.cursor, limit).await?;
        Ok((!records.is_empty()).then_some(records))
    }

    /// Records that everything up to `cursor` is applied.
    pub async fn acknowledge(
        &mut self,
        cursor: &OutboxCursor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let outcome = self
            .store
            .acknowledge(Acknowledgement {
                consumer: &self.name,
                cursor,
                lease: self.lease.as_ref(),
                now_ms,
            })
            .await;
        match outcome {
            Ok(()) => {
                if *cursor > self.cursor {
                    self.cursor = cursor.clone();
                }
                Ok(())
            }
            Err(StoreError::LeaseLost(consumer)) => {
                self.lease = None;
                Err(StoreError::LeaseLost(consumer))
            }
            Err(other) => Err(other),
        }
    }

    /// A clean stop: gives a competing lease up so another instance takes over at once.
    pub async fn stop(mut self) -> Result<(), StoreError> {
        match self.lease.take() {
            Some(lease) => self.store.release_lease(&lease).await,
            None => Ok(()),
        }
    }
}
