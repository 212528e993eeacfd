//! The scheduler: periodic housekeeping, run once across all instances. Every
//! `[scheduler] interval_seconds` each instance tries to take the `scheduler` lease in the
//! store (the same lease the competing outbox consumers use); the holder runs the jobs, the
//! others skip that round, and when the holder dies another takes the lease after it expires.
//!
//! Jobs: expired OTP codes and send counts older than a day deleted; sessions past their end
//! deleted; expired set-password links deleted; dead letters counted and reported in the log.
//! Each deletion expects the version it read, so a row changed meanwhile stays.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::slot::ActorSlot;
use super::supervisor::{ChildSpec, Restart};
use crate::clock::Clock;
use crate::domain::notification::{DeliveryState, NotificationRecord};
use crate::domain::otp::{OtpRecord, OtpSends};
use crate::domain::signin::SessionRecord;
use crate::domain::{DomainResult, Record};
use crate::storage::{Expect, Row, Store, StoreError, Table, Transaction};

/// The lease name the scheduler runs under.
pub const SCHEDULER_LEASE: &str = "scheduler";
const PAGE: usize = 1_000;
const DAY_MS: i64 = 24 * 3_600_000;

pub struct SchedulerContext {
    /// The store behind the cache.
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub instance: String,
    pub interval: Duration,
}

impl SchedulerContext {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// False when another instance holds the lease (nothing was done here).
    pub ran: bool,
    pub otp_rows: usize,
    pub sessions: usize,
    pub reset_links: usize,
    pub dead_letters: usize,
}

pub enum SchedulerMessage {
    Tick,
    /// Runs a round now and answers what it did.
    RunNow(RpcReplyPort<DomainResult<SweepReport>>),
}

#[derive(Clone)]
pub struct SchedulerClient {
    slot: ActorSlot<ActorRef<SchedulerMessage>>,
    timeout: Duration,
}

impl SchedulerClient {
    pub fn new(slot: ActorSlot<ActorRef<SchedulerMessage>>, timeout: Duration) -> Self {
        SchedulerClient { slot, timeout }
    }

    pub async fn run_now(&self) -> DomainResult<SweepReport> {
        super::slot::call_actor(
            &self.slot,
            self.timeout,
            "scheduler",
            SchedulerMessage::RunNow,
        )
        .await?
    }
}

pub struct Scheduler;

impl Actor for Scheduler {
    type Msg = SchedulerMessage;
    type State = Arc<SchedulerContext>;
    type Arguments = Arc<SchedulerContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        context: Arc<SchedulerContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(context.interval, || SchedulerMessage::Tick);
        Ok(context)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        context: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let outcome = run_round(context).await;
        match (&outcome, message) {
            (_, SchedulerMessage::RunNow(reply)) => {
                let _ = reply.send(outcome);
            }
            (Err(error), SchedulerMessage::Tick) => {
                tracing::warn!(error = %error, "scheduled housekeeping failed, will retry");
            }
            (Ok(_), SchedulerMessage::Tick) => {}
        }
        Ok(())
    }
}

/// One round: the jobs, if this instance holds the lease.
pub async fn run_round(context: &SchedulerContext) -> DomainResult<SweepReport> {
    let now = context.now_ms();
    // The lease outlives the round by one interval: a holder that dies mid-round is replaced
    // after that.
    let ttl = (context.interval.as_millis() as i64).max(1_000) * 2;
    let lease = context
        .store
        .acquire_lease(SCHEDULER_LEASE, &context.instance, now, ttl)
        .await?;
    if lease.is_none() {
        return Ok(SweepReport::default());
    }
    let mut report = SweepReport {
        ran: true,
        ..SweepReport::default()
    };
    report.otp_rows = sweep(&context.store, Table::Otp, |row| {
        if let Some(code) = OtpRecord::from_doc(&row.doc)
            && row.key.starts_with("code")
        {
            return code.expires_ms <= now;
        }
        OtpSends::from_doc(&row.doc)
            .is_some_and(|sends| sends.sent_ms.iter().all(|sent| now - *sent >= DAY_MS))
    })
    .await?;
    report.sessions = sweep(&context.store, Table::UserSession, |row| {
        SessionRecord::from_doc(&row.doc).is_some_and(|session| session.expires_ms <= now)
    })
    .await?;
    report.reset_links = sweep(&context.store, Table::ResetLink, |row| {
        row.doc
            .get("expiresMs")
            .and_then(serde_json::Value::as_i64)
            .is_some_and(|expires| expires <= now)
    })
    .await?;
    report.dead_letters = count(&context.store, Table::Notification, |row| {
        NotificationRecord::from_doc(&row.doc)
            .is_some_and(|message| message.state == DeliveryState::Dead)
    })
    .await?;
    if report.dead_letters > 0 {
        tracing::warn!(
            dead_letters = report.dead_letters,
            "messages given up on wait for `userorg notifications retry`"
        );
    }
    if report.otp_rows + report.sessions + report.reset_links > 0 {
        tracing::info!(
            otp_rows = report.otp_rows,
            sessions = report.sessions,
            reset_links = report.reset_links,
            "expired rows swept"
        );
    }
    Ok(report)
}

/// Deletes every row of `table` that `expired` picks, each at the version read.
async fn sweep(
    store: &Arc<dyn Store>,
    table: Table,
    expired: impl Fn(&Row) -> bool,
) -> DomainResult<usize> {
    let mut deleted = 0;
    let mut after: Option<String> = None;
    loop {
        let rows = store.scan(table, "", after.as_deref(), PAGE).await?;
        let Some(last) = rows.last().map(|row| row.key.clone()) else {
            return Ok(deleted);
        };
        for row in rows.iter().filter(|row| expired(row)) {
            let mut transaction = Transaction::default();
            transaction.delete(table, &row.key, Expect::Version(row.version));
            match store.commit(transaction).await {
                Ok(_) => deleted += 1,
                Err(StoreError::Conflict { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        after = Some(last);
    }
}

async fn count(
    store: &Arc<dyn Store>,
    table: Table,
    wanted: impl Fn(&Row) -> bool,
) -> DomainResult<usize> {
    let mut found = 0;
    let mut after: Option<String> = None;
    loop {
        let rows = store.scan(table, "", after.as_deref(), PAGE).await?;
        let Some(last) = rows.last().map(|row| row.key.clone()) else {
            return Ok(found);
        };
        found += rows.iter().filter(|row| wanted(row)).count();
        after = Some(last);
    }
}

pub fn child_spec(
    context: Arc<SchedulerContext>,
    slot: ActorSlot<ActorRef<SchedulerMessage>>,
) -> ChildSpec {
    ChildSpec::new("scheduler", Restart::Permanent, slot, move |supervisor| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            let (scheduler, _handle) =
                Actor::spawn_linked(None, Scheduler, context, supervisor).await?;
            Ok(scheduler)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::storage::redb_store::RedbStore;

    #[tokio::test]
    async fn one_instance_runs_a_round_and_another_takes_over_after_the_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("store"));
        let clock = Arc::new(ManualClock::at(chrono::Local::now()));
        let context = |instance: &str| SchedulerContext {
            store: Arc::clone(&store),
            clock: clock.clone(),
            instance: instance.into(),
            interval: Duration::from_secs(60),
        };
        let (a, b) = (context("a"), context("b"));
        assert!(run_round(&a).await.expect("round").ran);
        assert!(
            !run_round(&b).await.expect("round").ran,
            "a holds the lease"
        );
        assert!(
            run_round(&a).await.expect("round").ran,
            "the holder renews it"
        );
        // a stops renewing: two intervals later b takes over.
        clock.advance(chrono::Duration::seconds(121));
        assert!(run_round(&b).await.expect("round").ran);
        assert!(!run_round(&a).await.expect("round").ran);
    }
}
