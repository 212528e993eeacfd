//! Who is calling and what they may do. Roles are read from the store, never from the token, so a
//! role change takes effect at once.

use std::sync::Arc;

use serde_json::Value;

use crate::domain::{DomainError, DomainResult};
use crate::storage::{Store, Table, key_prefix};

pub const ADMIN: &str = "ADMIN";
pub const ORG_ADMIN: &str = "ORG_ADMIN";
pub const PUBLIC: &str = "PUBLIC";

/// The authenticated party of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No (valid) token on a public route.
    Anonymous,
    /// A verified user token.
    User(String),
    /// A request on the internal listener without a user token: another service of the cluster,
    /// trusted as Sunbird trusts `/private` routes.
    Internal,
}

impl Caller {
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::User(id) => Some(id),
            _ => None,
        }
    }

    /// The id written to `createdBy`/`updatedBy`.
    pub fn audit_id(&self) -> Option<String> {
        self.user_id().map(str::to_string)
    }
}

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

/// Reads the `user_roles` rows of a user.
pub async fn load_roles(store: &Arc<dyn Store>, user_id: &str) -> DomainResult<Roles> {
    let rows = store
        .scan(Table::UserRoles, &key_prefix(user_id), None, 1000)
        .await?;
    Ok(Roles(
        rows.iter()
            .filter_map(|row| {
                let role = row.doc.get("role")?.as_str()?.to_string();
                let organisations = scope_organisations(row.doc.get("scope"));
                Some(ScopedRole {
                    role,
                    organisations,
                })
            })
            .collect(),
    ))
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

/// The access a caller has over users of one root organisation.
pub struct Authority {
    pub caller: Caller,
    pub roles: Roles,
}

impl Authority {
    pub async fn of(store: &Arc<dyn Store>, caller: &Caller) -> DomainResult<Authority> {
        let roles = match caller {
            Caller::User(id) => load_roles(store, id).await?,
            _ => Roles::default(),
        };
        Ok(Authority {
            caller: caller.clone(),
            roles,
        })
    }

    /// System administration: the internal listener or the ADMIN role.
    pub fn is_admin(&self) -> bool {
        matches!(self.caller, Caller::Internal) || self.roles.has(ADMIN)
    }

    /// ADMIN, or ORG_ADMIN of `root_org_id`.
    pub fn administers(&self, root_org_id: &str) -> bool {
        self.is_admin() || self.roles.has_in(ORG_ADMIN, root_org_id)
    }

    /// The caller is the user, or the parent managing the user.
    pub fn is_self_or_manager(&self, user_id: &str, managed_by: Option<&str>) -> bool {
        match self.caller.user_id() {
            Some(caller) => caller == user_id || managed_by == Some(caller),
            None => false,
        }
    }

    /// Self, managing parent, ORG_ADMIN of the user's root organisation, or ADMIN.
    pub fn may_act_on_user(
        &self,
        user_id: &str,
        managed_by: Option<&str>,
        root_org_id: &str,
    ) -> bool {
        self.is_self_or_manager(user_id, managed_by) || self.administers(root_org_id)
    }

    /// Refuses with 401 when the caller is anonymous (a token could help) and 403 when an
    /// authenticated caller lacks the right.
    pub fn require(&self, allowed: bool) -> DomainResult<()> {
        match (allowed, &self.caller) {
            (true, _) => Ok(()),
            (false, Caller::Anonymous) => Err(DomainError::unauthorized()),
            (false, _) => Err(DomainError::forbidden()),
        }
    }
}
