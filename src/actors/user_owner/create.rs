//! Creating a user: the record with its sealed identifiers and their claims, the memberships of
//! the requested and root organisations, the requested roles, and the outbox event, in one
//! commit. Uniqueness comes from the claims: the create runs on a worker keyed by the fresh id,
//! so the per-user order adds nothing here.

use std::collections::BTreeMap;

use serde_json::Map;

use super::contacts::{
    claim_message, email_token, external_id_claim, phone_token, seal_email, seal_external_id,
    seal_phone, seal_recovery_contacts, seal_username, username_token,
};
use super::{UserOwnerContext, now};
use crate::crypto::PiiVault;
use crate::domain::membership::MembershipRecord;
use crate::domain::role::RoleGrant;
use crate::domain::rules::{new_timestamp_id, username_candidate};
use crate::domain::signin::CredentialRecord;
use crate::domain::user::{
    ExternalId, MANAGED_SLOT_TOKEN, NewUser, STATUS_ACTIVE, UserRecord, managed_slot,
};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::audit::{AuditNote, append};
use crate::storage::retry::{AUDIT_APPEND_ATTEMPTS, WRITE_ATTEMPTS};
use crate::storage::{ClaimKind, Expect, StoreError, Table, Topic, Transaction, compose_key};

/// Rounds of ten username candidates tried before giving up (Sunbird tries 10 x 10).
const USERNAME_ROUNDS: usize = 10;
const USERNAME_CANDIDATES: usize = 10;

pub(super) async fn create_user(
    context: &UserOwnerContext,
    user: NewUser,
    audit: Option<&AuditNote>,
    also: &Transaction,
) -> DomainResult<String> {
    let mut attempt = 0;
    // Each slot lost to a concurrent create of a sibling is one fewer free slot, so this many
    // losses mean none is left (or slots are being freed as fast as they are taken).
    let mut slots_lost = 0;
    loop {
        attempt += 1;
        let slot = match &user.request.managed_by {
            Some(parent) => Some(free_slot(context, parent).await?),
            None => None,
        };
        let (username, generated) = match &user.request.username {
            Some(name) => (name.clone(), false),
            None => (
                generate_username(context, &user.request.username_base()).await?,
                true,
            ),
        };
        let at = now(context);
        let mut transaction = build_create(&context.vault, &at, &user, &username, slot.as_deref())?;
        transaction.append(also.clone());
        if let Some(note) = audit {
            append(&*context.store, &mut transaction, note, &at).await?;
        }
        match context.store.commit(transaction).await {
            Ok(_) => return Ok(user.id.clone()),
            // A generated username taken between the check and the commit: pick another.
            Err(StoreError::ClaimTaken {
                kind: ClaimKind::Username,
                ..
            }) if generated && attempt < WRITE_ATTEMPTS => continue,
            // A sibling took the slot first: look for another.
            Err(StoreError::ClaimTaken {
                kind: ClaimKind::ManagedSlot,
                ..
            }) if slots_lost < context.managed_user_limit + WRITE_ATTEMPTS => {
                slots_lost += 1;
                continue;
            }
            Err(StoreError::ClaimTaken { kind, .. }) => {
                let taken = match kind {
                    ClaimKind::ExternalId => first_taken_external_id(context, &user).await,
                    _ => None,
                };
                return Err(claim_message(kind, taken));
            }
            // Another audited change took the next entry of the trail: append after it.
            Err(StoreError::Conflict {
                table: Table::Audit,
                ..
            }) if attempt < AUDIT_APPEND_ATTEMPTS => continue,
            Err(StoreError::Conflict { .. }) => {
                // The id is new: a conflict means an id collision (or this very create, retried).
                return Err(DomainError::internal(anyhow::anyhow!(
                    "user id collision on create"
                )));
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// The first free managed-child slot of `parent`; none left is Sunbird's limit error. The
/// commit's claim decides between creates that found the same slot free.
async fn free_slot(context: &UserOwnerContext, parent: &str) -> DomainResult<String> {
    for n in 0..context.managed_user_limit {
        let slot = managed_slot(parent, n);
        if context
            .store
            .claim_owner(ClaimKind::ManagedSlot, &slot)
            .await?
            .is_none()
        {
            return Ok(slot);
        }
    }
    Err(DomainError::rule(ErrorCode::managedUserLimitExceeded, &[]))
}

/// Picks a free generated username: candidates are checked against the claims in rounds, and the
/// first free one is returned (the commit still claims it atomically).
async fn generate_username(context: &UserOwnerContext, base: &str) -> DomainResult<String> {
    for _ in 0..USERNAME_ROUNDS {
        for _ in 0..USERNAME_CANDIDATES {
            let candidate = username_candidate(base, context.username_suffix_length);
            let token = username_token(&context.vault, &candidate);
            if context
                .store
                .claim_owner(ClaimKind::Username, &token)
                .await?
                .is_none()
            {
                return Ok(candidate);
            }
        }
    }
    Err(DomainError::internal(anyhow::anyhow!(
        "no free username after {} candidates",
        USERNAME_ROUNDS * USERNAME_CANDIDATES
    )))
}

/// The first external id of the request someone else owns.
async fn first_taken_external_id<'a>(
    context: &UserOwnerContext,
    user: &'a NewUser,
) -> Option<&'a ExternalId> {
    for external in &user.request.external_ids {
        let claim = external_id_claim(&context.vault, external);
        if let Ok(Some(owner)) = context
            .store
            .claim_owner(ClaimKind::ExternalId, &claim)
            .await
            && owner != user.id
        {
            return Some(external);
        }
    }
    None
}

/// The record of a new user, from the validated request.
pub(super) fn new_record(
    vault: &PiiVault,
    now: &str,
    user: &NewUser,
    username: &str,
    slot: Option<&str>,
) -> DomainResult<(UserRecord, String)> {
    let request = &user.request;
    let mut record = UserRecord {
        id: user.id.clone(),
        user_id: user.id.clone(),
        first_name: None,
        last_name: None,
        phone: None,
        masked_phone: None,
        country_code: None,
        phone_verified: request.phone_verified,
        email: None,
        masked_email: None,
        email_verified: request.email_verified,
        recovery_email: None,
        recovery_phone: None,
        prev_used_email: None,
        prev_used_phone: None,
        user_name: None,
        login_id: None,
        external_ids: Vec::new(),
        dob: request.dob.clone(),
        root_org_id: user.root_org_id.clone(),
        channel: user.channel.clone(),
        managed_by: request.managed_by.clone(),
        status: STATUS_ACTIVE,
        is_deleted: false,
        is_blocked: None,
        flags_value: user.flags_value,
        created_date: Some(now.to_string()),
        created_by: user.created_by.clone(),
        updated_date: None,
        updated_by: None,
        pii_tokens: BTreeMap::new(),
        profile: Map::new(),
    };
    for (field, value) in &request.profile {
        record.set_profile_field(field, value.clone());
    }
    for external in &request.external_ids {
        let sealed = seal_external_id(vault, &record.id, external)?;
        record.external_ids.push(sealed);
    }
    record.first_name = Some(request.first_name.clone());
    record.last_name = request.last_name.clone();
    if let Some(phone) = &request.phone {
        seal_phone(vault, &mut record, phone)?;
    }
    if let Some(email) = &request.email {
        seal_email(vault, &mut record, email)?;
    }
    seal_recovery_contacts(
        vault,
        &mut record,
        request.recovery_email.as_ref(),
        request.recovery_phone.as_ref(),
    )?;
    let username_token = seal_username(vault, &mut record, username)?;
    if let Some(slot) = slot {
        record
            .pii_tokens
            .insert(MANAGED_SLOT_TOKEN.into(), slot.to_string());
    }
    Ok((record, username_token))
}

/// Everything a create writes, in one transaction.
pub fn build_create(
    vault: &PiiVault,
    now: &str,
    user: &NewUser,
    username: &str,
    slot: Option<&str>,
) -> DomainResult<Transaction> {
    let request = &user.request;
    let (record, username_token) = new_record(vault, now, user, username, slot)?;
    let mut transaction = Transaction::default();
    // Claims in Sunbird's order of uniqueness checks: phone, then email, then the username.
    if let Some(phone) = &request.phone {
        transaction.claim(ClaimKind::Phone, phone_token(vault, phone), &user.id);
    }
    if let Some(email) = &request.email {
        transaction.claim(ClaimKind::Email, email_token(vault, email), &user.id);
    }
    transaction.claim(ClaimKind::Username, username_token, &user.id);
    if let Some(slot) = slot {
        transaction.claim(ClaimKind::ManagedSlot, slot, &user.id);
    }
    for external in &record.external_ids {
        transaction.claim(ClaimKind::ExternalId, external.claim(), &user.id);
    }
    transaction.put_record(Table::User, &user.id, &record, Expect::Absent)?;
    if let Some(hash) = &user.password_hash {
        let credential = CredentialRecord {
            user_id: user.id.clone(),
            password_hash: hash.clone(),
            ..CredentialRecord::default()
        };
        transaction.put_record(Table::UserCredential, &user.id, &credential, Expect::Absent)?;
    }

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
        let membership = MembershipRecord::new(
            new_timestamp_id(),
            &user.id,
            organisation,
            user.association_type,
            now,
            by,
        );
        transaction.put_record(
            Table::UserOrganisation,
            compose_key(&[&user.id, organisation]),
            &membership,
            Expect::Any,
        )?;
    }
    // Requested roles, scoped to the root organisation (PUBLIC is implicit and not written).
    for role in &request.roles {
        let grant = RoleGrant::new(
            &user.id,
            role,
            std::slice::from_ref(&user.root_org_id),
            by,
            now,
        );
        transaction.put_record(
            Table::UserRoles,
            compose_key(&[&user.id, role]),
            &grant,
            Expect::Any,
        )?;
    }
    transaction.event(Topic::User, &user.id, 1);
    Ok(transaction)
}
