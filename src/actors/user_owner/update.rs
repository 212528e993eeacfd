//! Updating a user: profile fields, contacts (their claims moved), recovery contacts, external
//! ids (claims moved, added or removed), and a membership of a newly given organisation, all at
//! the version read, retried on a concurrent write.

use super::contacts::{
    claim_message, email_token, move_contact_claim, phone_token, seal_email, seal_external_id,
    seal_phone, seal_recovery_contacts,
};
use super::{UserOwnerContext, load_user, now};
use crate::crypto::PiiVault;
use crate::domain::membership::MembershipRecord;
use crate::domain::rules::new_timestamp_id;
use crate::domain::user::{
    ASSOCIATION_SSO, ExternalId, ExternalIdOperation, MANAGED_SLOT_TOKEN, UserRecord, UserUpdate,
};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::records::get_org;
use crate::storage::retry::read_modify_write;
use crate::storage::{ClaimKind, Expect, Table, Topic, Transaction, Versioned, compose_key};

pub(super) async fn update_user(
    context: &UserOwnerContext,
    update: UserUpdate,
    on_graduation: Option<Transaction>,
) -> DomainResult<()> {
    let update = &update;
    let on_graduation = &on_graduation;
    read_modify_write(
        &*context.store,
        |kind| claim_message(kind, None),
        || async move {
            let current = load_user(context, &update.request.user_id).await?;
            if current.record.is_deleted() {
                return Err(DomainError::rule(ErrorCode::inactiveUser, &[]));
            }
            if let Some(organisation) = &update.request.organisation_id
                && get_org(&context.store, organisation).await?.is_none()
            {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[organisation, "organisationId"],
                ));
            }
            let graduates = current.record.managed_by.is_some()
                && (update.request.email.is_some() || update.request.phone.is_some());
            let mut transaction = build_update(&context.vault, &now(context), &current, update)?;
            if graduates && let Some(notice) = on_graduation {
                transaction.append(notice.clone());
            }
            Ok((transaction, ()))
        },
    )
    .await
}

/// Applies the external id operations to the stored list (sealing the new ids), moving the
/// claims.
pub(super) fn apply_external_ids(
    vault: &PiiVault,
    record: &mut UserRecord,
    transaction: &mut Transaction,
    operations: &[(ExternalIdOperation, ExternalId)],
) -> DomainResult<()> {
    let user_id = record.id.clone();
    for (operation, external) in operations {
        if let Some(index) = record
            .external_ids
            .iter()
            .position(|stored| stored.same_slot(external))
        {
            let old = record.external_ids.remove(index);
            transaction.release(ClaimKind::ExternalId, old.claim(), &user_id);
        }
        match operation {
            ExternalIdOperation::Add | ExternalIdOperation::Edit => {
                let sealed = seal_external_id(vault, &user_id, external)?;
                transaction.claim(ClaimKind::ExternalId, sealed.claim(), &user_id);
                record.external_ids.push(sealed);
            }
            ExternalIdOperation::Remove => {}
        }
    }
    Ok(())
}

/// Everything an update writes, at the version of `current`.
pub(super) fn build_update(
    vault: &PiiVault,
    now: &str,
    current: &Versioned<UserRecord>,
    update: &UserUpdate,
) -> DomainResult<Transaction> {
    let request = &update.request;
    let user_id = request.user_id.as_str();
    let stored = &current.record;
    let mut record = stored.clone();
    let mut transaction = Transaction::default();

    for (field, value) in &request.profile {
        record.set_profile_field(field, value.clone());
    }
    if let Some(dob) = &request.dob {
        record.dob = Some(dob.clone());
    }
    if let Some(phone) = &request.phone {
        let token = phone_token(vault, phone);
        let stored_token = stored.pii_tokens.get("phone");
        if move_contact_claim(
            &mut transaction,
            stored_token,
            ClaimKind::Phone,
            token,
            user_id,
        ) {
            seal_phone(vault, &mut record, phone)?;
            // A new contact is not verified until someone verifies it.
            record.phone_verified = false;
        }
    }
    if let Some(verified) = request.phone_verified {
        record.phone_verified = verified;
    }
    if let Some(email) = &request.email {
        let token = email_token(vault, email);
        let stored_token = stored.pii_tokens.get("email");
        if move_contact_claim(
            &mut transaction,
            stored_token,
            ClaimKind::Email,
            token,
            user_id,
        ) {
            seal_email(vault, &mut record, email)?;
            // A new contact is not verified until someone verifies it.
            record.email_verified = false;
        }
    }
    if let Some(verified) = request.email_verified {
        record.email_verified = verified;
    }
    seal_recovery_contacts(
        vault,
        &mut record,
        request.recovery_email.as_ref(),
        request.recovery_phone.as_ref(),
    )?;
    if request.email.is_some() || request.phone.is_some() {
        // A managed user who gains a contact becomes a normal user (Sunbird "graduation"),
        // and frees its slot among the parent's children.
        record.managed_by = None;
        if let Some(slot) = record.pii_tokens.remove(MANAGED_SLOT_TOKEN) {
            transaction.release(ClaimKind::ManagedSlot, slot, user_id);
        }
    }
    apply_external_ids(vault, &mut record, &mut transaction, &request.external_ids)?;
    record.updated_date = Some(now.to_string());
    record.updated_by = update.updated_by.clone();

    if let Some(organisation) = &request.organisation_id {
        let membership = MembershipRecord::new(
            new_timestamp_id(),
            user_id,
            organisation,
            ASSOCIATION_SSO,
            now,
            update.updated_by.as_deref(),
        );
        transaction.put_record(
            Table::UserOrganisation,
            compose_key(&[user_id, organisation]),
            &membership,
            Expect::Any,
        )?;
    }
    transaction.put_record(
        Table::User,
        user_id,
        &record,
        Expect::Version(current.version),
    )?;
    transaction.event(Topic::User, user_id, current.version + 1);
    Ok(transaction)
}
