//! User owners: a ractor factory keyed by user id. Every mutation of one user (create, update,
//! block, unblock, delete, role change) runs in order on one worker, which checks the command
//! against the current record and writes the record, its uniqueness claims, memberships, roles
//! and the outbox event in one store transaction. Across instances the store's claims and
//! version checks keep the same guarantees (read-modify-writes retry on a version conflict).
//!
//! One module per command family: [`create`], [`update`], [`status`], [`roles`]; [`contacts`]
//! holds how identifiers are sealed and claimed. The `build_*` functions are pure: they turn the
//! current state and a command into the transaction, and are unit-tested on their own.

mod contacts;
mod create;
mod roles;
mod signin;
mod status;
pub use create::build_create as build_user_create;
pub use status::release_identifiers;
mod freeup;
mod migrate;
#[cfg(test)]
mod tests;
mod tnc;
mod update;

use std::sync::Arc;
use std::time::Duration;

use ractor::factory::{FactoryRef, Job, Worker, WorkerId};
use ractor::{ActorProcessingErr, RpcReplyPort};

use super::keyed::spawn_keyed_factory;
use super::slot::{ActorSlot, call_factory, serve};
use super::supervisor::{ChildSpec, Restart};
use crate::clock::{Clock, sunbird_timestamp};
use crate::crypto::PiiVault;
use crate::domain::user::{
    AcceptTnc, AssignRoles, FreeUp, MigrateTenant, NewUser, StatusChange, UserRecord, UserUpdate,
};
use crate::domain::{DomainError, DomainResult};
use crate::storage::audit::AuditNote;
use crate::storage::records::user;
use crate::storage::{Store, Transaction, Versioned};

pub use contacts::{
    EXTERNAL_ID_TOKEN_KIND, external_id_claim, open_external_id, phone_token, seal_external_id,
    username_token,
};
pub use signin::{Rotation, SignInCommand, SignInGate, SignInReply};

/// The name of this actor in logs and errors.
const WHAT: &str = "user owners";

/// Everything a worker needs; shared by all workers.
pub struct UserOwnerContext {
    pub store: Arc<dyn Store>,
    pub vault: PiiVault,
    pub clock: Arc<dyn Clock>,
    pub username_suffix_length: usize,
    pub deletion_allowed_roles: Vec<String>,
    /// Managed-child slots per parent ([`crate::domain::user::managed_slot`]).
    pub managed_user_limit: usize,
}

pub enum UserMessage {
    /// With the audit entry of the roles it grants, if any, and `also` (a bulk row's done
    /// mark, its welcome message), in the same transaction.
    Create(
        Box<NewUser>,
        Option<Box<AuditNote>>,
        Box<Transaction>,
        RpcReplyPort<DomainResult<String>>,
    ),
    /// Written with its audit entry, in one transaction.
    AssignRoles(
        Box<AssignRoles>,
        Box<AuditNote>,
        RpcReplyPort<DomainResult<()>>,
    ),
    /// With what a managed user's graduation writes besides (its set-password message), added
    /// to the update's transaction when the update graduates the user.
    Update(
        Box<UserUpdate>,
        Option<Box<Transaction>>,
        RpcReplyPort<DomainResult<()>>,
    ),
    /// Written with its audit entry, in one transaction.
    ChangeStatus {
        user_id: String,
        change: StatusChange,
        by: Option<String>,
        audit: Box<AuditNote>,
        reply: RpcReplyPort<DomainResult<()>>,
    },
    AcceptTnc(Box<AcceptTnc>, RpcReplyPort<DomainResult<()>>),
    FreeUp(Box<FreeUp>, RpcReplyPort<DomainResult<()>>),
    /// With what the migration writes besides (consents, declarations, the notice).
    Migrate(
        Box<MigrateTenant>,
        Box<Transaction>,
        RpcReplyPort<DomainResult<()>>,
    ),
    /// Password attempts, lockouts and sessions of the user.
    SignIn {
        user_id: String,
        command: SignInCommand,
        reply: RpcReplyPort<DomainResult<SignInReply>>,
    },
}

/// The typed client of the user owners. Cheap to clone.
#[derive(Clone)]
pub struct UserOwners {
    slot: ActorSlot<FactoryRef<String, UserMessage>>,
    timeout: Duration,
}

impl UserOwners {
    pub fn new(slot: ActorSlot<FactoryRef<String, UserMessage>>, timeout: Duration) -> Self {
        UserOwners { slot, timeout }
    }

    /// True when the factory runs (for `/health`).
    pub fn alive(&self) -> bool {
        self.slot.alive()
    }

    pub async fn create(&self, user: NewUser, audit: Option<AuditNote>) -> DomainResult<String> {
        self.create_with(user, audit, Transaction::default()).await
    }

    /// A create that commits `also` with the user, or not at all.
    pub async fn create_with(
        &self,
        user: NewUser,
        audit: Option<AuditNote>,
        also: Transaction,
    ) -> DomainResult<String> {
        let key = user.id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            UserMessage::Create(Box::new(user), audit.map(Box::new), Box::new(also), reply)
        })
        .await?
    }

    pub async fn assign_roles(
        &self,
        assignment: AssignRoles,
        audit: AuditNote,
    ) -> DomainResult<()> {
        let key = assignment.user_id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            UserMessage::AssignRoles(Box::new(assignment), Box::new(audit), reply)
        })
        .await?
    }

    /// Updates a user; `on_graduation` is written with the update when it makes a managed user
    /// a normal one (a contact given).
    pub async fn update(
        &self,
        update: UserUpdate,
        on_graduation: Option<Transaction>,
    ) -> DomainResult<()> {
        let key = update.request.user_id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            UserMessage::Update(Box::new(update), on_graduation.map(Box::new), reply)
        })
        .await?
    }

    /// Records a terms-and-conditions acceptance (nothing is written when that version is
    /// already accepted).
    pub async fn accept_tnc(&self, accept: AcceptTnc) -> DomainResult<()> {
        let key = accept.user_id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            UserMessage::AcceptTnc(Box::new(accept), reply)
        })
        .await?
    }

    /// Moves a user into a state tenant, writing `with` in the same transaction.
    pub async fn migrate(&self, migration: MigrateTenant, with: Transaction) -> DomainResult<()> {
        let key = migration.user_id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            UserMessage::Migrate(Box::new(migration), Box::new(with), reply)
        })
        .await?
    }

    /// Frees the user's email and/or phone (moved to the previously used ones).
    pub async fn free_up(&self, free: FreeUp) -> DomainResult<()> {
        let key = free.user_id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            UserMessage::FreeUp(Box::new(free), reply)
        })
        .await?
    }

    pub async fn change_status(
        &self,
        user_id: String,
        change: StatusChange,
        by: Option<String>,
        audit: AuditNote,
    ) -> DomainResult<()> {
        call_factory(&self.slot, user_id.clone(), self.timeout, WHAT, |reply| {
            UserMessage::ChangeStatus {
                user_id,
                change,
                by,
                audit: Box::new(audit),
                reply,
            }
        })
        .await?
    }
}

impl UserOwners {
    /// Runs a sign-in command in order with the user's other commands.
    pub async fn sign_in(
        &self,
        user_id: &str,
        command: SignInCommand,
    ) -> DomainResult<SignInReply> {
        let user_id = user_id.to_string();
        call_factory(&self.slot, user_id.clone(), self.timeout, WHAT, |reply| {
            UserMessage::SignIn {
                user_id,
                command,
                reply,
            }
        })
        .await?
    }
}

pub struct UserOwnerWorker;

impl Worker for UserOwnerWorker {
    type Key = String;
    type Message = UserMessage;
    type Arguments = Arc<UserOwnerContext>;
    type State = Arc<UserOwnerContext>;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &FactoryRef<String, UserMessage>,
        context: Arc<UserOwnerContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(context)
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &FactoryRef<String, UserMessage>,
        Job { key, msg, .. }: Job<String, UserMessage>,
        context: &mut Self::State,
    ) -> Result<String, ActorProcessingErr> {
        // Business failures travel in the reply; `handle` itself never fails.
        match msg {
            UserMessage::Create(user, audit, also, reply) => {
                serve(
                    WHAT,
                    &key,
                    reply,
                    create::create_user(context, *user, audit.as_deref(), &also),
                )
                .await
            }
            UserMessage::AssignRoles(assignment, audit, reply) => {
                serve(
                    WHAT,
                    &key,
                    reply,
                    roles::assign_roles(context, *assignment, &audit),
                )
                .await
            }
            UserMessage::Update(update, on_graduation, reply) => {
                serve(
                    WHAT,
                    &key,
                    reply,
                    update::update_user(context, *update, on_graduation.map(|t| *t)),
                )
                .await
            }
            UserMessage::ChangeStatus {
                user_id,
                change,
                by,
                audit,
                reply,
            } => {
                serve(
                    WHAT,
                    &key,
                    reply,
                    status::change_status(context, &user_id, change, by, &audit),
                )
                .await
            }
            UserMessage::Migrate(migration, with, reply) => {
                serve(
                    WHAT,
                    &key,
                    reply,
                    migrate::migrate(context, *migration, *with),
                )
                .await
            }
            UserMessage::FreeUp(free, reply) => {
                serve(WHAT, &key, reply, freeup::free_up(context, *free)).await
            }
            UserMessage::AcceptTnc(accept, reply) => {
                serve(WHAT, &key, reply, tnc::accept_tnc(context, *accept)).await
            }
            UserMessage::SignIn {
                user_id,
                command,
                reply,
            } => serve(WHAT, &key, reply, signin::run(context, &user_id, command)).await,
        }
        Ok(key)
    }
}

/// The user owners as a child of the root supervisor, published in `slot`.
pub fn child_spec(
    context: Arc<UserOwnerContext>,
    workers: usize,
    slot: ActorSlot<FactoryRef<String, UserMessage>>,
) -> ChildSpec {
    ChildSpec::new(WHAT, Restart::Permanent, slot, move |supervisor| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            let (factory, _handle) = spawn_keyed_factory(
                move || (UserOwnerWorker, Arc::clone(&context)),
                workers,
                supervisor,
            )
            .await?;
            Ok(factory)
        })
    })
}

/// Sunbird's timestamp of the context's clock.
fn now(context: &UserOwnerContext) -> String {
    sunbird_timestamp(context.clock.now())
}

/// The current record of a user, or 404.
async fn load_user(
    context: &UserOwnerContext,
    user_id: &str,
) -> DomainResult<Versioned<UserRecord>> {
    user(&context.store, user_id)
        .await?
        .ok_or_else(|| DomainError::not_found("user"))
}
