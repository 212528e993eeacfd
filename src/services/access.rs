//! Who is calling and what they may do. The caller is resolved once per request
//! ([`CallerResolver`]): the token is verified offline, the user must exist and be active, and
//! the roles are read from the store, never from the token, so a role change or a block takes
//! effect at once. Services decide with [`Authority`] and read nothing more.

use std::sync::Arc;

use crate::auth::{LocalSigner, MintClaims, ServiceCredential, TokenVerifier, bearer_or_raw};
use crate::clock::Clock;
use crate::domain::role::{ADMIN, ORG_ADMIN, Roles};
use crate::domain::user::UserRecord;
use crate::domain::{DomainError, DomainResult};
use crate::storage::Store;
use crate::storage::records::{load_roles, user};

/// A caller's relation to a user, which decides the fields shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The user, or the parent managing them.
    Own,
    /// ADMIN, or ORG_ADMIN of the user's root organisation.
    Administrator,
    /// Any other caller.
    Other,
}

/// Roles whose grant, removal and holders only an ADMIN may touch.
pub fn is_privileged(role: &str) -> bool {
    role == ADMIN
}

/// A verified user token of an active user, with the user's record; the roles are read from
/// the store on first use and kept for the rest of the request (most public routes never need
/// them).
pub struct Principal {
    pub id: String,
    /// The stored user record at the time of the request.
    pub user: UserRecord,
    /// The child a parent acts for with a managed token (`x-authenticated-for`): the only
    /// managed user the request may then reach.
    pub acting_for: Option<String>,
    roles: tokio::sync::OnceCell<Roles>,
    store: Arc<dyn Store>,
}

impl Principal {
    /// The active user `id` as a caller, with no token: the uploader a bulk upload's rows run
    /// as. `None` when the user is gone, blocked or deleted.
    pub async fn active(store: &Arc<dyn Store>, id: &str) -> DomainResult<Option<Arc<Principal>>> {
        Ok(user(store, id)
            .await?
            .filter(|found| found.record.is_active())
            .map(|found| {
                Arc::new(Principal {
                    id: id.to_string(),
                    user: found.record,
                    acting_for: None,
                    roles: tokio::sync::OnceCell::new(),
                    store: Arc::clone(store),
                })
            }))
    }

    /// The caller's roles, read once per request.
    pub async fn roles(&self) -> DomainResult<&Roles> {
        self.roles
            .get_or_try_init(|| load_roles(&self.store, &self.id))
            .await
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal").field("id", &self.id).finish()
    }
}

/// The authenticated party of a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No (valid) token on a public route.
    Anonymous,
    /// A verified user token of an active user.
    User(Arc<Principal>),
    /// A request on the internal listener without a user token: another service of the cluster,
    /// trusted as Sunbird trusts `/private` routes.
    Internal,
    /// An API consumer of the gateway (its key checked, one of the route's ACL groups held) on
    /// a route Sunbird leaves to its gateway's ACL, without a user token: trusted there as a
    /// service, and named in the audit trail.
    Consumer(Arc<str>),
}

impl Caller {
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::User(principal) => Some(&principal.id),
            _ => None,
        }
    }

    /// The id written to `createdBy`/`updatedBy`.
    pub fn audit_id(&self) -> Option<String> {
        self.user_id().map(str::to_string)
    }

    /// The caller's roles (none for anonymous and internal callers).
    pub async fn roles(&self) -> DomainResult<Roles> {
        match self {
            Caller::User(principal) => Ok(principal.roles().await?.clone()),
            _ => Ok(Roles::default()),
        }
    }
}

/// The `typ` of managed tokens: the access-token verifier refuses them, so a managed token is
/// never a user's token on its own.
pub const MANAGED_TOKEN_TYPE: &str = "ManagedFor";

/// Managed tokens, the role Sunbird's admin-util plays (`v1/sign/payload`): signed by this
/// service for one child of one parent (`sub` the child, `parentId` the parent), and accepted
/// only beside that parent's own user token while the child is still theirs.
#[derive(Clone)]
pub struct ManagedTokens {
    signer: LocalSigner,
    issuer: String,
    ttl_seconds: i64,
    clock: Arc<dyn Clock>,
}

impl ManagedTokens {
    pub fn new(
        signer: LocalSigner,
        issuer: String,
        ttl_seconds: i64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        ManagedTokens {
            signer,
            issuer,
            ttl_seconds,
            clock,
        }
    }

    /// A managed token letting `parent` act for `child`.
    pub fn mint(&self, parent: &str, child: &str) -> DomainResult<String> {
        let mut claims = MintClaims::new(child, self.issuer.clone(), self.ttl_seconds);
        claims.token_type = MANAGED_TOKEN_TYPE;
        claims
            .extra
            .insert("parentId".into(), serde_json::Value::from(parent));
        self.signer
            .mint_at(claims, self.clock.now().timestamp())
            .map_err(|error| DomainError::internal(anyhow::anyhow!(error)))
    }

    /// The (parent, child) of a managed token this service signed and that has not expired.
    fn open(&self, token: &str) -> Option<(String, String)> {
        let claims = self
            .signer
            .open_own(
                token,
                MANAGED_TOKEN_TYPE,
                &self.issuer,
                self.clock.now().timestamp(),
            )
            .ok()?;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        Some((text("parentId")?, text("sub")?))
    }
}

/// Turns the credentials of a request into its caller, once per request.
#[derive(Clone)]
pub struct CallerResolver {
    verifier: TokenVerifier,
    service: ServiceCredential,
    store: Arc<dyn Store>,
    managed: Option<ManagedTokens>,
}

impl CallerResolver {
    pub fn new(verifier: TokenVerifier, service: ServiceCredential, store: Arc<dyn Store>) -> Self {
        CallerResolver {
            verifier,
            service,
            store,
            managed: None,
        }
    }

    /// Accepts managed tokens (`x-authenticated-for`) signed with `tokens`.
    pub fn with_managed_tokens(mut self, tokens: Option<ManagedTokens>) -> Self {
        self.managed = tokens;
        self
    }

    /// The managed tokens, when this install signs them.
    pub fn managed_tokens(&self) -> Option<&ManagedTokens> {
        self.managed.as_ref()
    }

    /// True when an `Authorization` header value carries the service credential (with or
    /// without the `Bearer` scheme).
    pub fn is_service(&self, authorization: Option<&str>) -> bool {
        authorization
            .map(bearer_or_raw)
            .is_some_and(|presented| !presented.is_empty() && self.service.accepts(presented))
    }

    /// The active user behind a token header value (`Bearer <jwt>` or the bare token). `None`
    /// for a missing or invalid token and for an unknown, blocked or deleted user: such a token
    /// counts as no token. A store failure is an error (503 when the store is unreachable).
    pub async fn user_of(&self, header: Option<&str>) -> DomainResult<Option<Arc<Principal>>> {
        self.user_acting_for(header, None).await
    }

    /// [`CallerResolver::user_of`] with the request's managed token (`x-authenticated-for`),
    /// if any. A managed token is refused (401) unless it is one this service signed, unexpired,
    /// for a child the token's user manages now; without a valid user token it is refused too.
    pub async fn user_acting_for(
        &self,
        header: Option<&str>,
        managed_token: Option<&str>,
    ) -> DomainResult<Option<Arc<Principal>>> {
        let managed_token = managed_token.map(bearer_or_raw).filter(|t| !t.is_empty());
        let principal = self.principal_of(header).await?;
        let Some(token) = managed_token else {
            return Ok(principal.map(Arc::new));
        };
        let refused = |reason: &'static str| {
            tracing::info!(reason, "managed token rejected");
            Err(DomainError::unauthorized())
        };
        let Some(mut principal) = principal else {
            return refused("no_parent_token");
        };
        let Some((parent, child)) = self.managed.as_ref().and_then(|tokens| tokens.open(token))
        else {
            return refused("invalid_managed_token");
        };
        if parent != principal.id {
            return refused("another_parent");
        }
        let managed_now = user(&self.store, &child).await?.is_some_and(|found| {
            found.record.is_active() && found.record.managed_by.as_deref() == Some(parent.as_str())
        });
        if !managed_now {
            return refused("not_a_child");
        }
        principal.acting_for = Some(child);
        Ok(Some(Arc::new(principal)))
    }

    async fn principal_of(&self, header: Option<&str>) -> DomainResult<Option<Principal>> {
        let Some(token) = header.map(bearer_or_raw).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let user_id = match self.verifier.verify(token) {
            Ok(verified) => verified.user_id,
            Err(error) => {
                tracing::info!(reason = error.reason(), "token rejected");
                return Ok(None);
            }
        };
        let user = match user(&self.store, &user_id).await? {
            Some(found) if found.record.is_active() => found.record,
            _ => {
                tracing::info!(reason = "inactive_or_unknown_user", "token rejected");
                return Ok(None);
            }
        };
        Ok(Some(Principal {
            id: user_id,
            user,
            acting_for: None,
            roles: tokio::sync::OnceCell::new(),
            store: Arc::clone(&self.store),
        }))
    }
}

/// The access a caller has over users of one root organisation.
pub struct Authority {
    pub caller: Caller,
    pub roles: Roles,
}

impl Authority {
    pub async fn of(caller: &Caller) -> DomainResult<Authority> {
        Ok(Authority {
            caller: caller.clone(),
            roles: caller.roles().await?,
        })
    }

    /// System administration: the internal listener or the ADMIN role.
    pub fn is_admin(&self) -> bool {
        matches!(self.caller, Caller::Internal | Caller::Consumer(_)) || self.roles.has(ADMIN)
    }

    /// ADMIN, or ORG_ADMIN of `root_org_id`.
    pub fn administers(&self, root_org_id: &str) -> bool {
        self.is_admin() || self.roles.has_in(ORG_ADMIN, root_org_id)
    }

    /// The caller is the user, or the parent managing the user (with a managed token, only the
    /// child it names).
    pub fn is_self_or_manager(&self, user_id: &str, managed_by: Option<&str>) -> bool {
        let Caller::User(principal) = &self.caller else {
            return false;
        };
        let caller = principal.id.as_str();
        let acting_for_this_one = principal
            .acting_for
            .as_deref()
            .is_none_or(|child| child == user_id);
        caller == user_id || (managed_by == Some(caller) && acting_for_this_one)
    }

    /// A user holding no administrator role anywhere: such a caller reaches only themself and
    /// the children they manage.
    pub fn is_plain_user(&self) -> bool {
        matches!(self.caller, Caller::User(_))
            && !self.roles.has(ADMIN)
            && !self.roles.has(ORG_ADMIN)
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

    /// The grant rule, the same on every path that gives or takes roles (create, role assignment
    /// v1 and v2, and later bulk and migration): only an ADMIN may grant or remove a privileged
    /// role.
    pub fn may_grant(&self, roles: &[String]) -> bool {
        self.is_admin() || !roles.iter().any(|role| is_privileged(role))
    }

    /// Only an ADMIN may change, block, delete or re-role a user who holds a privileged role, so
    /// a tenant administrator can never demote or take over a system administrator.
    pub fn may_act_on_holder_of(&self, target: &Roles) -> bool {
        self.is_admin() || !target.0.iter().any(|role| is_privileged(&role.role))
    }

    /// What the caller is to a user: the user or their parent, an administrator of them, or
    /// anyone else. Read and search show fields by this relation.
    pub fn relation(&self, user_id: &str, managed_by: Option<&str>, root_org_id: &str) -> Relation {
        if self.is_self_or_manager(user_id, managed_by) {
            Relation::Own
        } else if self.administers(root_org_id) {
            Relation::Administrator
        } else {
            Relation::Other
        }
    }

    /// The root organisations whose users the caller may find by search: every one for an
    /// ADMIN (`None`), else the caller's own and the organisations it is ORG_ADMIN of.
    pub fn search_scope(&self) -> Option<Vec<String>> {
        if self.is_admin() {
            return None;
        }
        let mut scope: Vec<String> = match &self.caller {
            Caller::User(principal) => vec![principal.user.root_org_id.clone()],
            _ => Vec::new(),
        };
        for role in self.roles.0.iter().filter(|r| r.role == ORG_ADMIN) {
            for organisation in &role.organisations {
                if !scope.contains(organisation) {
                    scope.push(organisation.clone());
                }
            }
        }
        Some(scope)
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
