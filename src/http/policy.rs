//! The policy table: for every route, who may get a successful answer from it. The services
//! enforce the rules (`services::access`); this table states them in one place, a test fails
//! when a route of the router has no entry, and the API test `matrix` runs every route as every
//! kind of caller and fails on a success the table does not allow.

/// Who may succeed on a route (each includes those below it in power: the internal service
/// and an ADMIN may do what a tenant administrator may).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Anyone, anonymous included.
    Anyone,
    /// Any holder of a valid token of an active user.
    Authenticated,
    /// The user, their managing parent, an ORG_ADMIN of the user's tenant, an ADMIN.
    Related,
    /// The user themself or an ADMIN.
    SelfOrAdmin,
    /// The user themself (or their managing parent) and other services, never an
    /// administrator: the user's own decisions (consent, terms accepted).
    Own,
    /// An ORG_ADMIN of the tenant concerned, or an ADMIN.
    TenantAdmin,
    /// An ORG_ADMIN of any tenant, acting in their own tenant, or an ADMIN; no service, as
    /// the work runs with a user's rights (a bulk upload's rows run as the uploader).
    Administrators,
    /// An ADMIN.
    Admin,
    /// Only another service, on the internal listener with the service credential.
    Service,
    /// Only a caller holding the tokens of both accounts concerned (the merge): no single
    /// caller, service or ADMIN included, succeeds alone.
    BothAccounts,
}

/// Every route of the service with its audience.
pub const POLICY: &[(&str, Audience)] = &[
    ("/health", Audience::Anyone),
    ("/service/health", Audience::Anyone),
    ("/{service}/health", Audience::Authenticated),
    // Anonymous creates make role-less users of the custodian organisation only.
    ("/v1/user/create", Audience::Anyone),
    ("/v2/user/create", Audience::Anyone),
    ("/v3/user/create", Audience::Anyone),
    ("/v1/ssouser/create", Audience::Anyone),
    ("/v1/user/signup", Audience::Anyone),
    ("/v2/user/signup", Audience::Anyone),
    // A child is created by its own parent (`managedBy` the caller), or by an ADMIN.
    ("/v4/user/create", Audience::SelfOrAdmin),
    ("/v1/manageduser/create", Audience::SelfOrAdmin),
    ("/v2/manageduser/create", Audience::SelfOrAdmin),
    ("/v1/user/managed/{id}", Audience::SelfOrAdmin),
    ("/v1/user/consent/update", Audience::Own),
    // The user, the consumer organisation's and the user's tenant administrators.
    ("/v1/user/consent/read", Audience::Related),
    ("/v2/user/consent/read", Audience::Related),
    ("/v1/user/tnc/accept", Audience::Own),
    // The user submits (and an ADMIN or a service); the organisation's administrators only set
    // the status of a declaration made to it, which the API test `declarations` covers.
    ("/v1/user/declarations", Audience::SelfOrAdmin),
    ("/v1/user/read/{uid}", Audience::Related),
    ("/v2/user/read/{uid}", Audience::Related),
    ("/v3/user/read/{uid}", Audience::Related),
    ("/v4/user/read/{uid}", Audience::Related),
    ("/v5/user/read/{uid}", Audience::Related),
    ("/private/user/v1/read/{uid}", Audience::Service),
    ("/v1/user/update", Audience::Related),
    ("/v2/user/update", Audience::Related),
    ("/v3/user/update", Audience::Related),
    ("/private/user/v1/update", Audience::Service),
    // Search answers every token holder, scoped to their tenants and by relation.
    ("/v1/user/search", Audience::Authenticated),
    ("/v2/user/search", Audience::Authenticated),
    ("/v3/user/search", Audience::Authenticated),
    ("/private/user/v1/search", Audience::Service),
    ("/v1/user/block", Audience::TenantAdmin),
    ("/v1/user/unblock", Audience::TenantAdmin),
    ("/v1/user/delete", Audience::SelfOrAdmin),
    ("/private/user/v1/lookup", Audience::Service),
    ("/private/user/v1/identifier/freeup", Audience::Service),
    ("/private/user/v1/migrate", Audience::Service),
    ("/v1/user/ownership/transfer", Audience::TenantAdmin),
    // An upload's rows run as the uploader, an administrator of their own tenant.
    ("/v1/user/upload", Audience::Administrators),
    ("/v1/org/upload", Audience::Administrators),
    ("/v1/upload/status/{pid}", Audience::TenantAdmin),
    // A note is its user's (and an ADMIN's); search answers the caller's own notes.
    ("/v1/note/create", Audience::SelfOrAdmin),
    ("/v1/note/read/{noteId}", Audience::SelfOrAdmin),
    ("/v1/note/update/{noteId}", Audience::SelfOrAdmin),
    ("/v1/note/delete/{noteId}", Audience::SelfOrAdmin),
    ("/v1/note/search", Audience::Authenticated),
    ("/v1/file/upload", Audience::Authenticated),
    // Uploaded files are public, as Sunbird's cloud storage links are.
    ("/files/{container}/{key}", Audience::Anyone),
    // Existence only, rate-limited.
    ("/v1/user/exists/{key}/{value}", Audience::Anyone),
    ("/v2/user/exists/{key}/{value}", Audience::Authenticated),
    // A name card for strangers, the profile by relation.
    ("/v1/user/get/{key}/{value}", Audience::Authenticated),
    ("/v2/user/get/{key}/{value}", Audience::Authenticated),
    ("/v1/user/getuser", Audience::Authenticated),
    ("/v1/org/create", Audience::TenantAdmin),
    ("/v1/org/update", Audience::TenantAdmin),
    ("/v1/org/status/update", Audience::TenantAdmin),
    ("/v1/org/read", Audience::Anyone),
    ("/v1/org/search", Audience::Anyone),
    ("/v2/org/search", Audience::Anyone),
    ("/private/v2/org/search", Audience::Service),
    ("/v1/org/assign/key", Audience::Admin),
    ("/v1/org/update/encryptionkey", Audience::TenantAdmin),
    ("/v1/role/read", Audience::Anyone),
    ("/v1/user/role/read/{uid}", Audience::Anyone),
    ("/v1/user/assign/role", Audience::TenantAdmin),
    ("/private/user/v1/assign/role", Audience::Service),
    ("/v2/user/assign/role", Audience::TenantAdmin),
    ("/private/user/v2/assign/role", Audience::Service),
    ("/v1/location/create", Audience::Admin),
    ("/v1/location/update", Audience::Admin),
    ("/v1/location/delete/{locationId}", Audience::Admin),
    ("/v1/location/search", Audience::Anyone),
    ("/v2/org/preferences/create", Audience::TenantAdmin),
    ("/v2/org/preferences/update", Audience::TenantAdmin),
    ("/v2/org/preferences/read", Audience::Anyone),
    ("/private/v2/org/preferences/read", Audience::Service),
    ("/v1/system/settings/get/{field}", Audience::Anyone),
    ("/v1/system/settings/list", Audience::Anyone),
    ("/v1/system/settings/set", Audience::Admin),
    ("/v1/data/sync", Audience::Admin),
    // The sign-in: its own credentials (client, password, refresh or access token) decide.
    (
        "/auth/realms/{realm}/protocol/openid-connect/token",
        Audience::Anyone,
    ),
    (
        "/auth/realms/{realm}/protocol/openid-connect/certs",
        Audience::Anyone,
    ),
    (
        "/auth/realms/{realm}/protocol/openid-connect/logout",
        Audience::Anyone,
    ),
    (
        "/auth/realms/{realm}/protocol/openid-connect/userinfo",
        Audience::Anyone,
    ),
    (
        "/auth/realms/{realm}/.well-known/openid-configuration",
        Audience::Anyone,
    ),
    (
        "/auth/admin/realms/{realm}/attack-detection/brute-force/users/{user_id}",
        Audience::Admin,
    ),
    ("/auth/v1/refresh/token", Audience::Anyone),
    // Email and SMS to any address: administrators (ORG_ADMIN within its tenants) and services.
    ("/v1/notification/email", Audience::TenantAdmin),
    ("/private/user/v1/notification/email", Audience::Service),
    ("/v2/notification", Audience::Admin),
    // OTPs go to the key given (rate-limited per key), and prove only its possession.
    ("/v1/otp/generate", Audience::Anyone),
    ("/v2/otp/generate", Audience::Anyone),
    ("/v1/otp/verify", Audience::Anyone),
    ("/v2/otp/verify", Audience::Anyone),
    // Set-password links are made for services; the page they open is the link's own proof.
    ("/private/user/v1/password/reset", Audience::Service),
    ("/password/reset/{token}", Audience::Anyone),
    // The merger's own token and the mergee's: the two accounts decide, nobody else.
    ("/private/user/v1/account/merge", Audience::BothAccounts),
    // A feed is its user's.
    ("/v1/user/feed/{userId}", Audience::Related),
    ("/v1/user/feed/create", Audience::Related),
    ("/private/user/feed/v1/create", Audience::Service),
    ("/v1/user/feed/delete", Audience::Related),
    ("/v1/user/feed/update", Audience::Related),
];

/// The audience of a route template.
pub fn audience_of(path: &str) -> Option<Audience> {
    POLICY
        .iter()
        .find(|(route, _)| *route == path)
        .map(|(_, audience)| *audience)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_exactly_one_policy_entry() {
        let routes: Vec<&str> = super::super::routes().iter().map(|r| r.path).collect();
        let missing: Vec<&&str> = routes.iter().filter(|r| audience_of(r).is_none()).collect();
        assert!(
            missing.is_empty(),
            "routes without a policy entry: {missing:?}"
        );
        let stale: Vec<&str> = POLICY
            .iter()
            .map(|(path, _)| *path)
            .filter(|path| !routes.contains(path))
            .collect();
        assert!(stale.is_empty(), "policy entries of no route: {stale:?}");
        let mut seen = std::collections::HashSet::new();
        for (path, _) in POLICY {
            assert!(seen.insert(path), "{path} listed twice");
        }
        // Private routes are the service's alone (or need both accounts of a merge, reached
        // through the internal listener), and the service's alone are private.
        for spec in super::super::routes() {
            let private = spec.access == super::super::Access::Private;
            assert_eq!(
                private,
                matches!(
                    audience_of(spec.path),
                    Some(Audience::Service | Audience::BothAccounts)
                ),
                "{}",
                spec.path
            );
        }
    }
}
