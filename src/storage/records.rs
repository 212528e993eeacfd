//! Typed reads of the store shared by owners and services: organisations by id and channel,
//! system settings, the custodian organisation, organisation types, a user's roles and the role
//! catalogue. Engine errors become domain errors here (`?`), so callers only see `DomainError`.

use std::sync::Arc;

use serde_json::Value;

use super::{ClaimKind, Row, Store, Table, Versioned, compose_key, key_prefix};
use crate::domain::membership::MembershipRecord;
use crate::domain::org::{
    CUSTODIAN_ORG_CHANNEL, CUSTODIAN_ORG_ID, OrgRecord, OrgType, channel_claim,
};
use crate::domain::role::{RoleGrant, Roles};
use crate::domain::signin::CredentialRecord;
use crate::domain::user::UserRecord;
use crate::domain::{DomainError, DomainResult, ErrorCode, Record};

/// Most memberships and role grants read for one user.
const PER_USER_ROWS: usize = 10_000;

/// A stored row as its typed record; a row that does not parse is a corrupt store (500).
fn typed<T: Record>(table: Table, row: Row) -> DomainResult<Versioned<T>> {
    let record = T::from_value(row.doc).map_err(|error| {
        DomainError::internal(anyhow::anyhow!(
            "{} row {} does not parse: {error}",
            table.name(),
            row.key
        ))
    })?;
    Ok(Versioned {
        key: row.key,
        version: row.version,
        record,
    })
}

/// The row of `table` at `key` as its typed record, if any.
pub async fn get_record<T: Record>(
    store: &Arc<dyn Store>,
    table: Table,
    key: &str,
) -> DomainResult<Option<Versioned<T>>> {
    match store.get(table, key).await? {
        Some(row) => Ok(Some(typed(table, row)?)),
        None => Ok(None),
    }
}

/// The user with this id, as stored.
pub async fn user(store: &Arc<dyn Store>, id: &str) -> DomainResult<Option<Versioned<UserRecord>>> {
    get_record(store, Table::User, id).await
}

/// A user's password hash and brute-force state, as stored.
pub async fn credential(
    store: &Arc<dyn Store>,
    user_id: &str,
) -> DomainResult<Option<Versioned<CredentialRecord>>> {
    get_record(store, Table::UserCredential, user_id).await
}

/// Every membership row of a user (left ones included), in organisation id order.
pub async fn memberships(
    store: &Arc<dyn Store>,
    user_id: &str,
) -> DomainResult<Vec<Versioned<MembershipRecord>>> {
    store
        .scan(
            Table::UserOrganisation,
            &key_prefix(user_id),
            None,
            PER_USER_ROWS,
        )
        .await?
        .into_iter()
        .map(|row| typed(Table::UserOrganisation, row))
        .collect()
}

/// Every role grant of a user, in role order.
pub async fn role_grants(
    store: &Arc<dyn Store>,
    user_id: &str,
) -> DomainResult<Vec<Versioned<RoleGrant>>> {
    store
        .scan(Table::UserRoles, &key_prefix(user_id), None, PER_USER_ROWS)
        .await?
        .into_iter()
        .map(|row| typed(Table::UserRoles, row))
        .collect()
}

/// The claim value of an organisation's external id: unique within a channel.
pub fn external_id_claim(channel: &str, external_id: &str) -> String {
    compose_key(&[&channel_claim(channel), &external_id.to_lowercase()])
}

/// The organisation with this id, with its row version.
pub async fn org(store: &Arc<dyn Store>, id: &str) -> DomainResult<Option<Versioned<OrgRecord>>> {
    match store.get(Table::Organisation, id).await? {
        Some(row) => Ok(Some(typed(Table::Organisation, row)?)),
        None => Ok(None),
    }
}

/// The organisation with this id.
pub async fn get_org(store: &Arc<dyn Store>, id: &str) -> DomainResult<Option<OrgRecord>> {
    Ok(org(store, id).await?.map(|found| found.record))
}

/// The tenant (root) organisation that owns `channel`.
pub async fn tenant_by_channel(
    store: &Arc<dyn Store>,
    channel: &str,
) -> DomainResult<Option<OrgRecord>> {
    let owner = store
        .claim_owner(ClaimKind::OrgChannel, &channel_claim(channel))
        .await?;
    match owner {
        Some(id) => get_org(store, &id).await,
        None => Ok(None),
    }
}

/// The raw string value of a system setting.
pub async fn setting(store: &Arc<dyn Store>, id: &str) -> DomainResult<Option<String>> {
    Ok(store.get(Table::SystemSettings, id).await?.and_then(|row| {
        row.doc
            .get("value")
            .and_then(Value::as_str)
            .map(str::to_string)
    }))
}

/// A system setting whose value is JSON text, parsed.
pub async fn json_setting(store: &Arc<dyn Store>, id: &str) -> DomainResult<Option<Value>> {
    Ok(setting(store, id)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

/// The custodian organisation: `(id, channel)` from the seeded system settings.
pub async fn custodian(store: &Arc<dyn Store>) -> DomainResult<(String, String)> {
    let id = setting(store, CUSTODIAN_ORG_ID).await?;
    let channel = setting(store, CUSTODIAN_ORG_CHANNEL).await?;
    match (id, channel) {
        (Some(id), Some(channel)) => Ok((id, channel)),
        _ => Err(DomainError::internal(anyhow::anyhow!(
            "custodian organisation settings are missing"
        ))),
    }
}

/// The organisation types of the `orgTypeConfig` setting, in configuration order.
pub async fn org_types(store: &Arc<dyn Store>) -> DomainResult<Vec<OrgType>> {
    let config = json_setting(store, "orgTypeConfig")
        .await?
        .unwrap_or(Value::Null);
    Ok(config
        .get("fields")
        .and_then(Value::as_array)
        .map(|fields| {
            fields
                .iter()
                .filter_map(|field| {
                    Some(OrgType {
                        name: field.get("name")?.as_str()?.to_string(),
                        value: field.get("value")?.as_i64()?,
                        flags: field
                            .get("flagNameList")
                            .and_then(Value::as_array)
                            .map(|flags| {
                                flags
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The tenant an organisation belongs to: itself for a tenant, the tenant owning its channel
/// otherwise.
pub async fn tenant_id_of(store: &Arc<dyn Store>, org: &OrgRecord) -> DomainResult<Option<String>> {
    if org.is_tenant() {
        return Ok(Some(org.id.clone()));
    }
    if org.channel.is_empty() {
        return Ok(None);
    }
    Ok(tenant_by_channel(store, &org.channel)
        .await?
        .map(|tenant| tenant.id))
}

/// The roles of a user, as authorisation reads them.
pub async fn load_roles(store: &Arc<dyn Store>, user_id: &str) -> DomainResult<Roles> {
    Ok(Roles(
        role_grants(store, user_id)
            .await?
            .iter()
            .map(|grant| grant.record.scoped())
            .collect(),
    ))
}

/// Refuses unknown roles with Sunbird's "Please provide valid role.". A role is known when a
/// role or a role group has that id (Sunbird's role map holds both).
pub async fn check_roles_exist(store: &Arc<dyn Store>, roles: &[String]) -> DomainResult<()> {
    for role in roles {
        let known = store.get(Table::Role, role).await?.is_some()
            || store.get(Table::RoleGroup, role).await?.is_some();
        if !known {
            return Err(DomainError::rule(ErrorCode::invalidParameter, &["role"]));
        }
    }
    Ok(())
}
