//! Roles: the well-known role names, the stored role grants of a user, and what they allow.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const ADMIN: &str = "ADMIN";
pub const ORG_ADMIN: &str = "ORG_ADMIN";
pub const PUBLIC: &str = "PUBLIC";

/// One stored role of a user with the organisations it is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedRole {
    pub role: String,
    pub organisations: Vec<String>,
}

/// Every role a user holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(pub Vec<ScopedRole>);

impl Roles {
    pub fn has(&self, role: &str) -> bool {
        self.0.iter().any(|r| r.role == role)
    }

    pub fn has_in(&self, role: &str, organisation_id: &str) -> bool {
        self.0
            .iter()
            .any(|r| r.role == role && r.organisations.iter().any(|o| o == organisation_id))
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|r| r.role.clone()).collect()
    }
}

/// The organisation ids of a stored scope list `[{"organisationId": ..}]`.
pub fn scope_organisations(scope: Option<&Value>) -> Vec<String> {
    scope
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.get("organisationId").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// One organisation of a role's scope, stored as `{"organisationId": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeEntry {
    pub organisation_id: String,
}

/// One `user_roles` row: a role of a user and the organisations it is scoped to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleGrant {
    pub user_id: String,
    pub role: String,
    #[serde(default)]
    pub scope: Vec<ScopeEntry>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub created_date: Option<String>,
    #[serde(default)]
    pub updated_by: Option<String>,
    #[serde(default)]
    pub updated_date: Option<String>,
}

impl RoleGrant {
    /// A new grant of `role` in `organisations`.
    pub fn new(
        user_id: &str,
        role: &str,
        organisations: &[String],
        by: Option<&str>,
        now: &str,
    ) -> RoleGrant {
        RoleGrant {
            user_id: user_id.to_string(),
            role: role.to_string(),
            scope: scope_of(organisations),
            created_by: by.map(str::to_string),
            created_date: Some(now.to_string()),
            updated_by: None,
            updated_date: None,
        }
    }

    pub fn organisations(&self) -> Vec<String> {
        self.scope
            .iter()
            .map(|s| s.organisation_id.clone())
            .collect()
    }

    /// The role with its scope, as authorisation reads it.
    pub fn scoped(&self) -> ScopedRole {
        ScopedRole {
            role: self.role.clone(),
            organisations: self.organisations(),
        }
    }
}

crate::domain::plain_record!(RoleGrant);

/// `[{"organisationId": ..}]` of these organisations, in order.
pub fn scope_of(organisations: &[String]) -> Vec<ScopeEntry> {
    organisations
        .iter()
        .map(|id| ScopeEntry {
            organisation_id: id.clone(),
        })
        .collect()
}
