//! Organisations: channel uniqueness, the custodian organisation's setting names and the
//! organisation types of the `orgTypeConfig` setting.

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
