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
use super::slot::{ActorSlot, call_factory, serve};
use super::supervisor::{ChildSpec, Restart};
use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::org::{ORG_ACTIVE, OrgRecord, channel_claim};
use crate::domain::rules::slugify;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::audit::{AuditNote, append};
use crate::storage::records::{external_id_claim, org};
use crate::storage::retry::{no_claims, read_modify_write};
use crate::storage::{ClaimKind, Expect, Store, StoreError, Table, Topic, Transaction, Versioned};

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
    /// Written in the create's commit too (the tenant's queued channel registration).
    pub also: Transaction,
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
        audit: Box<AuditNote>,
        reply: RpcReplyPort<DomainResult<()>>,
    },
    AssignKeys {
        id: String,
        sign_keys: Vec<Value>,
        enc_keys: Vec<Value>,
        by: Option<String>,
        audit: Box<AuditNote>,
        reply: RpcReplyPort<DomainResult<()>>,
    },
    SetEncryptionKey {
        id: String,
        file_name: String,
        pem: String,
        by: Option<String>,
        audit: Box<AuditNote>,
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
        audit: AuditNote,
    ) -> DomainResult<()> {
        call_factory(&self.slot, id.clone(), self.timeout, WHAT, |reply| {
            OrgMessage::SetStatus {
                id,
                status,
                by,
                audit: Box::new(audit),
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
        audit: AuditNote,
    ) -> DomainResult<()> {
        call_factory(&self.slot, id.clone(), self.timeout, WHAT, |reply| {
            OrgMessage::AssignKeys {
                id,
                sign_keys,
                enc_keys,
                by,
                audit: Box::new(audit),
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
        audit: AuditNote,
    ) -> DomainResult<()> {
        call_factory(&self.slot, id.clone(), self.timeout, WHAT, |reply| {
            OrgMessage::SetEncryptionKey {
                id,
                file_name,
                pem,
                by,
                audit: Box::new(audit),
                reply,
            }
        })
        .await?
    }
}

pub struct OrgOwnerWorker;

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
            OrgMessage::Create(org, reply) => serve(WHAT, &key, reply, create(context, *org)).await,
            OrgMessage::Update(changes, reply) => {
                serve(WHAT, &key, reply, update(context, *changes)).await
            }
            OrgMessage::SetStatus {
                id,
                status,
                by,
                audit,
                reply,
            } => {
                serve(
                    WHAT,
                    &key,
                    reply,
                    set_status(context, &id, status, by, &audit),
                )
                .await
            }
            OrgMessage::AssignKeys {
                id,
                sign_keys,
                enc_keys,
                by,
                audit,
                reply,
            } => {
                serve(
                    WHAT,
                    &key,
                    reply,
                    assign_keys(context, &id, sign_keys, enc_keys, by, &audit),
                )
                .await
            }
            OrgMessage::SetEncryptionKey {
                id,
                file_name,
                pem,
                by,
                audit,
                reply,
            } => {
                serve(
                    WHAT,
                    &key,
                    reply,
                    set_encryption_key(context, &id, &file_name, &pem, by, &audit),
                )
                .await
            }
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

/// The record of a new organisation, from the validated command.
fn new_org_record(org: &NewOrg, now: &str) -> OrgRecord {
    let mut record = OrgRecord {
        id: org.id.clone(),
        org_name: None,
        channel: org.channel.clone(),
        slug: Some(slugify(&org.channel)),
        is_tenant: org.is_tenant,
        is_root_org: org.is_tenant,
        // Sunbird sets rootOrgId to the organisation's own id for every organisation.
        root_org_id: org.id.clone(),
        hash_tag_id: org.id.clone(),
        status: Some(ORG_ACTIVE),
        external_id: None,
        provider: None,
        is_sso_enabled: false,
        created_by: org.created_by.clone(),
        created_date: Some(now.to_string()),
        updated_by: None,
        updated_date: None,
        fields: Map::new(),
    };
    for (field, value) in &org.fields {
        record.set_field(field, value.clone());
    }
    if let Some(external_id) = &org.external_id {
        record.external_id = Some(external_id.clone());
        record.provider = Some(channel_claim(&org.channel));
    }
    record
}

/// Everything a create writes: the record, the channel and slug claims of a tenant, the
/// external id claim within the channel, and the event.
fn build_create(org: &mut NewOrg, now: &str) -> DomainResult<Transaction> {
    let mut transaction = Transaction::default();
    if org.is_tenant {
        transaction.claim(ClaimKind::OrgChannel, channel_claim(&org.channel), &org.id);
        transaction.claim(ClaimKind::OrgSlug, slugify(&org.channel), &org.id);
    }
    if let Some(external_id) = &org.external_id {
        transaction.claim(
            ClaimKind::OrgExternalId,
            external_id_claim(&org.channel, external_id),
            &org.id,
        );
    }
    let record = new_org_record(org, now);
    transaction.put_record(Table::Organisation, &org.id, &record, Expect::Absent)?;
    transaction.event(Topic::Organisation, &org.id, 1);
    transaction.append(std::mem::take(&mut org.also));
    Ok(transaction)
}

async fn create(context: &OrgOwnerContext, mut org: NewOrg) -> DomainResult<String> {
    let transaction = build_create(&mut org, &now(context))?;
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

fn now(context: &OrgOwnerContext) -> String {
    sunbird_timestamp(context.clock.now())
}

/// Everything an update writes, at the version of `current`: fields, a channel change (with
/// the tenant's channel and slug claims moved) and the external id claim moved within the
/// channel.
fn build_update(
    current: &Versioned<OrgRecord>,
    changes: &OrgChanges,
    now: &str,
) -> DomainResult<Transaction> {
    let stored = &current.record;
    let id = changes.id.as_str();
    let old_channel = stored.channel.clone();
    let new_channel = changes
        .channel
        .clone()
        .unwrap_or_else(|| old_channel.clone());
    let channel_changed = !new_channel.eq_ignore_ascii_case(&old_channel);
    let old_external = stored.external_id.clone().filter(|e| !e.is_empty());
    let new_external = match &changes.external_id {
        Some(value) => value.clone(),
        None => old_external.clone(),
    };

    let mut record = stored.clone();
    let mut transaction = Transaction::default();
    for (field, value) in &changes.fields {
        record.set_field(field, value.clone());
    }
    if channel_changed {
        record.channel = new_channel.clone();
        record.slug = Some(slugify(&new_channel));
        record.provider = Some(channel_claim(&new_channel));
        if stored.is_tenant() {
            transaction.release(ClaimKind::OrgChannel, channel_claim(&old_channel), id);
            transaction.release(ClaimKind::OrgSlug, slugify(&old_channel), id);
            transaction.claim(ClaimKind::OrgChannel, channel_claim(&new_channel), id);
            transaction.claim(ClaimKind::OrgSlug, slugify(&new_channel), id);
        } else {
            record.is_sso_enabled = false;
        }
    }
    if channel_changed || old_external != new_external {
        if let Some(old) = &old_external {
            transaction.release(
                ClaimKind::OrgExternalId,
                external_id_claim(&old_channel, old),
                id,
            );
        }
        match &new_external {
            Some(new) => {
                transaction.claim(
                    ClaimKind::OrgExternalId,
                    external_id_claim(&new_channel, new),
                    id,
                );
                record.external_id = Some(new.clone());
                record.provider = Some(channel_claim(&new_channel));
            }
            None => record.external_id = None,
        }
    }
    record.updated_by = changes.updated_by.clone();
    record.updated_date = Some(now.to_string());
    transaction.put_record(
        Table::Organisation,
        id,
        &record,
        Expect::Version(current.version),
    )?;
    transaction.event(Topic::Organisation, id, current.version + 1);
    Ok(transaction)
}

async fn update(context: &OrgOwnerContext, changes: OrgChanges) -> DomainResult<()> {
    let changes = &changes;
    let new_channel = changes.channel.clone().unwrap_or_default();
    let new_external = changes.external_id.clone().flatten();
    read_modify_write(
        &*context.store,
        |kind| claim_error(kind, &new_channel, new_external.as_deref()),
        || async move {
            let current = org(&context.store, &changes.id)
                .await?
                .ok_or_else(invalid_request)?;
            Ok((build_update(&current, changes, &now(context))?, ()))
        },
    )
    .await
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

/// Applies `change` to the current record and commits it at the version read with the audit
/// entry of the change, retrying when another instance wrote in between.
async fn modify(
    context: &OrgOwnerContext,
    id: &str,
    missing: fn(&str) -> DomainError,
    change: impl Fn(&mut OrgRecord, &mut Transaction) -> DomainResult<()>,
    by: Option<&str>,
    audit: &AuditNote,
) -> DomainResult<()> {
    let change = &change;
    read_modify_write(&*context.store, no_claims, || async move {
        let current = org(&context.store, id).await?.ok_or_else(|| missing(id))?;
        let mut record = current.record.clone();
        let mut transaction = Transaction::default();
        change(&mut record, &mut transaction)?;
        let at = now(context);
        record.updated_by = by.map(str::to_string);
        record.updated_date = Some(at.clone());
        transaction.put_record(
            Table::Organisation,
            id,
            &record,
            Expect::Version(current.version),
        )?;
        transaction.event(Topic::Organisation, id, current.version + 1);
        append(&*context.store, &mut transaction, audit, &at).await?;
        Ok((transaction, ()))
    })
    .await
}

async fn set_status(
    context: &OrgOwnerContext,
    id: &str,
    status: i64,
    by: Option<String>,
    audit: &AuditNote,
) -> DomainResult<()> {
    modify(
        context,
        id,
        |_| invalid_request(),
        |record, _| {
            if !status_transition_allowed(record.status, status) {
                return Err(invalid_request());
            }
            record.status = Some(status);
            Ok(())
        },
        by.as_deref(),
        audit,
    )
    .await
}

fn no_root_org(id: &str) -> DomainError {
    DomainError::rule(ErrorCode::rootOrgAssociationError, &[id])
}

fn keys_of(record: &OrgRecord) -> Map<String, Value> {
    record
        .fields
        .get("keys")
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
    audit: &AuditNote,
) -> DomainResult<()> {
    modify(
        context,
        id,
        no_root_org,
        |record, _| {
            if !record.is_tenant() {
                return Err(DomainError::with_message(
                    ErrorCode::invalidRequestData,
                    "Please provide valid organisationid.",
                ));
            }
            let mut keys = keys_of(record);
            keys.insert("signKeys".into(), Value::Array(sign_keys.clone()));
            keys.insert("encKeys".into(), Value::Array(enc_keys.clone()));
            record.fields.insert("keys".into(), Value::Object(keys));
            Ok(())
        },
        by.as_deref(),
        audit,
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
    audit: &AuditNote,
) -> DomainResult<()> {
    let path = encryption_key_path(id, file_name);
    modify(
        context,
        id,
        no_root_org,
        |record, transaction| {
            let mut keys = keys_of(record);
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
            record.fields.insert("keys".into(), Value::Object(keys));
            transaction.put(
                Table::File,
                &path,
                json!({"path": path, "contentType": "application/x-pem-file", "data": pem}),
                Expect::Any,
            );
            Ok(())
        },
        by.as_deref(),
        audit,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Record;

    const NOW: &str = "2026-12-01 10:00:00:000+0000";

    fn new_org(is_tenant: bool) -> NewOrg {
        let mut fields = Map::new();
        fields.insert("orgName".into(), json!("Board"));
        fields.insert("organisationType".into(), json!(5));
        fields.insert("isSSOEnabled".into(), json!(true));
        NewOrg {
            id: "o1".into(),
            fields,
            channel: "Board".into(),
            is_tenant,
            external_id: Some("ext-1".into()),
            created_by: Some("admin".into()),
            also: Transaction::default(),
        }
    }

    fn record_of(transaction: &Transaction) -> OrgRecord {
        transaction
            .writes
            .iter()
            .find_map(|write| match write {
                crate::storage::Write::Put { doc, .. } => OrgRecord::from_doc(doc),
                _ => None,
            })
            .expect("an organisation row")
    }

    #[test]
    fn a_tenant_claims_its_channel_and_slug_and_every_org_its_external_id() {
        let tenant = build_create(&mut new_org(true), NOW).expect("create");
        let claims: Vec<(ClaimKind, String)> = tenant
            .claims
            .iter()
            .map(|c| (c.kind, c.value.clone()))
            .collect();
        assert_eq!(
            claims,
            vec![
                (ClaimKind::OrgChannel, "board".to_string()),
                (ClaimKind::OrgSlug, "board".to_string()),
                (ClaimKind::OrgExternalId, "board\u{1f}ext-1".to_string()),
            ]
        );
        let record = record_of(&tenant);
        assert_eq!(record.org_name.as_deref(), Some("Board"));
        assert!(record.is_tenant() && record.is_sso_enabled && record.is_active());
        assert_eq!(
            (record.root_org_id.as_str(), record.hash_tag_id.as_str()),
            ("o1", "o1")
        );
        assert_eq!(record.fields["organisationType"], json!(5));
        assert!(
            !record.fields.contains_key("orgName"),
            "fields never shadow typed ones"
        );
        assert_eq!(OrgRecord::from_doc(&record.to_doc()), Some(record));
        let sub = build_create(&mut new_org(false), NOW).expect("create");
        assert_eq!(
            sub.claims.len(),
            1,
            "a sub-organisation claims only its external id"
        );
    }

    #[test]
    fn a_channel_change_moves_a_tenants_claims_and_ends_a_sub_organisations_sso() {
        let current = |is_tenant| Versioned {
            key: "o1".into(),
            version: 4,
            record: record_of(&build_create(&mut new_org(is_tenant), NOW).expect("create")),
        };
        let changes = OrgChanges {
            id: "o1".into(),
            channel: Some("State".into()),
            ..OrgChanges::default()
        };
        let tenant = build_update(&current(true), &changes, NOW).expect("update");
        let moved: Vec<ClaimKind> = tenant.claims.iter().map(|c| c.kind).collect();
        assert_eq!(
            moved,
            vec![
                ClaimKind::OrgChannel,
                ClaimKind::OrgSlug,
                ClaimKind::OrgExternalId
            ]
        );
        assert_eq!(tenant.releases.len(), 3);
        assert_eq!(
            tenant.writes.iter().find_map(|w| match w {
                crate::storage::Write::Put { expect, .. } => Some(*expect),
                _ => None,
            }),
            Some(Expect::Version(4))
        );
        let sub = build_update(&current(false), &changes, NOW).expect("update");
        let record = record_of(&sub);
        assert_eq!(
            (record.channel.as_str(), record.is_sso_enabled),
            ("State", false)
        );
        assert_eq!(record.provider.as_deref(), Some("state"));
        assert_eq!(sub.events[0].version, 5);
    }

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
