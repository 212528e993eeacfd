//! Who is calling and what they may do. Roles are read from the store, never from the token, so a
//! role change takes effect at once.

use std::sync::Arc;

use crate::domain::role::{ADMIN, ORG_ADMIN, Roles};
use crate::domain::{DomainError, DomainResult};
use crate::storage::Store;
use crate::storage::records::load_roles;

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
