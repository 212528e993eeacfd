//! The sign-in state of one user, changed in order with the user's other commands: each
//! password attempt is counted before its comparison (so concurrent guesses never pass the
//! budget), a success resets the counters, and sessions are opened, rotated and ended here, so
//! a block or delete, which ends every session of the user, can never miss one being opened.

use super::UserOwnerContext;
use crate::domain::signin::{LockoutPolicy, SessionRecord};
use crate::domain::{DomainError, DomainResult};
use crate::storage::audit::{AuditNote, append};
use crate::storage::records::{credential, get_record, user};
use crate::storage::retry::{no_claims, read_modify_write};
use crate::storage::{Expect, Table, Transaction, compose_key, key_prefix};

/// What a password attempt may do, decided before the password is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInGate {
    /// Compare the password with this hash (the attempt is already counted).
    Compare(String),
    /// Locked out: refuse without comparing.
    Locked,
    /// No password, or the user cannot sign in (blocked, deleted, unknown).
    NoCredential,
}

/// How a refresh went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was the current one; the session now expects the new one.
    Rotated(SessionRecord),
    /// The presented token was used before: the session is ended.
    Reused,
    /// No such session (ended, expired) or its user cannot sign in.
    Gone,
}

/// Whether the user exists and may sign in.
async fn active(context: &UserOwnerContext, user_id: &str) -> DomainResult<bool> {
    Ok(user(&context.store, user_id)
        .await?
        .is_some_and(|found| found.record.is_active()))
}

pub(super) async fn begin(
    context: &UserOwnerContext,
    user_id: &str,
    policy: LockoutPolicy,
    now_ms: i64,
) -> DomainResult<SignInGate> {
    if !active(context, user_id).await? {
        return Ok(SignInGate::NoCredential);
    }
    read_modify_write(&*context.store, no_claims, || async move {
        let Some(current) = credential(&context.store, user_id).await? else {
            return Ok((Transaction::default(), SignInGate::NoCredential));
        };
        if current.record.is_locked(&policy, now_ms) {
            return Ok((Transaction::default(), SignInGate::Locked));
        }
        let mut record = current.record.clone();
        record.count_attempt(&policy, now_ms);
        let mut transaction = Transaction::default();
        transaction.put_record(
            Table::UserCredential,
            user_id,
            &record,
            Expect::Version(current.version),
        )?;
        Ok((transaction, SignInGate::Compare(record.password_hash)))
    })
    .await
}

/// The right password was given: the counters start again.
pub(super) async fn succeed(context: &UserOwnerContext, user_id: &str) -> DomainResult<()> {
    reset(context, user_id, None).await
}

/// An administrator lifts a lockout (Keycloak's brute-force user reset), audited.
pub(super) async fn unlock(
    context: &UserOwnerContext,
    user_id: &str,
    audit: &AuditNote,
) -> DomainResult<()> {
    reset(context, user_id, Some(audit)).await
}

async fn reset(
    context: &UserOwnerContext,
    user_id: &str,
    audit: Option<&AuditNote>,
) -> DomainResult<()> {
    read_modify_write(&*context.store, no_claims, || async move {
        let Some(current) = credential(&context.store, user_id).await? else {
            return Err(DomainError::not_found("user"));
        };
        let mut record = current.record.clone();
        record.succeed();
        let mut transaction = Transaction::default();
        if record != current.record || audit.is_some() {
            transaction.put_record(
                Table::UserCredential,
                user_id,
                &record,
                Expect::Version(current.version),
            )?;
        }
        if let Some(audit) = audit {
            append(
                &*context.store,
                &mut transaction,
                audit,
                &super::now(context),
            )
            .await?;
        }
        Ok((transaction, ()))
    })
    .await
}

/// Opens a session for an active user.
pub(super) async fn open(context: &UserOwnerContext, session: SessionRecord) -> DomainResult<bool> {
    if !active(context, &session.user_id).await? {
        return Ok(false);
    }
    let mut transaction = Transaction::default();
    let key = compose_key(&[&session.user_id, &session.session_id]);
    transaction.put_record(Table::UserSession, key, &session, Expect::Absent)?;
    context.store.commit(transaction).await?;
    Ok(true)
}

/// Moves a session on to its next refresh token when `presented` is the current one's digest;
/// a digest of an earlier one ends the session (a stolen token was replayed, or the real client
/// was: either way nobody may go on with it). `rotate = false` keeps every refresh token of
/// the session valid until it ends (Keycloak's default).
pub(super) async fn rotate(
    context: &UserOwnerContext,
    user_id: &str,
    session_id: &str,
    presented: &str,
    next: &str,
    rotate: bool,
    now_ms: i64,
) -> DomainResult<Rotation> {
    let key = compose_key(&[user_id, session_id]);
    if !active(context, user_id).await? {
        return Ok(Rotation::Gone);
    }
    let key = &key;
    read_modify_write(&*context.store, no_claims, || async move {
        let Some(current) =
            get_record::<SessionRecord>(&context.store, Table::UserSession, key).await?
        else {
            return Ok((Transaction::default(), Rotation::Gone));
        };
        let mut transaction = Transaction::default();
        if current.record.expires_ms <= now_ms {
            transaction.delete(
                Table::UserSession,
                key.clone(),
                Expect::Version(current.version),
            );
            return Ok((transaction, Rotation::Gone));
        }
        if rotate && current.record.refresh_digest != presented {
            transaction.delete(
                Table::UserSession,
                key.clone(),
                Expect::Version(current.version),
            );
            return Ok((transaction, Rotation::Reused));
        }
        let mut record = current.record.clone();
        record.refreshed_ms = now_ms;
        if rotate {
            record.refresh_digest = next.to_string();
        }
        transaction.put_record(
            Table::UserSession,
            key.clone(),
            &record,
            Expect::Version(current.version),
        )?;
        Ok((transaction, Rotation::Rotated(record)))
    })
    .await
}

/// Ends one session (logout); `false` when there was none.
pub(super) async fn end(
    context: &UserOwnerContext,
    user_id: &str,
    session_id: &str,
) -> DomainResult<bool> {
    let key = compose_key(&[user_id, session_id]);
    let Some(row) = context.store.get(Table::UserSession, &key).await? else {
        return Ok(false);
    };
    let mut transaction = Transaction::default();
    transaction.delete(Table::UserSession, key, Expect::Version(row.version));
    context.store.commit(transaction).await?;
    Ok(true)
}

/// Sets the password: see [`SignInCommand::SetPassword`]. `false` when the user cannot sign in
/// or the link is spent.
async fn set_password(
    context: &UserOwnerContext,
    user_id: &str,
    hash: &str,
    link: Option<&str>,
) -> DomainResult<bool> {
    if !active(context, user_id).await? {
        return Ok(false);
    }
    read_modify_write(&*context.store, no_claims, || async move {
        let mut transaction = Transaction::default();
        if let Some(link) = link {
            let Some(row) = context.store.get(Table::ResetLink, link).await? else {
                return Ok((transaction, false));
            };
            transaction.delete(Table::ResetLink, link, Expect::Version(row.version));
        }
        let current = credential(&context.store, user_id).await?;
        let mut record = current
            .as_ref()
            .map(|found| found.record.clone())
            .unwrap_or_else(|| crate::domain::signin::CredentialRecord {
                user_id: user_id.to_string(),
                ..Default::default()
            });
        record.password_hash = hash.to_string();
        record.succeed();
        let expect = match &current {
            Some(found) => Expect::Version(found.version),
            None => Expect::Absent,
        };
        transaction.put_record(Table::UserCredential, user_id, &record, expect)?;
        end_all(context, user_id, &mut transaction).await?;
        Ok((transaction, true))
    })
    .await
}

/// Adds to `transaction` the end of every session of the user (block, delete).
pub(super) async fn end_all(
    context: &UserOwnerContext,
    user_id: &str,
    transaction: &mut Transaction,
) -> DomainResult<()> {
    let prefix = key_prefix(user_id);
    let mut after: Option<String> = None;
    loop {
        let page = context
            .store
            .scan(Table::UserSession, &prefix, after.as_deref(), 256)
            .await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.key.clone());
        let full = page.len() == 256;
        for row in page {
            transaction.delete(Table::UserSession, row.key, Expect::Any);
        }
        if !full {
            return Ok(());
        }
    }
}

/// A sign-in command for the owner of `user_id`.
#[derive(Debug)]
pub enum SignInCommand {
    Begin {
        policy: LockoutPolicy,
        now_ms: i64,
    },
    Succeeded,
    Unlock(Box<AuditNote>),
    Open(Box<SessionRecord>),
    Rotate {
        session_id: String,
        presented: String,
        next: String,
        rotate: bool,
        now_ms: i64,
    },
    End {
        session_id: String,
    },
    /// A new password (its hash), the brute-force counters cleared and every session of the
    /// user ended, in one transaction; with `link`, the set-password link it came through is
    /// spent in the same transaction (absent or changed: nothing happens, `Ended(false)`).
    SetPassword {
        hash: String,
        link: Option<String>,
    },
}

/// The answer to a [`SignInCommand`], one variant per command.
#[derive(Debug)]
pub enum SignInReply {
    Gate(SignInGate),
    Done,
    Opened(bool),
    Rotation(Rotation),
    Ended(bool),
}

pub(super) async fn run(
    context: &UserOwnerContext,
    user_id: &str,
    command: SignInCommand,
) -> DomainResult<SignInReply> {
    Ok(match command {
        SignInCommand::Begin { policy, now_ms } => {
            SignInReply::Gate(begin(context, user_id, policy, now_ms).await?)
        }
        SignInCommand::Succeeded => {
            succeed(context, user_id).await?;
            SignInReply::Done
        }
        SignInCommand::Unlock(audit) => {
            unlock(context, user_id, &audit).await?;
            SignInReply::Done
        }
        SignInCommand::Open(session) => SignInReply::Opened(open(context, *session).await?),
        SignInCommand::Rotate {
            session_id,
            presented,
            next,
            rotate: rotating,
            now_ms,
        } => SignInReply::Rotation(
            rotate(
                context,
                user_id,
                &session_id,
                &presented,
                &next,
                rotating,
                now_ms,
            )
            .await?,
        ),
        SignInCommand::End { session_id } => {
            SignInReply::Ended(end(context, user_id, &session_id).await?)
        }
        SignInCommand::SetPassword { hash, link } => {
            SignInReply::Ended(set_password(context, user_id, &hash, link.as_deref()).await?)
        }
    })
}
