//! Organisation owners: a ractor factory keyed by organisation id, so every mutation of one
//! organisation (create, update, status, keys) runs in order on one worker. The worker checks the
//! command against the current row and commits the row, its uniqueness claims (tenant channel
//! and slug, external id within the channel) and the outbox event in one transaction.

use std::sync::Arc;
use std::time::Duration;

use ractor::factory::{FactoryRef, Job, Worker, WorkerId};
use ractor::{ActorProcessingErr, RpcReplyPort};
use serde_json::{Map, Value, json};

use super::keyed::spawn_keyed_factory;
use super::slot::{ActorSlot, call_factory};
use super::supervisor::{ChildSpec, Restart};
use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::org::channel_claim;
use crate::domain::rules::slugify;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::records::external_id_claim;
use crate::storage::{ClaimKind, Expect, Row, Store, StoreError, Table, Topic, Transaction};

const WRITE_RETRIES: usize = 3;

pub struct OrgOwnerContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
}

/// An organisation validated by the service, ready to be written.
#[derive(Debug)]
pub struct NewOrg {
    pub id: String,
    /// Every stored field except the ones the owner sets (id, dates, status, claims).
    pub fields: Map<String, Value>,
    pub channel: String,
    pub is_tenant: bool,
    pub external_id: Option<String>,
    pub created_by: Option<String>,
}

/// Changes to an organisation, validated by the service.
#[derive(Debug, Default)]
pub struct OrgChanges {
    pub id: String,
    /// Plain fields to set.
    pub fields: Map<String, Value>,
    pub channel: Option<String>,
    /// `Some(None)` removes the external id.
    pub external_id: Option<Option<String>>,
    pub updated_by: Option<String>,
}

pub enum OrgMessage {
    Create(Box<NewOrg>, RpcReplyPort<DomainResult<String>>),
    Update(Box<OrgChanges>, RpcReplyPort<DomainResult<()>>),
    SetStatus {
        id: String,
        status: i64,
        by: Option<String>,
        reply: RpcReplyPort<DomainResult<()>>,
    },
    AssignKeys {
        id: String,
        sign_keys: Vec<Value>,
        enc_keys: Vec<Value>,
        by: Option<String>,
        reply: RpcReplyPort<DomainResult<()>>,
    },
    SetEncryptionKey {
        id: String,
        file_name: String,
        pem: String,
        by: Option<String>,
        reply: RpcReplyPort<DomainResult<()>>,
    },
}

/// The typed client of the organisation owners. Cheap to clone.
#[derive(Clone)]
pub struct OrgOwners {
    slot: ActorSlot<FactoryRef<String, OrgMessage>>,
    timeout: Duration,
}

const WHAT: &str = "organisation owners";

impl OrgOwners {
    pub fn new(slot: ActorSlot<FactoryRef<String, OrgMessage>>, timeout: Duration) -> Self {
        OrgOwners { slot, timeout }
    }

    /// True when the factory runs (for `/health`).
    pub fn alive(&self) -> bool {
        self.slot.alive()
    }

    pub async fn create(&self, org: NewOrg) -> DomainResult<String> {
        let key = org.id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            OrgMessage::Create(Box::new(org), reply)
        })
        .await?
    }

    pub async fn update(&self, changes: OrgChanges) -> DomainResult<()> {
        let key = changes.id.clone();
        call_factory(&self.slot, key, self.timeout, WHAT, |reply| {
            OrgMessage::Update(Box::new(changes), reply)
        })
        .await?
    }

    pub async fn set_status(
        &self,
        id: String,
        status: i64,
        by: Option<String>,
    ) -> DomainResult<()> {
        call_factory(&self.slot, id.clone(), self.timeout, WHAT, |reply| {
            OrgMessage::SetStatus {
                id,
                status,
                by,
                reply,
            }
        })
        .await?
    }

    pub async fn assign_keys(
        &self,
        id: String,
        sign_keys: Vec<Value>,
        enc_keys: Vec<Value>,
        by: Option<String>,
    ) -> DomainResult<()> {
        call_factory(&self.slot, id.clone(), self.timeout, WHAT, |reply| {
            OrgMessage::AssignKeys {
                id,
                sign_keys,
                enc_keys,
                by,
                reply,
            }
        })
        .await?
    }

    pub async fn set_encryption_key(
        &self,
        id: String,
        file_name: String,
        pem: String,
        by: Option<String>,
    ) -> DomainResult<()> {
        call_factory(&self.slot, id.clone(), self.timeout, WHAT, |reply| {
            OrgMessage::SetEncryptionKey {
                id,
                file_name,
                pem,
                by,
                reply,
            }
        })
        .await?
    }
}

pub struct OrgOwnerWorker;

fn answer<T>(reply: RpcReplyPort<T>, value: T, key: &str) {
    if reply.send(value).is_err() {
        tracing::debug!(org.id = %key, "reply dropped by caller");
    }
}

impl Worker for OrgOwnerWorker {
    type Key = String;
    type Message = OrgMessage;
    type Arguments = Arc<OrgOwnerContext>;
    type State = Arc<OrgOwnerContext>;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &FactoryRef<String, OrgMessage>,
        context: Arc<OrgOwnerContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(context)
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &FactoryRef<String, OrgMessage>,
        Job { key, msg, .. }: Job<String, OrgMessage>,
        context: &mut Self::State,
    ) -> Result<String, ActorProcessingErr> {
        match msg {
            OrgMessage::Create(org, reply) => answer(reply, create(context, *org).await, &key),
            OrgMessage::Update(changes, reply) => {
                answer(reply, update(context, *changes).await, &key)
            }
            OrgMessage::SetStatus {
                id,
                status,
                by,
                reply,
            } => answer(reply, set_status(context, &id, status, by).await, &key),
            OrgMessage::AssignKeys {
                id,
                sign_keys,
                enc_keys,
                by,
                reply,
            } => answer(
                reply,
                assign_keys(context, &id, sign_keys, enc_keys, by).await,
                &key,
            ),
            OrgMessage::SetEncryptionKey {
                id,
                file_name,
                pem,
                by,
                reply,
            } => answer(
                reply,
                set_encryption_key(context, &id, &file_name, &pem, by).await,
                &key,
            ),
        }
        Ok(key)
    }
}

/// The organisation owners as a child of the root supervisor, published in `slot`.
pub fn child_spec(
    context: Arc<OrgOwnerContext>,
    workers: usize,
    slot: ActorSlot<FactoryRef<String, OrgMessage>>,
) -> ChildSpec {
    ChildSpec::new(WHAT, Restart::Permanent, slot, move |supervisor| {
        let context = Arc::clone(&context);
        Box::pin(async move {
            let (factory, _handle) = spawn_keyed_factory(
                move || (OrgOwnerWorker, Arc::clone(&context)),
                workers,
                supervisor,
            )
            .await?;
            Ok(factory)
        })
    })
}

// ==== Command execution ====

fn duplicate(value: &str, field: &str) -> DomainError {
    DomainError::rule(ErrorCode::errorDuplicateEntry, &[value, field])
}

fn claim_error(kind: ClaimKind, channel: &str, external_id: Option<&str>) -> DomainError {
    match kind {
        ClaimKind::OrgChannel => duplicate(channel, "channel"),
        ClaimKind::OrgSlug => duplicate(&slugify(channel), "slug"),
        ClaimKind::OrgExternalId => duplicate(external_id.unwrap_or_default(), "externalId"),
        other => DomainError::already_exists(other.name()),
    }
}

async fn create(context: &OrgOwnerContext, org: NewOrg) -> DomainResult<String> {
    let now = sunbird_timestamp(context.clock.now());
    let mut doc = org.fields.clone();
    let mut transaction = Transaction::default();
    let channel_value = channel_claim(&org.channel);
    let slug = slugify(&org.channel);
    if org.is_tenant {
        transaction.claim(ClaimKind::OrgChannel, &channel_value, &org.id);
        transaction.claim(ClaimKind::OrgSlug, &slug, &org.id);
    }
    if let Some(external_id) = &org.external_id {
        transaction.claim(
            ClaimKind::OrgExternalId,
            external_id_claim(&org.channel, external_id),
            &org.id,
        );
        doc.insert("externalId".into(), json!(external_id));
        doc.insert("provider".into(), json!(channel_value));
    }
    doc.insert("id".into(), json!(org.id));
    doc.insert("channel".into(), json!(org.channel));
    doc.insert("slug".into(), json!(slug));
    doc.insert("isTenant".into(), json!(org.is_tenant));
    doc.insert("isRootOrg".into(), json!(org.is_tenant));
    // Sunbird sets rootOrgId to the organisation's own id for every organisation.
    doc.insert("rootOrgId".into(), json!(org.id));
    doc.insert("hashTagId".into(), json!(org.id));
    doc.insert("status".into(), json!(1));
    doc.entry("isSSOEnabled").or_insert(json!(false));
    doc.insert("createdBy".into(), json!(org.created_by));
    doc.insert("createdDate".into(), json!(now));
    doc.insert("updatedBy".into(), Value::Null);
    doc.insert("updatedDate".into(), Value::Null);
    transaction.put(
        Table::Organisation,
        &org.id,
        Value::Object(doc),
        Expect::Absent,
    );
    transaction.event(Topic::Organisation, &org.id, 1);
    match context.store.commit(transaction).await {
        Ok(_) => Ok(org.id),
        Err(StoreError::ClaimTaken { kind, .. }) => {
            Err(claim_error(kind, &org.channel, org.external_id.as_deref()))
        }
        Err(other) => Err(DomainError::from(other)),
    }
}

fn invalid_request() -> DomainError {
    DomainError::rule(ErrorCode::invalidRequestData, &[])
}

async fn load(context: &OrgOwnerContext, id: &str) -> DomainResult<Option<Row>> {
    context
        .store
        .get(Table::Organisation, id)
        .await
        .map_err(DomainError::from)
}

fn text<'a>(doc: &'a Value, field: &str) -> Option<&'a str> {
    doc.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

async fn update(context: &OrgOwnerContext, changes: OrgChanges) -> DomainResult<()> {
    for _ in 0..WRITE_RETRIES {
        let row = load(context, &changes.id)
            .await?
            .ok_or_else(invalid_request)?;
        let current = &row.doc;
        let is_tenant = current
            .get("isTenant")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let old_channel = text(current, "channel").unwrap_or_default().to_string();
        let new_channel = changes
            .channel
            .clone()
            .unwrap_or_else(|| old_channel.clone());
        let channel_changed = !new_channel.eq_ignore_ascii_case(&old_channel);
        let old_external = text(current, "externalId").map(str::to_string);
        let new_external = match &changes.external_id {
            Some(value) => value.clone(),
            None => old_external.clone(),
        };

        let mut doc = current.as_object().cloned().unwrap_or_default();
        let mut transaction = Transaction::default();
        for (field, value) in &changes.fields {
            doc.insert(field.clone(), value.clone());
        }
        if channel_changed {
            doc.insert("channel".into(), json!(new_channel));
            doc.insert("slug".into(), json!(slugify(&new_channel)));
            doc.insert("provider".into(), json!(channel_claim(&new_channel)));
            if is_tenant {
                transaction.release(
                    ClaimKind::OrgChannel,
                    channel_claim(&old_channel),
                    &changes.id,
                );
                transaction.release(ClaimKind::OrgSlug, slugify(&old_channel), &changes.id);
                transaction.claim(
                    ClaimKind::OrgChannel,
                    channel_claim(&new_channel),
                    &changes.id,
                );
                transaction.claim(ClaimKind::OrgSlug, slugify(&new_channel), &changes.id);
            } else {
                doc.insert("isSSOEnabled".into(), json!(false));
            }
        }
        if channel_changed || old_external != new_external {
            if let Some(old) = &old_external {
                transaction.release(
                    ClaimKind::OrgExternalId,
                    external_id_claim(&old_channel, old),
                    &changes.id,
                );
            }
            match &new_external {
                Some(new) => {
                    transaction.claim(
                        ClaimKind::OrgExternalId,
                        external_id_claim(&new_channel, new),
                        &changes.id,
                    );
                    doc.insert("externalId".into(), json!(new));
                    doc.insert("provider".into(), json!(channel_claim(&new_channel)));
                }
                None => {
                    doc.remove("externalId");
                }
            }
        }
        doc.insert("updatedBy".into(), json!(changes.updated_by));
        doc.insert(
            "updatedDate".into(),
            json!(sunbird_timestamp(context.clock.now())),
        );
        transaction.put(
            Table::Organisation,
            &changes.id,
            Value::Object(doc),
            Expect::Version(row.version),
        );
        transaction.event(Topic::Organisation, &changes.id, row.version + 1);
        match context.store.commit(transaction).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::ClaimTaken { kind, .. }) => {
                return Err(claim_error(kind, &new_channel, new_external.as_deref()));
            }
            Err(other) => return Err(DomainError::from(other)),
        }
    }
    Err(DomainError::Unavailable(
        "organisation changed concurrently too often".into(),
    ))
}

/// Sunbird's allowed status transitions (`OrgServiceImpl.checkOrgStatusTransition`):
/// 0 inactive, 1 active, 2 blocked, 3 retired.
pub fn status_transition_allowed(from: Option<i64>, to: i64) -> bool {
    match from {
        Some(1) => matches!(to, 0..=3),
        Some(0) => matches!(to, 0 | 1),
        Some(2) => matches!(to, 1..=3),
        Some(3) => to == 3,
        None => matches!(to, 0..=3),
        Some(_) => false,
    }
}

/// Applies `change` to the current row and commits with a version check, retrying when another
/// instance wrote in between.
async fn modify(
    context: &OrgOwnerContext,
    id: &str,
    missing: fn(&str) -> DomainError,
    change: impl Fn(&Row, &mut Map<String, Value>, &mut Transaction) -> DomainResult<()>,
    by: Option<&str>,
) -> DomainResult<()> {
    for _ in 0..WRITE_RETRIES {
        let row = load(context, id).await?.ok_or_else(|| missing(id))?;
        let mut doc = row.doc.as_object().cloned().unwrap_or_default();
        let mut transaction = Transaction::default();
        change(&row, &mut doc, &mut transaction)?;
        doc.insert("updatedBy".into(), json!(by));
        doc.insert(
            "updatedDate".into(),
            json!(sunbird_timestamp(context.clock.now())),
        );
        transaction.put(
            Table::Organisation,
            id,
            Value::Object(doc),
            Expect::Version(row.version),
        );
        transaction.event(Topic::Organisation, id, row.version + 1);
        match context.store.commit(transaction).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(DomainError::from(other)),
        }
    }
    Err(DomainError::Unavailable(
        "organisation changed concurrently too often".into(),
    ))
}

async fn set_status(
    context: &OrgOwnerContext,
    id: &str,
    status: i64,
    by: Option<String>,
) -> DomainResult<()> {
    modify(
        context,
        id,
        |_| invalid_request(),
        |row, doc, _| {
            let current = row.doc.get("status").and_then(Value::as_i64);
            if !status_transition_allowed(current, status) {
                return Err(invalid_request());
            }
            doc.insert("status".into(), json!(status));
            Ok(())
        },
        by.as_deref(),
    )
    .await
}

fn no_root_org(id: &str) -> DomainError {
    DomainError::rule(ErrorCode::rootOrgAssociationError, &[id])
}

fn keys_of(doc: &Map<String, Value>) -> Map<String, Value> {
    doc.get("keys")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

async fn assign_keys(
    context: &OrgOwnerContext,
    id: &str,
    sign_keys: Vec<Value>,
    enc_keys: Vec<Value>,
    by: Option<String>,
) -> DomainResult<()> {
    modify(
        context,
        id,
        no_root_org,
        |row, doc, _| {
            if !row
                .doc
                .get("isTenant")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                return Err(DomainError::with_message(
                    ErrorCode::invalidRequestData,
                    "Please provide valid organisationid.",
                ));
            }
            let mut keys = keys_of(doc);
            keys.insert("signKeys".into(), Value::Array(sign_keys.clone()));
            keys.insert("encKeys".into(), Value::Array(enc_keys.clone()));
            doc.insert("keys".into(), Value::Object(keys));
            Ok(())
        },
        by.as_deref(),
    )
    .await
}

/// Where an uploaded organisation key is kept (Sunbird's cloud storage path).
pub fn encryption_key_path(id: &str, file_name: &str) -> String {
    format!("organisation/{id}/{file_name}")
}

async fn set_encryption_key(
    context: &OrgOwnerContext,
    id: &str,
    file_name: &str,
    pem: &str,
    by: Option<String>,
) -> DomainResult<()> {
    let path = encryption_key_path(id, file_name);
    modify(
        context,
        id,
        no_root_org,
        |_, doc, transaction| {
            let mut keys = keys_of(doc);
            keys.entry("signKeys").or_insert(json!([]));
            keys.entry("encKeys").or_insert(json!([]));
            // The previous key file is replaced, as Sunbird deletes the old object first.
            if let Some(old) = keys
                .get("exhaustEncryptionKey")
                .and_then(Value::as_array)
                .and_then(|paths| paths.first())
                .and_then(Value::as_str)
                && old != path
            {
                transaction.delete(Table::File, old, Expect::Any);
            }
            keys.insert("exhaustEncryptionKey".into(), json!([path]));
            doc.insert("keys".into(), Value::Object(keys));
            transaction.put(
                Table::File,
                &path,
                json!({"path": path, "contentType": "application/x-pem-file", "data": pem}),
                Expect::Any,
            );
            Ok(())
        },
        by.as_deref(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_matrix_is_sunbirds() {
        let allowed: Vec<(i64, i64)> = (0..=3)
            .flat_map(|from| (0..=3).map(move |to| (from, to)))
            .filter(|(from, to)| status_transition_allowed(Some(*from), *to))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (0, 0),
                (0, 1),
                (1, 0),
                (1, 1),
                (1, 2),
                (1, 3),
                (2, 1),
                (2, 2),
                (2, 3),
                (3, 3)
            ]
        );
        assert!(!status_transition_allowed(Some(1), 4));
        assert!(!status_transition_allowed(Some(7), 1));
    }
}
