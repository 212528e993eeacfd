//! How a user's identifiers are kept: contact values sealed (ciphertext in the record), their
//! blind-index tokens in `pii_tokens`, and the uniqueness claims of the primary ones. Recovery
//! contacts are sealed and tokenised too but never claimed: Sunbird does not make them unique.

use crate::crypto::PiiVault;
use crate::domain::contact::{Email, Phone};
use crate::domain::user::{ExternalId, SealedExternalId, UserRecord};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::{ClaimKind, Transaction};

/// The blind-index token of a username (usernames are unique case-insensitively, so the value
/// is lower-cased before it is tokenised).
pub fn username_token(vault: &PiiVault, username: &str) -> String {
    vault.token("userName", username)
}

pub(super) fn email_token(vault: &PiiVault, email: &Email) -> String {
    vault.token("email", email.as_str())
}

pub fn phone_token(vault: &PiiVault, phone: &Phone) -> String {
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

/// The blind-index namespace of external ids (search filters on `externalIds.id`).
pub const EXTERNAL_ID_TOKEN_KIND: &str = "externalIds.id";

/// The token an external id's search filter matches: the id, trimmed and lower-cased.
pub fn external_id_token(vault: &PiiVault, id: &str) -> String {
    vault.token(EXTERNAL_ID_TOKEN_KIND, &id.trim().to_lowercase())
}

/// The token an external id's uniqueness claim is held under (provider, type and id,
/// case-insensitively).
pub fn external_id_claim(vault: &PiiVault, external: &ExternalId) -> String {
    vault.token("externalId", &external.claim_value())
}

/// What an external id's ciphertext is bound to besides the user: its provider and type, so a
/// sealed id moved to another slot does not open.
fn external_id_kind(provider: &str, id_type: &str) -> String {
    format!(
        "externalId\u{1f}{}\u{1f}{}",
        provider.to_lowercase(),
        id_type.to_lowercase()
    )
}

/// An external id as the user's row keeps it (see [`SealedExternalId`]).
pub fn seal_external_id(
    vault: &PiiVault,
    user_id: &str,
    external: &ExternalId,
) -> DomainResult<SealedExternalId> {
    let id = vault
        .seal(
            user_id,
            &external_id_kind(&external.provider, &external.id_type),
            &external.id,
        )
        .map_err(DomainError::internal)?;
    Ok(SealedExternalId {
        id,
        id_type: external.id_type.clone(),
        provider: external.provider.clone(),
        id_token: external_id_token(vault, &external.id),
        claim_token: external_id_claim(vault, external),
    })
}

/// The external id a stored entry holds, opened; `None` when no configured key opens it (an
/// entry from before sealing does not open either, until `userorg keys reseal` seals it).
pub fn open_external_id(
    vault: &PiiVault,
    user_id: &str,
    stored: &SealedExternalId,
) -> Option<ExternalId> {
    let id = vault
        .open(
            user_id,
            &external_id_kind(&stored.provider, &stored.id_type),
            &stored.id,
        )
        .ok()?;
    Some(ExternalId {
        id,
        id_type: stored.id_type.clone(),
        provider: stored.provider.clone(),
    })
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

/// Sunbird's message for a taken identifier. For an external id, `taken` is the one someone
/// else holds, when known.
pub(super) fn claim_message(kind: ClaimKind, taken: Option<&ExternalId>) -> DomainError {
    match kind {
        ClaimKind::Email => DomainError::already_exists("email"),
        ClaimKind::Phone => DomainError::already_exists("phone"),
        ClaimKind::Username => DomainError::already_exists("userName"),
        ClaimKind::ManagedSlot => DomainError::rule(ErrorCode::managedUserLimitExceeded, &[]),
        ClaimKind::ExternalId => {
            let described = taken
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
