//! Identifier free-up (reference §8.13): the user's email and/or phone move to
//! `prevUsedEmail`/`prevUsedPhone` (still sealed), their masked forms go, their claims are
//! released so another user may take them, and the flags keep only STATE_VALIDATED.

use super::contacts::claim_message;
use super::{UserOwnerContext, load_user, now};
use crate::domain::DomainResult;
use crate::domain::user::{FreeUp, STATE_VALIDATED_FLAG, UserRecord};
use crate::storage::retry::read_modify_write;
use crate::storage::{ClaimKind, Expect, Table, Topic, Transaction, Versioned};

pub(super) async fn free_up(context: &UserOwnerContext, free: FreeUp) -> DomainResult<()> {
    let free = &free;
    read_modify_write(
        &*context.store,
        |kind| claim_message(kind, None),
        || async move {
            let current = load_user(context, &free.user_id).await?;
            Ok((build_free_up(&now(context), &current, free)?, ()))
        },
    )
    .await
}

/// The free-up at the version of `current`; only a check of the row when there is nothing to
/// free.
pub(super) fn build_free_up(
    now: &str,
    current: &Versioned<UserRecord>,
    free: &FreeUp,
) -> DomainResult<Transaction> {
    let mut record = current.record.clone();
    let mut transaction = Transaction::default();
    let present = |value: &Option<String>| value.as_ref().is_some_and(|v| !v.is_empty());
    let mut changed = false;
    if free.email && present(&record.email) {
        record.prev_used_email = record.email.take();
        record.masked_email = None;
        record.email_verified = false;
        if let Some(token) = record.pii_tokens.remove("email") {
            transaction.release(ClaimKind::Email, token, &free.user_id);
        }
        changed = true;
    }
    if free.phone && present(&record.phone) {
        record.prev_used_phone = record.phone.take();
        record.masked_phone = None;
        record.country_code = None;
        record.phone_verified = false;
        if let Some(token) = record.pii_tokens.remove("phone") {
            transaction.release(ClaimKind::Phone, token, &free.user_id);
        }
        changed = true;
    }
    if !changed {
        transaction.check(Table::User, &free.user_id, Expect::Version(current.version));
        return Ok(transaction);
    }
    // Sunbird keeps only the state-validated flag (4) once a contact is gone.
    record.flags_value = if record.flags_value >= STATE_VALIDATED_FLAG {
        STATE_VALIDATED_FLAG
    } else {
        0
    };
    record.updated_date = Some(now.to_string());
    transaction.put_record(
        Table::User,
        &free.user_id,
        &record,
        Expect::Version(current.version),
    )?;
    transaction.event(Topic::User, &free.user_id, current.version + 1);
    Ok(transaction)
}
