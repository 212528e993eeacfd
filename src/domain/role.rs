//! Roles: the well-known role names, a user's scoped roles and what they allow.

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
