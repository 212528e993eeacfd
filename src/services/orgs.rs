//! Organisation reads shared by the user flows: by id, by channel, and the custodian
//! organisation recorded in the system settings.

use std::sync::Arc;

use serde_json::Value;

use crate::domain::{DomainError, DomainResult};
use crate::storage::{ClaimKind, Store, Table};

pub const CUSTODIAN_ORG_ID: &str = "custodianOrgId";
pub const CUSTODIAN_ORG_CHANNEL: &str = "custodianOrgChannel";

/// The claim value of a channel: channels are unique case-insensitively.
pub fn channel_claim(channel: &str) -> String {
    channel.trim().to_lowercase()
}

pub async fn get_org(store: &Arc<dyn Store>, id: &str) -> DomainResult<Option<Value>> {
    Ok(store.get(Table::Organisation, id).await?.map(|row| row.doc))
}

/// The tenant (root) organisation that owns `channel`.
pub async fn tenant_by_channel(
    store: &Arc<dyn Store>,
    channel: &str,
) -> DomainResult<Option<Value>> {
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

pub fn org_str<'a>(org: &'a Value, field: &str) -> Option<&'a str> {
    org.get(field).and_then(Value::as_str)
}

/// One entry of the `orgTypeConfig` setting: `{name, value, flagNameList}`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgType {
    pub name: String,
    pub value: i64,
    pub flags: Vec<String>,
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

/// The value of a type name, case-insensitively (the original only accepts the lower-cased
/// name; accepting `School` too breaks no client).
pub fn org_type_value(types: &[OrgType], name: &str) -> Option<i64> {
    types
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name.trim()))
        .map(|t| t.value)
}

/// `[school, board]`: the valid names as Sunbird lists them in messages.
pub fn org_type_names(types: &[OrgType]) -> String {
    let names: Vec<String> = types.iter().map(|t| t.name.to_lowercase()).collect();
    format!("[{}]", names.join(", "))
}

/// The tenant an organisation belongs to: itself for a tenant, the tenant owning its channel
/// otherwise.
pub async fn tenant_id_of(store: &Arc<dyn Store>, org: &Value) -> DomainResult<Option<String>> {
    if org
        .get("isTenant")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Ok(org_str(org, "id").map(str::to_string));
    }
    match org_str(org, "channel") {
        Some(channel) => Ok(tenant_by_channel(store, channel)
            .await?
            .and_then(|tenant| org_str(&tenant, "id").map(str::to_string))),
        None => Ok(None),
    }
}
