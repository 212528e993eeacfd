//! User owners: a ractor factory keyed by user id. Every mutation of one user (create, update,
//! block, unblock, delete) runs in order on one worker, which checks the command against the
//! current row and writes the row, its uniqueness claims, memberships, roles and the outbox event
//! in one store transaction. Across instances the store's claims and version checks keep the
//! same guarantees.

use std::sync::Arc;
use std::time::Duration;

use ractor::factory::{FactoryRef, Job, Worker, WorkerId};
use ractor::{ActorProcessingErr, RpcReplyPort};
use serde_json::{Map, Value, json};

use super::keyed::spawn_keyed_factory;
use super::slot::{ActorSlot, call_factory};
use super::supervisor::{ChildSpec, Restart};
use crate::clock::{Clock, sunbird_timestamp};
use crate::crypto::PiiVault;
use crate::domain::contact::{Email, Phone};
use crate::domain::role::scope_organisations;
use crate::domain::rules::username_candidate;
use crate::domain::user::{
    ASSOCIATION_SSO, AssignRoles, ExternalId, ExternalIdOperation, NewUser, RoleAssignment,
    StatusChange, UserUpdate,
};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::records::load_roles;
use crate::storage::{
    ClaimKind, CommitInfo, Expect, Row, Store, StoreError, Table, Topic, Transaction, compose_key,
};

/// Rounds of ten username candidates tried before giving up (Sunbird tries 10 x 10).
const USERNAME_ROUNDS: usize = 10;
const USERNAME_CANDIDATES: usize = 10;
/// Retries after a lost race (a generated username claimed between check and commit, or a
/// version conflict with another instance).
const WRITE_RETRIES: usize = 3;

/// The name of this actor in logs and errors.
const WHAT: &str = "user owners";

/// Everything a worker needs; shared by all workers.
pub struct UserOwnerContext {
    pub store: Arc<dyn Store>,
    pub vault: PiiVault,
    pub clock: Arc<dyn Clock>,
    pub username_suffix_length: usize,
    pub deletion_allowed_roles: Vec<String>,
}

pub enum UserMessage {
    Create(Box<NewUser>, RpcReplyPort<DomainResult<String>>),
    AssignRoles(Box<AssignRoles>, RpcReplyPort<DomainResult<()>>),
    Update(Box<UserUpdate>, RpcReplyPort<DomainResult<()>>),
    ChangeStatus {
        user_id: String,
        change: StatusChange,
        by: Option<String>,
        reply: RpcReplyPort<DomainResult<()>>,
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

    pub async fn create(&self, user: NewUser) -> DomainResult<String> {
        let key = user.id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            UserMessage::Create(Box::new(user), reply)
        })
        .await?
    }

    pub async fn assign_roles(&self, assignment: AssignRoles) -> DomainResult<()> {
        let key = assignment.user_id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            UserMessage::AssignRoles(Box::new(assignment), reply)
        })
        .await?
    }

    pub async fn update(&self, update: UserUpdate) -> DomainResult<()> {
        let key = update.request.user_id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            UserMessage::Update(Box::new(update), reply)
        })
        .await?
    }

    pub async fn change_status(
        &self,
        user_id: String,
        change: StatusChange,
        by: Option<String>,
    ) -> DomainResult<()> {
        call_factory(&self.slot, user_id.clone(), self.timeout, WHAT, |reply| {
            UserMessage::ChangeStatus {
                user_id,
                change,
                by,
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
        // Business failures travel in the reply; a closed reply port only means the caller gave
        // up (timeout), which is not this worker's failure.
        match msg {
            UserMessage::Create(user, reply) => {
                let outcome = create_user(context, *user).await;
                if reply.send(outcome).is_err() {
                    tracing::debug!(user.id = %key, "create reply dropped by caller");
                }
            }
            UserMessage::AssignRoles(assignment, reply) => {
                let outcome = assign_roles(context, *assignment).await;
                if reply.send(outcome).is_err() {
                    tracing::debug!(user.id = %key, "role reply dropped by caller");
                }
            }
            UserMessage::Update(update, reply) => {
                let outcome = update_user(context, *update).await;
                if reply.send(outcome).is_err() {
                    tracing::debug!(user.id = %key, "update reply dropped by caller");
                }
            }
            UserMessage::ChangeStatus {
                user_id,
                change,
                by,
                reply,
            } => {
                let outcome = change_status(context, &user_id, change, by).await;
                if reply.send(outcome).is_err() {
                    tracing::debug!(user.id = %key, "status reply dropped by caller");
                }
            }
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

// ==== Command execution ====

fn claim_message(kind: ClaimKind, external_ids: &[ExternalId], value: &str) -> DomainError {
    match kind {
        ClaimKind::Email => DomainError::already_exists("email"),
        ClaimKind::Phone => DomainError::already_exists("phone"),
        ClaimKind::Username => DomainError::already_exists("userName"),
        ClaimKind::ExternalId => {
            let described = external_ids
                .iter()
                .find(|id| id.claim_value() == value)
                .map(|id| {
                    format!(
                        "externalId (id: {}, idType: {}, provider: {})",
                        id.id, id.id_type, id.provider
                    )
                })
                .unwrap_or_else(|| "externalId".to_string());
            DomainError::already_exists(&described)
        }
        _ => DomainError::already_exists(kind.name()),
    }
}

fn sealed_contact(
    vault: &PiiVault,
    doc: &mut Map<String, Value>,
    tokens: &mut Map<String, Value>,
    field: &str,
    plain: &str,
) {
    doc.insert(field.to_string(), json!(vault.seal(plain)));
    tokens.insert(field.to_string(), json!(vault.token(field, plain)));
}

/// Recovery email and phone are sealed and tokenised like the primary ones, but never claimed:
/// Sunbird does not make them unique.
fn seal_recovery_contacts(
    vault: &PiiVault,
    doc: &mut Map<String, Value>,
    tokens: &mut Map<String, Value>,
    email: Option<&Email>,
    phone: Option<&Phone>,
) {
    if let Some(email) = email {
        sealed_contact(vault, doc, tokens, "recoveryEmail", email.as_str());
    }
    if let Some(phone) = phone {
        sealed_contact(vault, doc, tokens, "recoveryPhone", phone.number());
    }
}

fn email_token(vault: &PiiVault, email: &Email) -> String {
    vault.token("email", email.as_str())
}

fn phone_token(vault: &PiiVault, phone: &Phone) -> String {
    vault.token("phone", phone.number())
}

pub fn username_token(vault: &PiiVault, username: &str) -> String {
    vault.token("userName", username)
}

/// Picks a free generated username: candidates are checked against the claims in rounds, and the
/// first free one is returned (the commit still claims it atomically).
async fn generate_username(context: &UserOwnerContext, base: &str) -> DomainResult<String> {
    for _ in 0..USERNAME_ROUNDS {
        for _ in 0..USERNAME_CANDIDATES {
            let candidate = username_candidate(base, context.username_suffix_length);
            let token = username_token(&context.vault, &candidate);
            let owner = context
                .store
                .claim_owner(ClaimKind::Username, &token)
                .await?;
            if owner.is_none() {
                return Ok(candidate);
            }
        }
    }
    Err(DomainError::internal(anyhow::anyhow!(
        "no free username after {} candidates",
        USERNAME_ROUNDS * USERNAME_CANDIDATES
    )))
}

/// A membership row (`user_organisation`).
fn membership_doc(
    user_id: &str,
    organisation_id: &str,
    association_type: i64,
    now: &str,
    by: Option<&str>,
) -> Value {
    json!({
        "id": crate::domain::rules::new_timestamp_id(),
        "userId": user_id,
        "organisationId": organisation_id,
        "hashTagId": organisation_id,
        "orgJoinDate": now,
        "orgLeftDate": null,
        "isDeleted": false,
        "associationType": association_type,
        "addedBy": by,
    })
}

async fn create_user(context: &UserOwnerContext, user: NewUser) -> DomainResult<String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (username, generated) = match &user.request.username {
            Some(name) => (name.clone(), false),
            None => (
                generate_username(context, &user.request.username_base()).await?,
                true,
            ),
        };
        let transaction = build_create(context, &user, &username);
        match context.store.commit(transaction).await {
            Ok(_) => return Ok(user.id.clone()),
            Err(StoreError::ClaimTaken {
                kind: ClaimKind::Username,
                ..
            }) if generated && attempt < WRITE_RETRIES => continue,
            Err(StoreError::ClaimTaken { kind, .. }) => {
                return Err(match kind {
                    ClaimKind::ExternalId => {
                        let taken = first_taken_external_id(context, &user).await;
                        claim_message(kind, &user.request.external_ids, &taken)
                    }
                    _ => claim_message(kind, &user.request.external_ids, ""),
                });
            }
            Err(StoreError::Conflict { .. }) => {
                // The id is new: a conflict means this very create already committed (a retried
                // message) or an id collision; both answer as a duplicate would.
                return Err(DomainError::internal(anyhow::anyhow!(
                    "user id collision on create"
                )));
            }
            Err(other) => return Err(DomainError::from(other)),
        }
    }
}

async fn first_taken_external_id(context: &UserOwnerContext, user: &NewUser) -> String {
    for external in &user.request.external_ids {
        let value = external.claim_value();
        if let Ok(Some(owner)) = context
            .store
            .claim_owner(ClaimKind::ExternalId, &value)
            .await
            && owner != user.id
        {
            return value;
        }
    }
    String::new()
}

fn build_create(context: &UserOwnerContext, user: &NewUser, username: &str) -> Transaction {
    let vault = &context.vault;
    let request = &user.request;
    let now = sunbird_timestamp(context.clock.now());
    let mut doc = request.profile.clone();
    let mut tokens = Map::new();
    let mut transaction = Transaction::default();

    doc.insert("id".into(), json!(user.id));
    doc.insert("userId".into(), json!(user.id));
    doc.insert("firstName".into(), json!(request.first_name));
    doc.insert(
        "lastName".into(),
        request
            .last_name
            .clone()
            .map(Value::String)
            .unwrap_or(Value::Null),
    );
    // Claims in Sunbird's order of uniqueness checks: phone, then email, then the username.
    if let Some(phone) = &request.phone {
        sealed_contact(vault, &mut doc, &mut tokens, "phone", phone.number());
        doc.insert("maskedPhone".into(), json!(phone.masked()));
        doc.insert("countryCode".into(), json!(phone.country_code()));
        transaction.claim(ClaimKind::Phone, phone_token(vault, phone), &user.id);
    }
    doc.insert("phoneVerified".into(), json!(request.phone_verified));
    if let Some(email) = &request.email {
        sealed_contact(vault, &mut doc, &mut tokens, "email", email.as_str());
        doc.insert("maskedEmail".into(), json!(email.masked()));
        transaction.claim(ClaimKind::Email, email_token(vault, email), &user.id);
    }
    doc.insert("emailVerified".into(), json!(request.email_verified));
    seal_recovery_contacts(
        vault,
        &mut doc,
        &mut tokens,
        request.recovery_email.as_ref(),
        request.recovery_phone.as_ref(),
    );
    // Sunbird's login id is the username.
    doc.insert("userName".into(), json!(vault.seal(username)));
    doc.insert("loginId".into(), json!(vault.seal(username)));
    let token = username_token(vault, username);
    tokens.insert("userName".into(), json!(token));
    tokens.insert("loginId".into(), json!(token));
    transaction.claim(ClaimKind::Username, token, &user.id);

    let mut external_ids = Vec::new();
    for external in &request.external_ids {
        transaction.claim(ClaimKind::ExternalId, external.claim_value(), &user.id);
        external_ids.push(external.to_json());
    }
    doc.insert("externalIds".into(), Value::Array(external_ids));

    doc.insert(
        "dob".into(),
        request
            .dob
            .clone()
            .map(Value::String)
            .unwrap_or(Value::Null),
    );
    doc.insert("rootOrgId".into(), json!(user.root_org_id));
    doc.insert("channel".into(), json!(user.channel));
    doc.insert(
        "managedBy".into(),
        request
            .managed_by
            .clone()
            .map(Value::String)
            .unwrap_or(Value::Null),
    );
    doc.insert("status".into(), json!(1));
    doc.insert("isDeleted".into(), json!(false));
    doc.insert("flagsValue".into(), json!(user.flags_value));
    doc.insert("createdDate".into(), json!(now));
    doc.insert("createdBy".into(), json!(user.created_by));
    doc.insert("updatedDate".into(), Value::Null);
    doc.insert("updatedBy".into(), Value::Null);
    if let Some(hash) = &user.password_hash {
        doc.insert("passwordHash".into(), json!(hash));
    }
    doc.insert("_index".into(), Value::Object(tokens));

    transaction.put(Table::User, &user.id, Value::Object(doc), Expect::Absent);

    // Memberships: the requested organisation, and the root organisation when it differs.
    let by = user.created_by.as_deref();
    let mut organisations = Vec::new();
    if let Some(organisation) = &request.organisation_id {
        organisations.push(organisation.clone());
    }
    if !organisations.contains(&user.root_org_id) {
        organisations.push(user.root_org_id.clone());
    }
    for organisation in &organisations {
        transaction.put(
            Table::UserOrganisation,
            compose_key(&[&user.id, organisation]),
            membership_doc(&user.id, organisation, user.association_type, &now, by),
            Expect::Any,
        );
    }
    // Requested roles, scoped to the root organisation (PUBLIC is implicit and not written).
    for role in &request.roles {
        transaction.put(
            Table::UserRoles,
            compose_key(&[&user.id, role]),
            json!({
                "userId": user.id,
                "role": role,
                "scope": [{"organisationId": user.root_org_id}],
                "createdBy": by,
                "createdDate": now,
                "updatedBy": null,
                "updatedDate": null,
            }),
            Expect::Any,
        );
    }
    transaction.event(Topic::User, &user.id, 1);
    transaction
}

async fn load_user(context: &UserOwnerContext, user_id: &str) -> DomainResult<Row> {
    context
        .store
        .get(Table::User, user_id)
        .await?
        .ok_or_else(|| DomainError::not_found("user"))
}

fn is_deleted(doc: &Value) -> bool {
    doc.get("isDeleted")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || doc.get("status").and_then(Value::as_i64) == Some(2)
}

fn token_of(doc: &Value, field: &str) -> Option<String> {
    doc.get("_index")
        .and_then(|tokens| tokens.get(field))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// What one commit attempt of a read-modify-write means: `None` to build again (another writer
/// changed a row in between), `Some` to answer. A taken claim is answered by `on_claim`.
fn settle(
    outcome: Result<CommitInfo, StoreError>,
    on_claim: impl Fn(ClaimKind) -> DomainError,
) -> Option<DomainResult<()>> {
    match outcome {
        Ok(_) => Some(Ok(())),
        Err(StoreError::Conflict { .. }) => None,
        Err(StoreError::ClaimTaken { kind, .. }) => Some(Err(on_claim(kind))),
        Err(other) => Some(Err(DomainError::from(other))),
    }
}

/// Every attempt met a concurrent writer: the caller may retry.
fn contention() -> DomainError {
    DomainError::Unavailable("user changed concurrently too often".into())
}

async fn update_user(context: &UserOwnerContext, update: UserUpdate) -> DomainResult<()> {
    for _ in 0..WRITE_RETRIES {
        let row = load_user(context, &update.request.user_id).await?;
        if is_deleted(&row.doc) {
            return Err(DomainError::rule(ErrorCode::inactiveUser, &[]));
        }
        if let Some(organisation) = &update.request.organisation_id {
            let exists = context
                .store
                .get(Table::Organisation, organisation)
                .await?
                .is_some();
            if !exists {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[organisation, "organisationId"],
                ));
            }
        }
        let transaction = build_update(context, &row, &update)?;
        let external_ids: Vec<ExternalId> = update
            .request
            .external_ids
            .iter()
            .map(|(_, id)| id.clone())
            .collect();
        let outcome = context.store.commit(transaction).await;
        if let Some(done) = settle(outcome, |kind| claim_message(kind, &external_ids, "")) {
            return done;
        }
    }
    Err(contention())
}

fn build_update(
    context: &UserOwnerContext,
    row: &Row,
    update: &UserUpdate,
) -> DomainResult<Transaction> {
    let vault = &context.vault;
    let request = &update.request;
    let user_id = &request.user_id;
    let now = sunbird_timestamp(context.clock.now());
    let mut doc = row.doc.as_object().cloned().unwrap_or_default();
    let mut tokens = doc
        .get("_index")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut transaction = Transaction::default();

    for (field, value) in &request.profile {
        doc.insert(field.clone(), value.clone());
    }
    if let Some(dob) = &request.dob {
        doc.insert("dob".into(), json!(dob));
    }
    if let Some(phone) = &request.phone {
        let changed = move_contact_claim(
            &mut transaction,
            &row.doc,
            ClaimKind::Phone,
            "phone",
            phone_token(vault, phone),
            user_id,
        );
        if changed {
            sealed_contact(vault, &mut doc, &mut tokens, "phone", phone.number());
            doc.insert("maskedPhone".into(), json!(phone.masked()));
            doc.insert("countryCode".into(), json!(phone.country_code()));
        }
    }
    if let Some(verified) = request.phone_verified {
        doc.insert("phoneVerified".into(), json!(verified));
    }
    if let Some(email) = &request.email {
        let changed = move_contact_claim(
            &mut transaction,
            &row.doc,
            ClaimKind::Email,
            "email",
            email_token(vault, email),
            user_id,
        );
        if changed {
            sealed_contact(vault, &mut doc, &mut tokens, "email", email.as_str());
            doc.insert("maskedEmail".into(), json!(email.masked()));
        }
    }
    if let Some(verified) = request.email_verified {
        doc.insert("emailVerified".into(), json!(verified));
    }
    seal_recovery_contacts(
        vault,
        &mut doc,
        &mut tokens,
        request.recovery_email.as_ref(),
        request.recovery_phone.as_ref(),
    );
    if (request.email.is_some() || request.phone.is_some())
        && doc.get("managedBy").is_some_and(|m| !m.is_null())
    {
        // A managed user who gains a contact becomes a normal user (Sunbird "graduation").
        doc.insert("managedBy".into(), Value::Null);
    }

    let mut external_ids: Vec<Value> = doc
        .get("externalIds")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (operation, external) in &request.external_ids {
        let same_slot = |stored: &Value| {
            stored
                .get("provider")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
                == Some(external.provider.to_lowercase())
                && stored
                    .get("idType")
                    .and_then(Value::as_str)
                    .map(str::to_lowercase)
                    == Some(external.id_type.to_lowercase())
        };
        let existing = external_ids.iter().position(same_slot);
        match operation {
            ExternalIdOperation::Add | ExternalIdOperation::Edit => {
                if let Some(index) = existing {
                    let old = external_ids.remove(index);
                    if let Some(old) = stored_external_id(&old) {
                        transaction.release(ClaimKind::ExternalId, old.claim_value(), user_id);
                    }
                }
                transaction.claim(ClaimKind::ExternalId, external.claim_value(), user_id);
                external_ids.push(external.to_json());
            }
            ExternalIdOperation::Remove => {
                if let Some(index) = existing {
                    let old = external_ids.remove(index);
                    if let Some(old) = stored_external_id(&old) {
                        transaction.release(ClaimKind::ExternalId, old.claim_value(), user_id);
                    }
                }
            }
        }
    }
    doc.insert("externalIds".into(), Value::Array(external_ids));
    doc.insert("updatedDate".into(), json!(now));
    doc.insert("updatedBy".into(), json!(update.updated_by));
    doc.insert("_index".into(), Value::Object(tokens));

    if let Some(organisation) = &request.organisation_id {
        transaction.put(
            Table::UserOrganisation,
            compose_key(&[user_id, organisation]),
            membership_doc(
                user_id,
                organisation,
                ASSOCIATION_SSO,
                &now,
                update.updated_by.as_deref(),
            ),
            Expect::Any,
        );
    }
    transaction.put(
        Table::User,
        user_id,
        Value::Object(doc),
        Expect::Version(row.version),
    );
    transaction.event(Topic::User, user_id, row.version + 1);
    Ok(transaction)
}

/// Moves the claim of a primary contact to `token` (releasing the stored one) unless the value
/// is unchanged. True when it changed.
fn move_contact_claim(
    transaction: &mut Transaction,
    stored: &Value,
    kind: ClaimKind,
    field: &str,
    token: String,
    user_id: &str,
) -> bool {
    let old = token_of(stored, field);
    if old.as_deref() == Some(token.as_str()) {
        return false;
    }
    if let Some(old) = old {
        transaction.release(kind, old, user_id);
    }
    transaction.claim(kind, token, user_id);
    true
}

fn stored_external_id(value: &Value) -> Option<ExternalId> {
    Some(ExternalId {
        id: value.get("id")?.as_str()?.to_string(),
        id_type: value.get("idType")?.as_str()?.to_string(),
        provider: value.get("provider")?.as_str()?.to_string(),
    })
}

async fn change_status(
    context: &UserOwnerContext,
    user_id: &str,
    change: StatusChange,
    by: Option<String>,
) -> DomainResult<()> {
    for _ in 0..WRITE_RETRIES {
        let row = context
            .store
            .get(Table::User, user_id)
            .await?
            // Sunbird answers a missing user here with the bare word as the message.
            .ok_or_else(|| DomainError::with_message(ErrorCode::resourceNotFound, "user"))?;
        let status = row.doc.get("status").and_then(Value::as_i64).unwrap_or(1);
        if is_deleted(&row.doc) {
            return Err(DomainError::rule(ErrorCode::userStatusError, &["deleted"]));
        }
        match change {
            StatusChange::Block if status == 0 => {
                return Err(DomainError::rule(ErrorCode::userStatusError, &["inactive"]));
            }
            StatusChange::Unblock if status == 1 => {
                return Err(DomainError::rule(ErrorCode::userStatusError, &["active"]));
            }
            _ => {}
        }
        if change == StatusChange::Delete {
            let roles = load_roles(&context.store, user_id).await?;
            let allowed: Vec<String> = context
                .deletion_allowed_roles
                .iter()
                .map(|r| r.to_lowercase())
                .collect();
            if roles
                .names()
                .iter()
                .any(|role| !allowed.contains(&role.to_lowercase()))
            {
                return Err(DomainError::rule(ErrorCode::cannotDeleteUser, &[]));
            }
        }
        let transaction = build_status_change(context, &row, change, by.as_deref());
        let outcome = context.store.commit(transaction).await;
        if let Some(done) = settle(outcome, |kind| DomainError::already_exists(kind.name())) {
            return done;
        }
    }
    Err(contention())
}

fn build_status_change(
    context: &UserOwnerContext,
    row: &Row,
    change: StatusChange,
    by: Option<&str>,
) -> Transaction {
    let user_id = row.key.as_str();
    let now = sunbird_timestamp(context.clock.now());
    let mut doc = row.doc.as_object().cloned().unwrap_or_default();
    let mut transaction = Transaction::default();
    match change {
        StatusChange::Block => {
            doc.insert("status".into(), json!(0));
            doc.insert("isBlocked".into(), json!(true));
        }
        StatusChange::Unblock => {
            doc.insert("status".into(), json!(1));
            doc.insert("isBlocked".into(), json!(false));
        }
        StatusChange::Delete => {
            // Scrub PII and free every identifier so it can be used again.
            let tokens = doc
                .get("_index")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (field, kind) in [
                ("email", ClaimKind::Email),
                ("phone", ClaimKind::Phone),
                ("userName", ClaimKind::Username),
            ] {
                if let Some(token) = tokens.get(field).and_then(Value::as_str) {
                    transaction.release(kind, token, user_id);
                }
            }
            if let Some(external_ids) = doc.get("externalIds").and_then(Value::as_array) {
                for external in external_ids.iter().filter_map(stored_external_id) {
                    transaction.release(ClaimKind::ExternalId, external.claim_value(), user_id);
                }
            }
            for field in [
                "firstName",
                "lastName",
                "email",
                "phone",
                "maskedEmail",
                "maskedPhone",
                "userName",
                "loginId",
                "prevUsedEmail",
                "prevUsedPhone",
                "recoveryEmail",
                "recoveryPhone",
            ] {
                doc.insert(field.to_string(), json!(""));
            }
            doc.insert("profileLocation".into(), json!([]));
            doc.insert("externalIds".into(), json!([]));
            doc.remove("passwordHash");
            doc.insert("_index".into(), json!({}));
            doc.insert("status".into(), json!(2));
            doc.insert("isDeleted".into(), json!(true));
        }
    }
    doc.insert("updatedDate".into(), json!(now));
    doc.insert("updatedBy".into(), json!(by));
    transaction.put(
        Table::User,
        user_id,
        Value::Object(doc),
        Expect::Version(row.version),
    );
    transaction.event(Topic::User, user_id, row.version + 1);
    transaction
}

async fn assign_roles(context: &UserOwnerContext, assignment: AssignRoles) -> DomainResult<()> {
    for _ in 0..WRITE_RETRIES {
        let user = load_user(context, &assignment.user_id).await?;
        if is_deleted(&user.doc) {
            return Err(DomainError::rule(ErrorCode::inactiveUser, &[]));
        }
        let transaction = build_role_assignment(context, &user, &assignment).await?;
        let outcome = context.store.commit(transaction).await;
        if let Some(done) = settle(outcome, |kind| DomainError::already_exists(kind.name())) {
            return done;
        }
    }
    Err(contention())
}

async fn build_role_assignment(
    context: &UserOwnerContext,
    user: &Row,
    assignment: &AssignRoles,
) -> DomainResult<Transaction> {
    use std::collections::BTreeMap;
    let user_id = assignment.user_id.as_str();
    let now = sunbird_timestamp(context.clock.now());
    let prefix = crate::storage::key_prefix(user_id);
    let stored = context
        .store
        .scan(Table::UserRoles, &prefix, None, 1000)
        .await?;
    // role -> (stored row, organisations after the change)
    let mut roles: BTreeMap<String, (Option<Row>, Vec<String>)> = BTreeMap::new();
    for row in stored {
        let Some(role) = row
            .doc
            .get("role")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        let organisations = scope_organisations(row.doc.get("scope"));
        roles.insert(role, (Some(row), organisations));
    }
    let before: BTreeMap<String, Vec<String>> = roles
        .iter()
        .map(|(role, (_, orgs))| (role.clone(), orgs.clone()))
        .collect();
    match &assignment.assignment {
        RoleAssignment::ReplaceForOrganisation {
            organisation_id,
            roles: wanted,
        } => {
            for (role, (_, organisations)) in roles.iter_mut() {
                let keep = wanted.contains(role);
                let has = organisations.contains(organisation_id);
                if keep && !has {
                    organisations.push(organisation_id.clone());
                } else if !keep && has {
                    organisations.retain(|o| o != organisation_id);
                }
            }
            for role in wanted {
                roles
                    .entry(role.clone())
                    .or_insert_with(|| (None, vec![organisation_id.clone()]));
            }
        }
        RoleAssignment::Scopes(changes) => {
            for change in changes {
                let entry = roles
                    .entry(change.role.clone())
                    .or_insert((None, Vec::new()));
                for organisation in &change.organisations {
                    let has = entry.1.contains(organisation);
                    if change.add && !has {
                        entry.1.push(organisation.clone());
                    } else if !change.add && has {
                        entry.1.retain(|o| o != organisation);
                    }
                }
            }
        }
    }
    if assignment.single_organisation {
        let distinct: std::collections::HashSet<&String> =
            roles.values().flat_map(|(_, orgs)| orgs.iter()).collect();
        if distinct.len() > 1 {
            return Err(DomainError::rule(
                ErrorCode::roleProcessingInvalidOrgError,
                &[],
            ));
        }
    }

    let mut transaction = Transaction::default();
    let mut new_organisations: Vec<String> = Vec::new();
    for (role, (row, organisations)) in &roles {
        let key = compose_key(&[user_id, role]);
        let previous = before.get(role).cloned().unwrap_or_default();
        if organisations == &previous && row.is_some() {
            continue;
        }
        for organisation in organisations {
            if !previous.contains(organisation) && !new_organisations.contains(organisation) {
                new_organisations.push(organisation.clone());
            }
        }
        let scope: Vec<Value> = organisations
            .iter()
            .map(|org| json!({"organisationId": org}))
            .collect();
        match (row, organisations.is_empty()) {
            (Some(row), true) => {
                transaction.delete(Table::UserRoles, key, Expect::Version(row.version));
            }
            (None, true) => {}
            (Some(row), false) => {
                let mut doc = row.doc.as_object().cloned().unwrap_or_default();
                doc.insert("scope".into(), Value::Array(scope));
                doc.insert("updatedBy".into(), json!(assignment.by));
                doc.insert("updatedDate".into(), json!(now));
                transaction.put(
                    Table::UserRoles,
                    key,
                    Value::Object(doc),
                    Expect::Version(row.version),
                );
            }
            (None, false) => {
                transaction.put(
                    Table::UserRoles,
                    key,
                    json!({
                        "userId": user_id,
                        "role": role,
                        "scope": scope,
                        "createdBy": assignment.by,
                        "createdDate": now,
                        "updatedBy": null,
                        "updatedDate": null,
                    }),
                    Expect::Absent,
                );
            }
        }
    }
    // A role in an organisation makes the user a member of it.
    for organisation in new_organisations {
        let key = compose_key(&[user_id, &organisation]);
        let existing = context.store.get(Table::UserOrganisation, &key).await?;
        let active = existing.as_ref().is_some_and(|row| {
            !row.doc
                .get("isDeleted")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        });
        if !active {
            transaction.put(
                Table::UserOrganisation,
                key,
                membership_doc(
                    user_id,
                    &organisation,
                    ASSOCIATION_SSO,
                    &now,
                    assignment.by.as_deref(),
                ),
                Expect::Any,
            );
        }
    }
    transaction.event(Topic::User, user_id, user.version);
    Ok(transaction)
}
