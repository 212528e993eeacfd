//! API consumers of the gateway, as Kong's `jwt` and `acl` plugins know them: a consumer holds
//! ACL groups, and credentials whose key is the `iss` (or `kid`) of the tokens it presents.

use serde::{Deserialize, Serialize};

/// An `api_consumer` row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRecord {
    pub name: String,
    pub groups: Vec<String>,
    pub created_at: String,
}

crate::domain::plain_record!(ConsumerRecord);

/// An `api_credential` row. The HS256 secret is not stored: it is derived from the
/// installation's gateway key and the credential key, so the store holds nothing to forge a
/// token with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialKeyRecord {
    pub key: String,
    pub consumer: String,
    pub algorithm: String,
}

crate::domain::plain_record!(CredentialKeyRecord);

/// Whether a consumer holding `held` may call a route whitelisting `allowed` (any one group is
/// enough, as Kong's `acl` plugin decides).
pub fn may_consume(held: &[String], allowed: &[&str]) -> bool {
    held.iter().any(|group| allowed.contains(&group.as_str()))
}

/// A group name: letters, digits, `_` and `-`, as Kong's group names are.
pub fn valid_group(group: &str) -> bool {
    !group.is_empty()
        && group.len() <= 64
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
