//! The notification dispatcher: delivers the email and SMS messages of the `notification`
//! table, and the calls to other services queued there the same way (the content service's
//! channel registration). A message is recorded (sealed) in the same commit as the change that causes it, with
//! an outbox event ([`enqueue`]); the dispatcher is a competing outbox consumer named
//! `notification-dispatcher`, so one instance sends at a time and another takes over after
//! the lease when it dies.
//!
//! For each message: open it, send it (at most `concurrency` at once), then record the
//! outcome on its row with a version check. Delivered is final: a message whose row says
//! delivered is never sent again, whoever meets its event again (a replayed batch after a
//! crash, a new lease holder). A failure that may pass puts the message on the
//! `notification_due` list with its next time (exponential backoff with jitter); after
//! `max_attempts`, or at once when the server refused for good, it is dead until an operator
//! revives it (`userorg notifications retry`). The outbox cursor moves only once every
//! message of a batch is delivered, due for a retry, or dead.
//!
//! The one window left is between the server's acceptance and the delivered mark's commit: a
//! crash there sends the message again on restart, with the same `Message-ID`, by which a
//! receiving server or reader can drop the repeat.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

use super::slot::ActorSlot;
use super::supervisor::{ChildSpec, Restart};
use crate::clock::Clock;
use crate::content::{ServiceCall, ServiceCaller};
use crate::crypto::PiiVault;
use crate::domain::notification::{
    DeliveryState, Medium, NotificationRecord, OutgoingMessage, RetryPolicy,
};
use crate::domain::{DomainError, DomainResult, Record};
use crate::notify::email::{Email, EmailSender, SendError};
use crate::notify::sms::{Sms, SmsSender};
use crate::notify::templates::MessageTemplate;
use crate::storage::consumer::OutboxConsumer;
use crate::storage::{ConsumerMode, Expect, Store, StoreError, Table, Topic, Transaction};

/// The outbox consumer name of the dispatcher.
pub const DISPATCHER_CONSUMER: &str = "notification-dispatcher";
/// The kind a message is sealed under (bound to its id).
pub const SEAL_KIND: &str = "notification";

const BATCH: usize = 200;
/// Most messages of the due list looked at in one round.
const DUE_SCAN: usize = 10_000;
/// How often the dispatcher looks without being woken (other instances' commits, taking the
/// stream over); a retry due sooner wakes it at its time.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How messages are addressed and retried (`[notifications]`).
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub from: String,
    pub message_id_domain: String,
    pub retry: RetryPolicy,
    pub concurrency: usize,
}

pub struct DispatcherContext {
    /// The store behind the cache.
    pub store: Arc<dyn Store>,
    pub vault: PiiVault,
    pub email: Arc<dyn EmailSender>,
    pub sms: Arc<dyn SmsSender>,
    /// Where queued service calls go (the content service's channel registration).
    pub calls: Arc<dyn ServiceCaller>,
    pub clock: Arc<dyn Clock>,
    pub instance: String,
    pub lease_ttl_ms: i64,
    pub settings: DispatchSettings,
}

impl DispatcherContext {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

/// A message to queue: what it is, where it comes from, and its text.
pub struct NewMessage<'a> {
    pub channel: Medium,
    /// `notification`, `otp`, `welcome`, ...
    pub source: &'a str,
    pub template: &'a str,
    pub message: &'a OutgoingMessage,
}

/// Adds a message to `transaction`: its sealed row, its outbox event. Answers its id.
pub fn enqueue(
    transaction: &mut Transaction,
    vault: &PiiVault,
    message_id_domain: &str,
    new: NewMessage<'_>,
    now_ms: i64,
) -> DomainResult<String> {
    let NewMessage {
        channel,
        source,
        template,
        message,
    } = new;
    let id = uuid::Uuid::now_v7().simple().to_string();
    let plain = serde_json::to_string(message).map_err(DomainError::internal)?;
    let sealed = vault
        .seal(&id, SEAL_KIND, &plain)
        .map_err(|e| DomainError::internal(anyhow::anyhow!("cannot seal a message: {e}")))?;
    let record = NotificationRecord {
        id: id.clone(),
        channel,
        message_id: format!("<{id}@{message_id_domain}>"),
        source: source.to_string(),
        template: template.to_string(),
        sealed,
        state: DeliveryState::Queued,
        attempts: 0,
        next_attempt_ms: 0,
        last_error: String::new(),
        created_ms: now_ms,
        delivered_ms: 0,
    };
    transaction
        .put_record(Table::Notification, &id, &record, Expect::Absent)
        .map_err(DomainError::from)?;
    transaction.event(Topic::Notification, &id, 1);
    Ok(id)
}

/// The template `name` for `tenant`: the tenant's row (`name␟tenantId`), the installation's
/// (`name`), or the built-in default.
pub async fn find_template(
    store: &Arc<dyn Store>,
    name: &str,
    tenant: Option<&str>,
) -> DomainResult<Option<MessageTemplate>> {
    let mut keys = Vec::new();
    if let Some(tenant) = tenant.filter(|t| !t.is_empty()) {
        keys.push(crate::storage::compose_key(&[name, tenant]));
    }
    keys.push(name.to_string());
    for key in keys {
        if let Some(row) = store.get(Table::MessageTemplate, &key).await? {
            let template: MessageTemplate = serde_json::from_value(row.doc).map_err(|error| {
                DomainError::internal(anyhow::anyhow!(
                    "template row {key} does not parse: {error}"
                ))
            })?;
            return Ok(Some(template));
        }
    }
    Ok(crate::notify::templates::defaults()
        .into_iter()
        .find(|template| template.name == name))
}

/// The message of a row, opened.
pub fn open_message(
    vault: &PiiVault,
    record: &NotificationRecord,
) -> DomainResult<OutgoingMessage> {
    let plain = vault
        .open(&record.id, SEAL_KIND, &record.sealed)
        .map_err(|e| {
            DomainError::internal(anyhow::anyhow!("cannot open message {}: {e}", record.id))
        })?;
    serde_json::from_str(&plain).map_err(DomainError::internal)
}

/// Puts a dead message back in the queue with a fresh budget (`userorg notifications retry`):
/// due at once. Answers false when the message is not dead.
pub async fn revive(store: &Arc<dyn Store>, id: &str) -> DomainResult<bool> {
    crate::storage::retry::read_modify_write(&**store, crate::storage::retry::no_claims, || async {
        let Some(current) = crate::storage::records::get_record::<NotificationRecord>(
            store,
            Table::Notification,
            id,
        )
        .await?
        else {
            return Err(DomainError::not_found("notification"));
        };
        let mut transaction = Transaction::default();
        if current.record.state != DeliveryState::Dead {
            return Ok((transaction, false));
        }
        let mut record = current.record;
        record.revive();
        transaction.put_record(
            Table::Notification,
            id,
            &record,
            Expect::Version(current.version),
        )?;
        transaction.put(Table::NotificationDue, id, json!({"dueMs": 0}), Expect::Any);
        Ok((transaction, true))
    })
    .await
}

pub enum DispatcherMessage {
    /// Something may be waiting in the outbox or on the due list.
    Wake,
    /// Delivers what is waiting and due now, then answers (operators' and tests' "deliver
    /// now": the same round a wake-up runs).
    Flush(RpcReplyPort<DomainResult<()>>),
}

/// The dispatcher's typed client.
#[derive(Clone)]
pub struct DispatcherClient {
    slot: ActorSlot<ActorRef<DispatcherMessage>>,
    timeout: Duration,
}

impl DispatcherClient {
    pub fn new(slot: ActorSlot<ActorRef<DispatcherMessage>>, timeout: Duration) -> Self {
        DispatcherClient { slot, timeout }
    }

    /// Runs one delivery round now and waits for it: everything queued before the call and
    /// every retry due by the clock has been tried when it answers.
    pub async fn flush(&self) -> DomainResult<()> {
        super::slot::call_actor(
            &self.slot,
            self.timeout,
            "dispatcher",
            DispatcherMessage::Flush,
        )
        .await?
    }

    /// The dispatcher's current reference (tests kill it).
    pub fn current(&self) -> Option<ActorRef<DispatcherMessage>> {
        self.slot.get()
    }
}

pub struct DispatcherState {
    context: Arc<DispatcherContext>,
    consumer: Option<OutboxConsumer>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// A wake-up already asked for at a retry's time (ms since the epoch).
    timer_at: Option<i64>,
}

pub struct Dispatcher;

impl Actor for Dispatcher {
    type Msg = DispatcherMessage;
    type State = DispatcherState;
    type Arguments = Arc<DispatcherContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        context: Arc<DispatcherContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let consumer = OutboxConsumer::start(
            Arc::clone(&context.store),
            DISPATCHER_CONSUMER,
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
                me.cast(DispatcherMessage::Wake).is_ok()
            });
        Ok(DispatcherState {
            context,
            consumer: Some(consumer),
            watcher: Some(watcher),
            timer_at: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let reply = match message {
            DispatcherMessage::Wake => None,
            DispatcherMessage::Flush(reply) => Some(reply),
        };
        if state
            .timer_at
            .is_some_and(|at| at <= state.context.now_ms())
        {
            state.timer_at = None;
        }
        let outcome = dispatch(state).await;
        match &outcome {
            Ok(Some(next_due_ms)) => {
                let now = state.context.now_ms();
                let wait = (next_due_ms - now).clamp(0, POLL_INTERVAL.as_millis() as i64);
                if state.timer_at.is_none_or(|at| at > now + wait) {
                    state.timer_at = Some(now + wait);
                    myself.send_after(Duration::from_millis(wait as u64), || {
                        DispatcherMessage::Wake
                    });
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %error, "notification delivery paused, will retry");
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome.map(|_| ()));
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
            tracing::warn!(error = %error, "could not give the notification lease up");
        }
        Ok(())
    }
}

/// Delivers what the outbox brought, then what is due on the retry list. Answers when the
/// earliest retry left is due, if any.
async fn dispatch(state: &mut DispatcherState) -> DomainResult<Option<i64>> {
    let Some(consumer) = state.consumer.as_mut() else {
        return Ok(None);
    };
    let context = Arc::clone(&state.context);
    loop {
        let Some(records) = consumer.next_batch(BATCH, context.now_ms()).await? else {
            break;
        };
        let last = records.last().map(|r| r.cursor.clone()).unwrap_or_default();
        let ids: Vec<String> = records
            .into_iter()
            .filter(|record| record.event.topic == Topic::Notification)
            .map(|record| record.event.entity_id)
            .collect();
        if !deliver_holding(&context, consumer, ids, false).await? {
            tracing::info!("the notification lease lapsed mid-batch; the new holder goes on");
            return Ok(None);
        }
        match consumer.acknowledge(&last, context.now_ms()).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost(_)) => {
                tracing::info!("another instance took the notification delivery over");
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        }
    }
    if !consumer.holds_the_stream() {
        return Ok(None);
    }
    let now = context.now_ms();
    let due_list = context
        .store
        .scan(Table::NotificationDue, "", None, DUE_SCAN)
        .await?;
    let mut due = Vec::new();
    let mut next: Option<i64> = None;
    for row in due_list {
        let at = row.doc.get("dueMs").and_then(|v| v.as_i64()).unwrap_or(0);
        if at <= now {
            due.push(row.key);
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    let retried = !due.is_empty();
    if !deliver_holding(&context, consumer, due, true).await? {
        return Ok(None);
    }
    if retried {
        // The retries may have put messages back on the list: look again soon.
        return Ok(Some(context.now_ms()));
    }
    Ok(next)
}

/// Delivers `ids` a few at a time, renewing the lease before each part: a long batch (slow
/// servers, a long retry list) never runs on past the lease, where another instance would
/// send the same messages. False when the lease was lost (nothing more is sent here).
async fn deliver_holding(
    context: &Arc<DispatcherContext>,
    consumer: &mut OutboxConsumer,
    ids: Vec<String>,
    retries: bool,
) -> DomainResult<bool> {
    let part = context.settings.concurrency.max(1) * 2;
    for chunk in ids.chunks(part) {
        if !consumer.renew(context.now_ms()).await? {
            return Ok(false);
        }
        deliver_all(context, chunk.to_vec(), retries).await?;
    }
    Ok(true)
}

/// Delivers each message that is still pending, `concurrency` at once.
async fn deliver_all(
    context: &Arc<DispatcherContext>,
    ids: Vec<String>,
    retries: bool,
) -> DomainResult<()> {
    let outcomes: Vec<DomainResult<()>> = futures::stream::iter(ids)
        .map(|id| {
            let context = Arc::clone(context);
            async move { deliver_one(&context, &id, retries).await }
        })
        .buffer_unordered(context.settings.concurrency.max(1))
        .collect()
        .await;
    // An unavailable or undecided store stops the round (the batch is offered again); any
    // other failure is one message's (a row that does not parse, say): logged, taken off the
    // retry list and skipped, so one broken row never holds every other message back.
    for outcome in outcomes {
        match outcome {
            Ok(()) => {}
            Err(error @ (DomainError::Unavailable(_) | DomainError::Timeout(_))) => {
                return Err(error);
            }
            Err(DomainError::Internal(error)) => {
                tracing::error!(error = %format!("{error:#}"), "a message cannot be delivered; skipped");
            }
            Err(DomainError::Rule(rule)) => {
                tracing::error!(error = %rule.message, "a message cannot be delivered; skipped");
            }
        }
    }
    Ok(())
}

/// Takes a message off the retry list.
async fn forget_due(store: &Arc<dyn Store>, id: &str) -> DomainResult<()> {
    let mut transaction = Transaction::default();
    transaction.delete(Table::NotificationDue, id, Expect::Any);
    store.commit(transaction).await?;
    Ok(())
}

async fn deliver_one(context: &DispatcherContext, id: &str, retry: bool) -> DomainResult<()> {
    let store = &context.store;
    let found =
        crate::storage::records::get_record::<NotificationRecord>(store, Table::Notification, id)
            .await;
    let current = match found {
        Ok(Some(current)) if current.record.state.is_pending() => current,
        // Gone, or delivered or dead meanwhile: nothing to send, nothing to retry.
        Ok(_) => {
            if retry {
                forget_due(store, id).await?;
            }
            return Ok(());
        }
        // The row does not parse: off the retry list, so it is not met again each round.
        Err(DomainError::Internal(error)) => {
            forget_due(store, id).await?;
            return Err(DomainError::Internal(error));
        }
        Err(other) => return Err(other),
    };
    let mut record = current.record;
    // A message met again before its retry is due (a replayed event) waits for its time.
    if !retry && record.state == DeliveryState::Retrying {
        return Ok(());
    }
    let outcome = match open_message(&context.vault, &record) {
        Ok(message) => send(context, &record, &message).await,
        Err(error) => {
            tracing::error!(notification.id = %id, error = %error, "cannot open a message");
            Err(SendError::Permanent("the message cannot be opened".into()))
        }
    };
    let now = context.now_ms();
    match &outcome {
        Ok(()) => record.deliver(now),
        Err(SendError::Transient(reason)) => record.fail(
            &context.settings.retry,
            reason,
            false,
            now,
            rand::random::<f64>(),
        ),
        Err(SendError::Permanent(reason)) => {
            record.fail(&context.settings.retry, reason, true, now, 0.0)
        }
    }
    let mut transaction = Transaction::default();
    transaction.put_record(
        Table::Notification,
        id,
        &record,
        Expect::Version(current.version),
    )?;
    match record.state {
        DeliveryState::Retrying => transaction.put(
            Table::NotificationDue,
            id,
            json!({"dueMs": record.next_attempt_ms}),
            Expect::Any,
        ),
        _ => transaction.delete(Table::NotificationDue, id, Expect::Any),
    }
    match store.commit(transaction).await {
        Ok(_) => {}
        // An operator changed the row meanwhile: theirs stands.
        Err(StoreError::Conflict { .. }) => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    match record.state {
        DeliveryState::Delivered => {
            tracing::info!(notification.id = %id, channel = record.channel.name(), attempts = record.attempts, "message delivered")
        }
        DeliveryState::Dead => {
            tracing::warn!(notification.id = %id, channel = record.channel.name(), attempts = record.attempts, reason = %record.last_error, "message given up on (dead letter)")
        }
        _ => {
            tracing::info!(notification.id = %id, channel = record.channel.name(), attempts = record.attempts, reason = %record.last_error, "message delivery failed, will retry")
        }
    }
    Ok(())
}

async fn send(
    context: &DispatcherContext,
    record: &NotificationRecord,
    message: &OutgoingMessage,
) -> Result<(), SendError> {
    match record.channel {
        Medium::Email => {
            context
                .email
                .send(&Email {
                    id: record.id.clone(),
                    message_id: record.message_id.clone(),
                    from: context.settings.from.clone(),
                    to: message.to.clone(),
                    subject: message.subject.clone(),
                    body: message.body.clone(),
                    html: message.html,
                })
                .await
        }
        Medium::Sms => {
            context
                .sms
                .send(&Sms {
                    id: record.id.clone(),
                    to: message.to.clone(),
                    body: message.body.clone(),
                    template_id: message.sms_template_id.clone(),
                })
                .await
        }
        Medium::Call => {
            let body = serde_json::from_str(&message.body).map_err(|error| {
                SendError::Permanent(format!("the call's body is not JSON: {error}"))
            })?;
            context
                .calls
                .call(&ServiceCall {
                    id: record.id.clone(),
                    path: message.to.clone(),
                    body,
                })
                .await
        }
    }
}

/// The dispatcher as a child of the root supervisor, published in `slot`.
pub fn child_spec(
    context: Arc<DispatcherContext>,
    slot: ActorSlot<ActorRef<DispatcherMessage>>,
) -> ChildSpec {
    ChildSpec::new("dispatcher", Restart::Permanent, slot, move |supervisor| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            let (dispatcher, _handle) =
                Actor::spawn_linked(None, Dispatcher, context, supervisor).await?;
            Ok(dispatcher)
        })
    })
}

/// The messages of the `notification` table for operators, newest last, without content.
pub async fn list(
    store: &Arc<dyn Store>,
    state: Option<DeliveryState>,
) -> DomainResult<Vec<NotificationRecord>> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let rows = store
            .scan(Table::Notification, "", after.as_deref(), 1_000)
            .await?;
        let Some(last) = rows.last().map(|row| row.key.clone()) else {
            break;
        };
        for row in rows {
            if let Some(record) = NotificationRecord::from_doc(&row.doc)
                && state.is_none_or(|wanted| wanted == record.state)
            {
                found.push(record);
            }
        }
        after = Some(last);
    }
    found.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
    Ok(found)
}
