//! The bulk upload runner: a competing outbox consumer named `bulk-upload-runner` that runs
//! each uploaded process (`bulk_upload_process`) row by row through [`BulkRows`], the same
//! services and owners a single create or update goes through, and ends it COMPLETED with
//! its counts.
//!
//! Exactly once per row: a row that succeeds writes its effect (the user, its claims, its
//! messages) and its done mark in one commit, the mark expecting the task's version; a row
//! that fails wrote nothing, and its failure mark is committed alone. A crash, or a lease
//! lost to another instance, leaves every task either done (skipped when met again) or not
//! (run again, with nothing of it written before). The process event is acknowledged only
//! once the process is done, so a restart resumes at its first task not done.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::slot::ActorSlot;
use super::supervisor::{ChildSpec, Restart};
use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::bulk::{
    ProcessRecord, STATUS_COMPLETED, STATUS_FAILED, STATUS_IN_PROGRESS, STATUS_NEW, TaskRecord,
};
use crate::domain::{DomainError, DomainResult};
use crate::storage::consumer::OutboxConsumer;
use crate::storage::records::get_record;
use crate::storage::{
    ConsumerMode, Expect, Store, StoreError, Table, Topic, Transaction, Versioned, key_prefix,
};

/// The outbox consumer name of the runner.
pub const RUNNER_CONSUMER: &str = "bulk-upload-runner";

const BATCH: usize = 20;
const TASK_PAGE: usize = 200;
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What a row came to.
pub enum RowOutcome {
    /// Applied: the effect and `mark` committed together.
    Done,
    /// Refused; nothing was written. The failure result to record.
    Failed(serde_json::Value),
}

/// Runs one row of a process (implemented by the services, which own the rules). `done` is
/// the task's done mark: it must be committed with the row's effect, or not at all.
#[async_trait]
pub trait BulkRows: Send + Sync + 'static {
    async fn run(
        &self,
        process: &ProcessRecord,
        task: &Versioned<TaskRecord>,
    ) -> DomainResult<RowOutcome>;

    /// The done mark of a failed row (its failure result sealed into the task).
    fn failed(
        &self,
        process: &ProcessRecord,
        task: &Versioned<TaskRecord>,
        failure: serde_json::Value,
    ) -> DomainResult<Transaction>;
}

pub struct BulkContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub instance: String,
    pub lease_ttl_ms: i64,
    /// Set once the services exist (they are built after the actors); until then the runner
    /// leaves the processes waiting.
    pub rows: Arc<OnceLock<Arc<dyn BulkRows>>>,
}

impl BulkContext {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

pub enum BulkMessage {
    /// A process may be waiting in the outbox.
    Wake,
    /// Runs every process waiting now, then answers (operators' and tests' "run now").
    Flush(RpcReplyPort<DomainResult<()>>),
}

/// The runner's typed client.
#[derive(Clone)]
pub struct BulkClient {
    slot: ActorSlot<ActorRef<BulkMessage>>,
    timeout: Duration,
}

impl BulkClient {
    pub fn new(slot: ActorSlot<ActorRef<BulkMessage>>, timeout: Duration) -> Self {
        BulkClient { slot, timeout }
    }

    /// Runs the processes uploaded before the call and waits for them.
    pub async fn flush(&self) -> DomainResult<()> {
        super::slot::call_actor(
            &self.slot,
            self.timeout,
            "bulk upload runner",
            BulkMessage::Flush,
        )
        .await?
    }
}

pub struct BulkState {
    context: Arc<BulkContext>,
    consumer: Option<OutboxConsumer>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

pub struct BulkRunner;

impl Actor for BulkRunner {
    type Msg = BulkMessage;
    type State = BulkState;
    type Arguments = Arc<BulkContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        context: Arc<BulkContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let consumer = OutboxConsumer::start(
            Arc::clone(&context.store),
            RUNNER_CONSUMER,
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
                me.cast(BulkMessage::Wake).is_ok()
            });
        Ok(BulkState {
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
        let outcome = drain(state).await;
        if let Err(error) = &outcome {
            tracing::warn!(error = %error, "bulk uploads paused, will retry");
        }
        if let BulkMessage::Flush(reply) = message {
            let _ = reply.send(outcome);
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
        if let Some(consumer) = state.consumer.take()
            && let Err(error) = consumer.stop().await
        {
            tracing::warn!(error = %error, "could not give the bulk upload lease up");
        }
        Ok(())
    }
}

async fn drain(state: &mut BulkState) -> DomainResult<()> {
    let Some(consumer) = state.consumer.as_mut() else {
        return Ok(());
    };
    let context = Arc::clone(&state.context);
    let Some(rows) = context.rows.get().cloned() else {
        return Ok(());
    };
    loop {
        let Some(records) = consumer.next_batch(BATCH, context.now_ms()).await? else {
            return Ok(());
        };
        let last = records.last().map(|r| r.cursor.clone()).unwrap_or_default();
        for record in records {
            if record.event.topic != Topic::Bulk {
                continue;
            }
            if !run_process(&context, consumer, rows.as_ref(), &record.event.entity_id).await? {
                tracing::info!("the bulk upload lease lapsed mid-process; the new holder goes on");
                return Ok(());
            }
        }
        match consumer.acknowledge(&last, context.now_ms()).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost(_)) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
}

fn now(context: &BulkContext) -> String {
    sunbird_timestamp(context.clock.now())
}

/// Writes the process's new state, expecting the version it was read at.
async fn save_process(
    context: &BulkContext,
    process: &Versioned<ProcessRecord>,
) -> Result<u64, StoreError> {
    let mut transaction = Transaction::default();
    transaction.put_record(
        Table::BulkProcess,
        &process.key,
        &process.record,
        Expect::Version(process.version),
    )?;
    context.store.commit(transaction).await?;
    Ok(process.version + 1)
}

/// Runs every task of `id` not done yet, then ends the process. False when the lease was
/// lost (the new holder goes on).
async fn run_process(
    context: &BulkContext,
    consumer: &mut OutboxConsumer,
    rows: &dyn BulkRows,
    id: &str,
) -> DomainResult<bool> {
    let Some(mut process) =
        get_record::<ProcessRecord>(&context.store, Table::BulkProcess, id).await?
    else {
        return Ok(true);
    };
    if process.record.is_done() {
        return Ok(true);
    }
    if process.record.status == STATUS_NEW {
        process.record.status = STATUS_IN_PROGRESS;
        process.record.process_start_time = Some(now(context));
        process.version = save_process(context, &process).await?;
    }
    let prefix = key_prefix(id);
    let mut after: Option<String> = None;
    let (mut successes, mut failures) = (0u64, 0u64);
    loop {
        let page = context
            .store
            .scan(Table::BulkTask, &prefix, after.as_deref(), TASK_PAGE)
            .await?;
        let Some(last) = page.last().map(|row| row.key.clone()) else {
            break;
        };
        for row in page {
            let task = Versioned {
                key: row.key.clone(),
                version: row.version,
                record: serde_json::from_value::<TaskRecord>(row.doc)
                    .map_err(DomainError::internal)?,
            };
            match task.record.status {
                STATUS_COMPLETED => {
                    successes += 1;
                    continue;
                }
                STATUS_FAILED => {
                    failures += 1;
                    continue;
                }
                _ => {}
            }
            if !consumer.renew(context.now_ms()).await? {
                return Ok(false);
            }
            let outcome = match rows.run(&process.record, &task).await {
                // The store or a service is down: the process waits for the next round.
                Err(error @ (DomainError::Unavailable(_) | DomainError::Timeout(_))) => {
                    return Err(error);
                }
                // Anything else is this row's alone (a row that cannot be opened, say): it
                // fails, so one broken row never holds the process, and every later upload,
                // back for good.
                Err(error) => {
                    tracing::error!(process.id = %id, task = %task.key, error = %error, "a bulk row cannot run");
                    RowOutcome::Failed(serde_json::json!({
                        "err_msg": "Process failed,please try again later."
                    }))
                }
                Ok(outcome) => outcome,
            };
            match outcome {
                RowOutcome::Done => successes += 1,
                RowOutcome::Failed(failure) => {
                    let mark = rows.failed(&process.record, &task, failure)?;
                    match context.store.commit(mark).await {
                        Ok(_) => failures += 1,
                        // Another holder marked it meanwhile: theirs stands.
                        Err(StoreError::Conflict { .. }) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
            }
        }
        after = Some(last);
    }
    process.record.status = STATUS_COMPLETED;
    process.record.success_count = successes;
    process.record.failure_count = failures;
    process.record.process_end_time = Some(now(context));
    match save_process(context, &process).await {
        Ok(_) => {}
        // Another holder ended it meanwhile.
        Err(StoreError::Conflict { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    tracing::info!(process.id = %id, successes, failures, "bulk upload completed");
    Ok(true)
}

/// The runner as a child of the root supervisor.
pub fn child_spec(context: Arc<BulkContext>, slot: ActorSlot<ActorRef<BulkMessage>>) -> ChildSpec {
    ChildSpec::new("bulk-runner", Restart::Permanent, slot, move |supervisor| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            let (runner, _handle) =
                Actor::spawn_linked(None, BulkRunner, context, supervisor).await?;
            Ok(runner)
        })
    })
}
