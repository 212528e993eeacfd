//! How a user's identifiers are kept: contact values sealed (ciphertext in the record), their
//! blind-index tokens in `pii_tokens`, and the uniqueness claims of the primary ones. Recovery
//! contacts are sealed and tokenised too but never claimed: Sunbird does not make them unique.

use crate::crypto::PiiVault;
use crate::domain::contact::{Email, Phone};
use crate::domain::user::{ExternalId, UserRecord};
use crate::domain::{DomainError, DomainResult};
use crate::storage::{ClaimKind, Transaction};

/// The blind-index token of a username (usernames are unique case-insensitively, so the value
/// is lower-cased before it is tokenised).
pub fn username_token(vault: &PiiVault, username: &str) -> String {
    vault.token("userName", username)
}

pub(super) fn email_token(vault: &PiiVault, email: &Email) -> String {
    vault.token("email", email.as_str())
}

pub(super) fn phone_token(vault: &PiiVault, phone: &Phone) -> String {
    vault.token("phone", &phone.index_form())
}

/// Seals `plaintext` of `kind` into the user's row; a sealing failure fails the command.
pub(super) fn seal(
    vault: &PiiVault,
    record: &UserRecord,
    kind: &str,
    plaintext: &str,
) -> DomainResult<String> {
    vault
        .seal(&record.id, kind, plaintext)
        .map_err(DomainError::internal)
}

/// Seals the primary phone into the record (value, mask, country code, token).
pub(super) fn seal_phone(
    vault: &PiiVault,
    record: &mut UserRecord,
    phone: &Phone,
) -> DomainResult<()> {
    record.phone = Some(seal(vault, record, "phone", phone.number())?);
    record.masked_phone = Some(phone.masked());
    record.country_code = Some(phone.country_code().to_string());
    record
        .pii_tokens
        .insert("phone".into(), phone_token(vault, phone));
    Ok(())
}

/// Seals the primary email into the record (value, mask, token).
pub(super) fn seal_email(
    vault: &PiiVault,
    record: &mut UserRecord,
    email: &Email,
) -> DomainResult<()> {
    record.email = Some(seal(vault, record, "email", email.as_str())?);
    record.masked_email = Some(email.masked());
    record
        .pii_tokens
        .insert("email".into(), email_token(vault, email));
    Ok(())
}

/// Seals the recovery contacts that are given.
pub(super) fn seal_recovery_contacts(
    vault: &PiiVault,
    record: &mut UserRecord,
    email: Option<&Email>,
    phone: Option<&Phone>,
) -> DomainResult<()> {
    if let Some(email) = email {
        record.recovery_email = Some(seal(vault, record, "email", email.as_str())?);
        record.pii_tokens.insert(
            "recoveryEmail".into(),
            vault.token("recoveryEmail", email.as_str()),
        );
    }
    if let Some(phone) = phone {
        record.recovery_phone = Some(seal(vault, record, "phone", phone.number())?);
        record.pii_tokens.insert(
            "recoveryPhone".into(),
            vault.token("recoveryPhone", &phone.index_form()),
        );
    }
    Ok(())
}

/// Seals the username, which is also Sunbird's login id, and returns its claim token.
pub(super) fn seal_username(
    vault: &PiiVault,
    record: &mut UserRecord,
    username: &str,
) -> DomainResult<String> {
    record.user_name = Some(seal(vault, record, "userName", username)?);
    record.login_id = Some(seal(vault, record, "userName", username)?);
    let token = username_token(vault, username);
    record.pii_tokens.insert("userName".into(), token.clone());
    record.pii_tokens.insert("loginId".into(), token.clone());
    Ok(token)
}

/// Moves the claim of a primary contact from the stored token to `token`, unless the value is
/// unchanged. True when it changed (the caller then seals the new value).
pub(super) fn move_contact_claim(
    transaction: &mut Transaction,
    stored: Option<&String>,
    kind: ClaimKind,
    token: String,
    user_id: &str,
) -> bool {
    if stored == Some(&token) {
        return false;
    }
    if let Some(old) = stored {
        transaction.release(kind, old.clone(), user_id);
    }
    transaction.claim(kind, token, user_id);
    true
}

/// Sunbird's message for a taken identifier. For an external id, `value` is the claim value of
/// the taken one, when known.
pub(super) fn claim_message(
    kind: ClaimKind,
    external_ids: &[ExternalId],
    value: &str,
) -> DomainError {
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
