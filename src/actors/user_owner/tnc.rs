//! Terms-and-conditions acceptance: `tncConfig` in `tncAcceptedVersion`/`tncAcceptedOn`, every
//! other type as `allTncAccepted[type] = {version, tncAcceptedOn}`, at the version read (two
//! types accepted at once on two instances both land).

use serde_json::{Map, Value, json};

use super::contacts::claim_message;
use super::{UserOwnerContext, load_user, now};
use crate::domain::user::{AcceptTnc, TNC_CONFIG, UserRecord};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::retry::read_modify_write;
use crate::storage::{Expect, Table, Topic, Transaction, Versioned};

pub(super) async fn accept_tnc(context: &UserOwnerContext, accept: AcceptTnc) -> DomainResult<()> {
    let accept = &accept;
    read_modify_write(
        &*context.store,
        |kind| claim_message(kind, None),
        || async move {
            let current = load_user(context, &accept.user_id).await?;
            if current.record.is_deleted() {
                return Err(DomainError::rule(ErrorCode::userAccountlocked, &[]));
            }
            Ok((build_accept(&now(context), &current, accept)?, ()))
        },
    )
    .await
}

/// Whether `version` is already the accepted one in `entry` (its version and date present).
fn already(version: Option<&Value>, on: Option<&Value>, wanted: &str) -> bool {
    version
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case(wanted))
        && on.is_some_and(|on| !on.is_null())
}

/// The acceptance written at the version of `current`; only a check of the row when that
/// version is already accepted (Sunbird writes nothing then).
pub(super) fn build_accept(
    now: &str,
    current: &Versioned<UserRecord>,
    accept: &AcceptTnc,
) -> DomainResult<Transaction> {
    let mut record = current.record.clone();
    let mut transaction = Transaction::default();
    let unchanged = if accept.tnc_type == TNC_CONFIG {
        let done = already(
            record.profile.get("tncAcceptedVersion"),
            record.profile.get("tncAcceptedOn"),
            &accept.version,
        );
        if !done {
            record.set_profile_field("tncAcceptedVersion", json!(accept.version));
            record.set_profile_field("tncAcceptedOn", json!(now));
        }
        done
    } else {
        let mut all = match record.profile.get("allTncAccepted") {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        let entry = all.get(&accept.tnc_type);
        let done = already(
            entry.and_then(|e| e.get("version")),
            entry.and_then(|e| e.get("tncAcceptedOn")),
            &accept.version,
        );
        if !done {
            all.insert(
                accept.tnc_type.clone(),
                json!({"version": accept.version, "tncAcceptedOn": now}),
            );
            record.set_profile_field("allTncAccepted", Value::Object(all));
        }
        done
    };
    if unchanged {
        transaction.check(
            Table::User,
            &accept.user_id,
            Expect::Version(current.version),
        );
        return Ok(transaction);
    }
    record.updated_date = Some(now.to_string());
    record.updated_by = accept.by.clone();
    transaction.put_record(
        Table::User,
        &accept.user_id,
        &record,
        Expect::Version(current.version),
    )?;
    transaction.event(Topic::User, &accept.user_id, current.version + 1);
    Ok(transaction)
}
