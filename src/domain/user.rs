//! Users: the commands the user owners execute, and the rules about user ids and
//! external ids. Validation builds these (services), owners execute them (actors).

use serde_json::{Map, Value};

use crate::domain::contact::{Email, Phone};
use crate::domain::rules::username_base;

/// Membership association bits (Sunbird `AssociationMechanism`).
pub const ASSOCIATION_SSO: i64 = 1;
pub const ASSOCIATION_SELF_DECLARATION: i64 = 2;
pub const ASSOCIATION_SYSTEM_UPLOAD: i64 = 4;

/// Sunbird's user status values: 1 active, 0 blocked, 2 deleted.
pub const STATUS_BLOCKED: i64 = 0;
pub const STATUS_ACTIVE: i64 = 1;
pub const STATUS_DELETED: i64 = 2;

/// Deleted: Sunbird marks a deleted user with `isDeleted` and status 2; either counts.
pub fn is_deleted(user: &Value) -> bool {
    user.get("isDeleted")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || user.get("status").and_then(Value::as_i64) == Some(STATUS_DELETED)
}

/// Active: not deleted and not blocked. Only an active user's token is accepted.
pub fn is_active(user: &Value) -> bool {
    !is_deleted(user) && user.get("status").and_then(Value::as_i64) == Some(STATUS_ACTIVE)
}

/// Sunbird path ids may be federated (`f:<provider>:<uuid>`): the user id is the last segment.
pub fn user_id_from_path(raw: &str) -> String {
    raw.rsplit(':').next().unwrap_or(raw).trim().to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId {
    pub id: String,
    pub id_type: String,
    pub provider: String,
}

impl ExternalId {
    /// The uniqueness key of an external id: provider, type and id, case-insensitively.
    pub fn claim_value(&self) -> String {
        format!(
            "{}@{}@{}",
            self.id.to_lowercase(),
            self.id_type.to_lowercase(),
            self.provider.to_lowercase()
        )
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({"id": self.id, "idType": self.id_type, "provider": self.provider})
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalIdOperation {
    Add,
    Edit,
    Remove,
}

/// A validated create request, before organisation resolution.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub profile: Map<String, Value>,
    pub first_name: String,
    pub last_name: Option<String>,
    pub email: Option<Email>,
    pub email_verified: bool,
    pub phone: Option<Phone>,
    pub phone_verified: bool,
    pub recovery_email: Option<Email>,
    pub recovery_phone: Option<Phone>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub dob: Option<String>,
    pub channel: Option<String>,
    pub organisation_id: Option<String>,
    pub roles: Vec<String>,
    pub external_ids: Vec<ExternalId>,
    pub managed_by: Option<String>,
}

/// A validated update request.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub user_id: String,
    /// Plain profile fields to set (a null value clears the field).
    pub profile: Map<String, Value>,
    pub email: Option<Email>,
    pub email_verified: Option<bool>,
    pub phone: Option<Phone>,
    pub phone_verified: Option<bool>,
    pub recovery_email: Option<Email>,
    pub recovery_phone: Option<Phone>,
    pub dob: Option<String>,
    pub organisation_id: Option<String>,
    pub external_ids: Vec<(ExternalIdOperation, ExternalId)>,
}

impl CreateRequest {
    pub fn username_base(&self) -> String {
        username_base(&self.first_name, self.last_name.as_deref())
    }
}

/// A user to create, validated and resolved by the service.
#[derive(Debug)]
pub struct NewUser {
    pub id: String,
    pub request: CreateRequest,
    pub password_hash: Option<String>,
    pub root_org_id: String,
    pub channel: String,
    pub association_type: i64,
    pub created_by: Option<String>,
    pub flags_value: i64,
}

#[derive(Debug)]
pub struct UserUpdate {
    pub request: UpdateRequest,
    pub updated_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Block,
    Unblock,
    Delete,
}

/// A role assignment (reference §8.8).
#[derive(Debug, Clone)]
pub enum RoleAssignment {
    /// v1: `roles` is the complete set of the user's roles in `organisation_id`.
    ReplaceForOrganisation {
        organisation_id: String,
        roles: Vec<String>,
    },
    /// v2: scopes added to or removed from single roles.
    Scopes(Vec<ScopeChange>),
}

#[derive(Debug, Clone)]
pub struct ScopeChange {
    pub role: String,
    pub add: bool,
    pub organisations: Vec<String>,
}

#[derive(Debug)]
pub struct AssignRoles {
    pub user_id: String,
    pub assignment: RoleAssignment,
    pub by: Option<String>,
    /// Sunbird's `sunbird_disable_multiple_org_role`: roles in one organisation only.
    pub single_organisation: bool,
}
