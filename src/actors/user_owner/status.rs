//! Block, unblock and delete. A delete scrubs the PII and frees every identifier (claims
//! released), so the email, phone, username and external ids can be used again, as Sunbird's
//! delete does; the row stays, marked deleted. A block or delete also ends every sign-in
//! session of the user in the same transaction.

use serde_json::json;

use super::{UserOwnerContext, now};
use crate::domain::user::{
    MANAGED_SLOT_TOKEN, STATUS_ACTIVE, STATUS_BLOCKED, STATUS_DELETED, StatusChange, UserRecord,
};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::audit::{AuditNote, append};
use crate::storage::records::{load_roles, user};
use crate::storage::retry::read_modify_write;
use crate::storage::{ClaimKind, Expect, Table, Topic, Transaction, Versioned};

pub(super) async fn change_status(
    context: &UserOwnerContext,
    user_id: &str,
    change: StatusChange,
    by: Option<String>,
    audit: &AuditNote,
) -> DomainResult<()> {
    let by = by.as_deref();
    read_modify_write(
        &*context.store,
        |kind| DomainError::already_exists(kind.name()),
        || async move {
            let current = user(&context.store, user_id)
                .await?
                // Sunbird answers a missing user here with the bare word as the message.
                .ok_or_else(|| DomainError::with_message(ErrorCode::resourceNotFound, "user"))?;
            check_change(&current.record, change)?;
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
            let at = now(context);
            let mut transaction = build_status_change(&at, &current, change, by)?;
            if change != StatusChange::Unblock {
                // A blocked or deleted user keeps no session (ASVS 7.4.2).
                super::signin::end_all(context, user_id, &mut transaction).await?;
            }
            if change == StatusChange::Delete {
                // Nor, deleted, the PII it declared.
                for row in context
                    .store
                    .scan(
                        Table::UserDeclarations,
                        &crate::storage::key_prefix(user_id),
                        None,
                        10_000,
                    )
                    .await?
                {
                    transaction.delete(
                        Table::UserDeclarations,
                        row.key,
                        Expect::Version(row.version),
                    );
                }
                // Consents to share a deleted user's data are void; the rows stay, DELETED.
                for row in context
                    .store
                    .scan(
                        Table::UserConsent,
                        &crate::storage::key_prefix(user_id),
                        None,
                        10_000,
                    )
                    .await?
                {
                    let mut doc = row.doc.clone();
                    crate::domain::consent::mark_deleted(&mut doc, &at);
                    transaction.put(
                        Table::UserConsent,
                        row.key,
                        doc,
                        Expect::Version(row.version),
                    );
                }
            }
            append(&*context.store, &mut transaction, audit, &at).await?;
            Ok((transaction, ()))
        },
    )
    .await
}

/// Sunbird's refusals: nothing changes on a deleted user, and a status is not set twice.
pub(super) fn check_change(user: &UserRecord, change: StatusChange) -> DomainResult<()> {
    if user.is_deleted() {
        return Err(DomainError::rule(ErrorCode::userStatusError, &["deleted"]));
    }
    match change {
        StatusChange::Block if user.status == STATUS_BLOCKED => {
            Err(DomainError::rule(ErrorCode::userStatusError, &["inactive"]))
        }
        StatusChange::Unblock if user.status == STATUS_ACTIVE => {
            Err(DomainError::rule(ErrorCode::userStatusError, &["active"]))
        }
        _ => Ok(()),
    }
}

/// Everything a status change writes, at the version of `current`.
pub(super) fn build_status_change(
    now: &str,
    current: &Versioned<UserRecord>,
    change: StatusChange,
    by: Option<&str>,
) -> DomainResult<Transaction> {
    let user_id = current.key.as_str();
    let mut record = current.record.clone();
    let mut transaction = Transaction::default();
    match change {
        StatusChange::Block => {
            record.status = STATUS_BLOCKED;
            record.is_blocked = Some(true);
        }
        StatusChange::Unblock => {
            record.status = STATUS_ACTIVE;
            record.is_blocked = Some(false);
        }
        StatusChange::Delete => {
            release_identifiers(&mut record, &mut transaction, user_id, true);
            scrub(&mut record);
            transaction.delete(Table::UserCredential, user_id, Expect::Any);
        }
    }
    record.updated_date = Some(now.to_string());
    record.updated_by = by.map(str::to_string);
    transaction.put_record(
        Table::User,
        user_id,
        &record,
        Expect::Version(current.version),
    )?;
    transaction.event(Topic::User, user_id, current.version + 1);
    Ok(transaction)
}

/// Adds to `transaction` the release of the user's email, phone and username claims (their
/// tokens dropped from the record) and, with `external`, of its external ids: what a delete and
/// a merge free for others to take.
pub fn release_identifiers(
    record: &mut UserRecord,
    transaction: &mut Transaction,
    user_id: &str,
    external: bool,
) {
    for (field, kind) in [
        ("email", ClaimKind::Email),
        ("phone", ClaimKind::Phone),
        ("userName", ClaimKind::Username),
        (MANAGED_SLOT_TOKEN, ClaimKind::ManagedSlot),
    ] {
        if let Some(token) = record.pii_tokens.remove(field) {
            transaction.release(kind, token, user_id);
        }
    }
    if external {
        for external in std::mem::take(&mut record.external_ids) {
            transaction.release(ClaimKind::ExternalId, external.claim(), user_id);
        }
    }
}

/// A deleted user keeps no PII: names and identifiers are emptied (as Sunbird stores them),
/// tokens dropped (the password hash goes with the user's `user_credential` row).
fn scrub(record: &mut UserRecord) {
    let empty = || Some(String::new());
    record.first_name = empty();
    record.last_name = empty();
    record.email = empty();
    record.phone = empty();
    record.masked_email = empty();
    record.masked_phone = empty();
    record.user_name = empty();
    record.login_id = empty();
    record.prev_used_email = empty();
    record.prev_used_phone = empty();
    record.recovery_email = empty();
    record.recovery_phone = empty();
    record.profile.insert("profileLocation".into(), json!([]));
    record.external_ids.clear();
    record.pii_tokens.clear();
    record.status = STATUS_DELETED;
    record.is_deleted = true;
}
