//! Organisations: the stored organisation record, channel uniqueness, the custodian
//! organisation's setting names and the organisation types of the `orgTypeConfig` setting.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An organisation row (Sunbird's `organisation` table): identity, tenancy and status typed;
/// every other field (`orgName` aside: `organisationType`, `orgLocation`, `keys`,
/// `description`, ...) kept as stored in `fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgRecord {
    pub id: String,
    #[serde(default)]
    pub org_name: Option<String>,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub is_tenant: bool,
    #[serde(default)]
    pub is_root_org: bool,
    /// Sunbird sets it to the organisation's own id, tenants and sub-organisations alike.
    #[serde(default)]
    pub root_org_id: String,
    #[serde(default)]
    pub hash_tag_id: String,
    /// 0 inactive, 1 active, 2 blocked, 3 retired; absent on rows the original never set.
    #[serde(default)]
    pub status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(rename = "isSSOEnabled", default)]
    pub is_sso_enabled: bool,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub created_date: Option<String>,
    #[serde(default)]
    pub updated_by: Option<String>,
    #[serde(default)]
    pub updated_date: Option<String>,
    /// Every other field, stored beside the typed ones.
    #[serde(skip)]
    pub fields: Map<String, Value>,
}

/// The stored names of the typed fields of [`OrgRecord`].
pub const ORG_FIELDS: &[&str] = &[
    "id",
    "orgName",
    "channel",
    "slug",
    "isTenant",
    "isRootOrg",
    "rootOrgId",
    "hashTagId",
    "status",
    "externalId",
    "provider",
    "isSSOEnabled",
    "createdBy",
    "createdDate",
    "updatedBy",
    "updatedDate",
];

crate::domain::open_record!(OrgRecord, fields, ORG_FIELDS);

/// Organisation status: active.
pub const ORG_ACTIVE: i64 = 1;
/// Organisation status: inactive.
pub const ORG_INACTIVE: i64 = 0;

impl OrgRecord {
    /// A tenant (Sunbird root organisation) owns its channel.
    pub fn is_tenant(&self) -> bool {
        self.is_tenant
    }

    pub fn is_active(&self) -> bool {
        self.status == Some(ORG_ACTIVE)
    }

    /// Sets a field a client gave: the typed ones into their fields, the rest into `fields`, so
    /// `fields` never shadows a typed field.
    pub fn set_field(&mut self, field: &str, value: Value) {
        match field {
            "orgName" => self.org_name = value.as_str().map(str::to_string),
            "isSSOEnabled" => self.is_sso_enabled = value.as_bool().unwrap_or(false),
            _ => {
                self.fields.insert(field.to_string(), value);
            }
        }
    }
}

pub const CUSTODIAN_ORG_ID: &str = "custodianOrgId";
pub const CUSTODIAN_ORG_CHANNEL: &str = "custodianOrgChannel";

/// The claim value of a channel: channels are unique case-insensitively.
pub fn channel_claim(channel: &str) -> String {
    channel.trim().to_lowercase()
}

/// One entry of the `orgTypeConfig` setting: `{name, value, flagNameList}`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgType {
    pub name: String,
    pub value: i64,
    pub flags: Vec<String>,
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
