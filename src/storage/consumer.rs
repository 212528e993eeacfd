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

    /// Renews a competing consumer's lease between pieces of long work (a batch whose
    /// application takes a while): true while this instance still holds the same lease, false
    /// once it lapsed or another took it (stop, the new holder goes on). Always true for an
    /// each-instance consumer.
    pub async fn renew(&mut self, now_ms: i64) -> Result<bool, StoreError> {
        if self.mode == ConsumerMode::EachInstance {
            return Ok(true);
        }
        let Some(held) = self.lease.clone() else {
            return Ok(false);
        };
        let lease = self
            .store
            .acquire_lease(&self.name, &self.holder, now_ms, self.lease_ttl_ms)
            .await?;
        let same = lease.as_ref().is_some_and(|now| now.token == held.token);
        self.lease = lease.filter(|_| same);
        Ok(same)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::redb_store::RedbStore;

    #[tokio::test]
    async fn a_renewal_holds_the_lease_until_another_instance_took_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("store"));
        let start = |instance: &'static str| {
            let store = Arc::clone(&store);
            async move {
                OutboxConsumer::start(
                    store,
                    "renewed",
                    ConsumerMode::Competing,
                    instance,
                    1_000,
                    0,
                )
                .await
                .expect("start")
            }
        };
        let (mut a, mut b) = (start("a").await, start("b").await);
        a.next_batch(10, 0).await.expect("a takes the lease");
        assert!(a.holds_the_stream());
        // Renewed at 900, a still holds it at 1,500 (past the first expiry).
        assert!(a.renew(900).await.expect("renew"));
        assert!(b.next_batch(10, 1_500).await.expect("b asks").is_none());
        assert!(!b.holds_the_stream());
        // a stops renewing; b takes over once the lease ran out, and a learns it.
        b.next_batch(10, 2_000).await.expect("b takes the lease");
        assert!(b.holds_the_stream());
        assert!(!a.renew(2_001).await.expect("renew"));
        assert!(!a.holds_the_stream());
    }
}
