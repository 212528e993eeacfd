//! The merge coordinator: runs account-merge sagas (`domain::merge`) to their end. A merge is
//! begun by the service's commit of its saga row with both accounts' locks (of two merges
//! over one account, at most one gets them); the coordinator then runs each step as one
//! commit that also moves the saga row on, expecting the version it read, so a step replayed
//! after a crash (or by a second instance resuming the same saga) applies nothing twice. At
//! start it resumes every saga not done; a failure point (`USERORG_FAILPOINT=merge:<step>`,
//! for tests) aborts the process right after a step's commit.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

use super::dispatcher::{NewMessage, enqueue, find_template};
use super::slot::ActorSlot;
use super::supervisor::{ChildSpec, Restart};
use super::user_owner::release_identifiers;
use crate::clock::Clock;
use crate::crypto::PiiVault;
use crate::domain::merge::{MergeSaga, MergeStep};
use crate::domain::notification::{Medium, OutgoingMessage};
use crate::domain::user::STATUS_BLOCKED;
use crate::domain::{DomainError, DomainResult, Record};
use crate::storage::records::{get_record, user};
use crate::storage::retry::{no_claims, read_modify_write};
use crate::storage::{
    ChangeEvent, Expect, Store, Table, Topic, Transaction, Versioned, compose_key, key_prefix,
};

pub struct MergeContext {
    /// The store through the cache (each step re-reads the users it rewrites).
    pub store: Arc<dyn Store>,
    pub vault: PiiVault,
    pub clock: Arc<dyn Clock>,
    pub installation_name: String,
    pub message_id_domain: String,
    /// Abort the process right after this step commits (a test's failure point).
    pub fail_after: Option<MergeStep>,
}

/// The key of a mergee's saga row.
pub fn saga_key(from: &str) -> String {
    compose_key(&["saga", from])
}

/// The key of an account's lock row.
pub fn lock_key(user_id: &str) -> String {
    compose_key(&["lock", user_id])
}

pub enum MergeMessage {
    /// Runs the saga of this mergee to its end and answers.
    Run(String, RpcReplyPort<DomainResult<()>>),
    /// Resumes every saga not done (at start).
    Resume,
}

#[derive(Clone)]
pub struct MergeClient {
    slot: ActorSlot<ActorRef<MergeMessage>>,
    timeout: Duration,
}

impl MergeClient {
    pub fn new(slot: ActorSlot<ActorRef<MergeMessage>>, timeout: Duration) -> Self {
        MergeClient { slot, timeout }
    }

    pub async fn run(&self, from: &str) -> DomainResult<()> {
        let from = from.to_string();
        super::slot::call_actor(&self.slot, self.timeout, "merge coordinator", |reply| {
            MergeMessage::Run(from, reply)
        })
        .await?
    }
}

pub struct MergeCoordinator;

impl Actor for MergeCoordinator {
    type Msg = MergeMessage;
    type State = Arc<MergeContext>;
    type Arguments = Arc<MergeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        context: Arc<MergeContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(MergeMessage::Resume)?;
        // And again now and then: a saga a request left on a passing store failure, or another
        // instance's that died, is not left half done.
        myself.send_interval(RESUME_INTERVAL, || MergeMessage::Resume);
        Ok(context)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        context: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MergeMessage::Run(from, reply) => {
                let _ = reply.send(run_saga(context, &from).await);
            }
            MergeMessage::Resume => {
                if let Err(error) = resume_all(context).await {
                    tracing::warn!(error = %error, "cannot resume account merges now");
                }
            }
        }
        Ok(())
    }
}

/// How often sagas not done are looked for.
const RESUME_INTERVAL: Duration = Duration::from_secs(60);

/// Runs every saga still recorded (a finished saga's row is deleted), page by page; one that
/// fails is logged and left for the next round, the others go on.
async fn resume_all(context: &MergeContext) -> DomainResult<()> {
    let mut after: Option<String> = None;
    loop {
        let rows = context
            .store
            .scan(Table::Merge, &key_prefix("saga"), after.as_deref(), 500)
            .await?;
        let Some(last) = rows.last().map(|row| row.key.clone()) else {
            return Ok(());
        };
        for row in rows {
            let Some(saga) = MergeSaga::from_doc(&row.doc) else {
                continue;
            };
            tracing::info!(step = saga.step.name(), "resuming an account merge");
            if let Err(error) = run_saga(context, &saga.from_account_id).await {
                tracing::warn!(error = %error, "an account merge could not go on; retried later");
            }
        }
        after = Some(last);
    }
}

/// Runs every step left of the saga of `from`.
pub async fn run_saga(context: &MergeContext, from: &str) -> DomainResult<()> {
    loop {
        let Some(saga) =
            get_record::<MergeSaga>(&context.store, Table::Merge, &saga_key(from)).await?
        else {
            // Finished: the last step deletes the saga.
            return Ok(());
        };
        let Some(next) = saga.record.step.next() else {
            return Ok(());
        };
        step(context, &saga, next).await?;
        if context.fail_after == Some(next) {
            tracing::error!(step = next.name(), "failure point reached: aborting");
            std::process::abort();
        }
    }
}

/// Commits `next` with the saga row moved to it (or nothing, when the saga moved meanwhile).
async fn step(
    context: &MergeContext,
    seen: &Versioned<MergeSaga>,
    next: MergeStep,
) -> DomainResult<()> {
    let (from, to) = (
        seen.record.from_account_id.as_str(),
        seen.record.to_account_id.as_str(),
    );
    let now_ms = context.clock.now().timestamp_millis();
    read_modify_write(&*context.store, no_claims, || async move {
        let Some(current) =
            get_record::<MergeSaga>(&context.store, Table::Merge, &saga_key(from)).await?
        else {
            return Ok((Transaction::default(), ()));
        };
        if current.record.step >= next {
            // Done already (a replay, or another instance resuming it).
            return Ok((Transaction::default(), ()));
        }
        let mut transaction = Transaction::default();
        build_step(context, &mut transaction, from, to, next, now_ms).await?;
        if next == MergeStep::Done {
            // The audit trail keeps the record of the merge; the saga goes.
            transaction.delete(
                Table::Merge,
                saga_key(from),
                Expect::Version(current.version),
            );
            return Ok((transaction, ()));
        }
        let mut saga = current.record.clone();
        saga.step = next;
        saga.updated_ms = now_ms;
        transaction.put_record(
            Table::Merge,
            saga_key(from),
            &saga,
            Expect::Version(current.version),
        )?;
        Ok((transaction, ()))
    })
    .await
}

/// The writes of one step.
async fn build_step(
    context: &MergeContext,
    transaction: &mut Transaction,
    from: &str,
    to: &str,
    next: MergeStep,
    now_ms: i64,
) -> DomainResult<()> {
    let store = &context.store;
    match next {
        MergeStep::Locked => {}
        MergeStep::IdentifiersMoved | MergeStep::Marked => {
            let Some(current) = user(store, from).await? else {
                return Ok(());
            };
            let mut record = current.record.clone();
            if next == MergeStep::IdentifiersMoved {
                let moved = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
                if let Some(email) = moved(&record.email) {
                    record.prev_used_email = Some(email);
                }
                if let Some(phone) = moved(&record.phone) {
                    record.prev_used_phone = Some(phone);
                }
                release_identifiers(&mut record, transaction, from, false);
                record.email = None;
                record.masked_email = None;
                record.phone = None;
                record.masked_phone = None;
                record.user_name = None;
                record.login_id = None;
            } else {
                // Whatever identifier the mergee gained since the previous step (its owner
                // does not know about merges) is freed too, with its external ids.
                release_identifiers(&mut record, transaction, from, true);
                record.email = None;
                record.phone = None;
                record.user_name = None;
                record.status = STATUS_BLOCKED;
                record.is_deleted = true;
                record.set_profile_field("mergedTo", json!(to));
                transaction.delete(Table::UserCredential, from, Expect::Any);
                crate::storage::audit::append(
                    &**store,
                    transaction,
                    &crate::storage::audit::AuditNote {
                        actor: to.to_string(),
                        action: "user.merge".into(),
                        target: from.to_string(),
                        details: json!({"fromAccountId": from, "toAccountId": to}),
                    },
                    &crate::clock::sunbird_timestamp(context.clock.now()),
                )
                .await?;
            }
            record.updated_date = Some(crate::clock::sunbird_timestamp(context.clock.now()));
            record.updated_by = Some(to.to_string());
            transaction.put_record(Table::User, from, &record, Expect::Version(current.version))?;
            transaction.event(Topic::User, from, current.version + 1);
        }
        MergeStep::SessionsEnded => {
            let sessions = store
                .scan(Table::UserSession, &key_prefix(from), None, 10_000)
                .await?;
            for row in sessions {
                transaction.delete(Table::UserSession, row.key, Expect::Any);
            }
        }
        MergeStep::EventEmitted => {
            let version = user(store, from).await?.map_or(0, |found| found.version);
            transaction.events.push(ChangeEvent {
                topic: Topic::User,
                entity_id: from.to_string(),
                version,
                payload: json!({
                    "event": "user.merged",
                    "action": "merge-user-courses-and-cert",
                    "fromAccountId": from,
                    "toAccountId": to,
                    "iteration": 1,
                }),
            });
        }
        MergeStep::NoticeQueued => {
            let Some(merger) = user(store, to).await? else {
                return Ok(());
            };
            let address = merger
                .record
                .email
                .as_deref()
                .filter(|value| !value.is_empty())
                .and_then(|sealed| context.vault.open(to, "email", sealed).ok());
            if let Some(address) = address {
                let template =
                    find_template(store, "accountMerge", Some(&merger.record.root_org_id))
                        .await?
                        .ok_or_else(|| {
                            DomainError::internal(anyhow::anyhow!(
                                "template accountMerge is missing"
                            ))
                        })?;
                let rendered = template
                    .render(&json!({
                        "name": merger.record.first_name.clone().unwrap_or_default(),
                        "fromAccount": from,
                        "installationName": context.installation_name,
                    }))
                    .map_err(DomainError::internal)?;
                enqueue(
                    transaction,
                    &context.vault,
                    &context.message_id_domain,
                    NewMessage {
                        channel: Medium::Email,
                        source: "merge",
                        template: &template.name,
                        message: &OutgoingMessage {
                            to: address,
                            subject: rendered.subject,
                            body: rendered.body,
                            html: rendered.html,
                            sms_template_id: None,
                        },
                    },
                    now_ms,
                )?;
            }
        }
        MergeStep::Done => {
            transaction.delete(Table::Merge, lock_key(from), Expect::Any);
            transaction.delete(Table::Merge, lock_key(to), Expect::Any);
        }
    }
    Ok(())
}

pub fn child_spec(
    context: Arc<MergeContext>,
    slot: ActorSlot<ActorRef<MergeMessage>>,
) -> ChildSpec {
    ChildSpec::new("merge", Restart::Permanent, slot, move |supervisor| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            let (coordinator, _handle) =
                Actor::spawn_linked(None, MergeCoordinator, context, supervisor).await?;
            Ok(coordinator)
        })
    })
}
