//! User use cases: create, read, update, status changes, search, lookups and existence checks.
//! Validation and authorisation happen here; mutations are sent to the owning actor; reads go
//! to the store (through the cache) and searches to the index.

pub mod input;
pub mod reseal;
pub mod view;

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::actors::user_owner::{
    EXTERNAL_ID_TOKEN_KIND, UserOwners, external_id_claim, username_token,
};
use crate::clock::Clock;
use crate::crypto::PiiVault;
use crate::domain::Record;
use crate::domain::contact::{Email, Phone};
use crate::domain::role::PUBLIC;
use crate::domain::rules::{PasswordPolicy, new_user_id};
use crate::domain::user::{
    ASSOCIATION_SELF_DECLARATION, ASSOCIATION_SSO, ExternalId, NewUser, StatusChange, UserUpdate,
    user_id_from_path,
};
use crate::domain::user::{CreateRequest, FreeUp, UserRecord};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::search::documents::PII_TOKENS_FIELD;
use crate::search::dsl::SearchLimits;
use crate::search::{Facet, Filter, IndexName, Scalar, SearchIndex};
use crate::services::access::{Authority, Caller};
use crate::services::audit;
use crate::services::declarations::declaration_views;
use crate::services::frameworks::FrameworkCheck;
use crate::services::json::{Body, opt_nonblank, opt_str_list, required_str, response, success};
use crate::services::search::{self, Steps};
use crate::storage::records::{
    check_roles_exist, custodian, get_org, json_setting, load_roles, memberships, org_types,
    role_grants, tenant_by_channel, tenant_id_of, user,
};
use crate::storage::{ClaimKind, Store, Table, Transaction};
use input::{CreateRoute, UpdateRoute, parse_create, parse_update};
use view::{ReadContext, ReadVersion, SearchVersion, read_view, restrict_to, search_hit_view};

/// Sunbird's flag for users whose root organisation is a state tenant.
use crate::domain::user::STATE_VALIDATED_FLAG as STATE_VALIDATED;

/// Settings the user flows read on every request.
#[derive(Debug, Clone)]
pub struct UserRules {
    /// Sunbird's password policy for new passwords.
    pub password_policy: PasswordPolicy,
    /// Sunbird's anonymous lookups: the v5 profile by email, phone or login id to anyone.
    pub anonymous_profiles: bool,
    /// Argon2id hashes computed at once.
    pub password_hash_concurrency: usize,
    pub default_country_code: String,
    pub search_limits: SearchLimits,
}

/// A user as the sign-in describes them (userinfo and token claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInProfile {
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Clone)]
pub struct UserService {
    store: Arc<dyn Store>,
    search: Arc<dyn SearchIndex>,
    owners: UserOwners,
    vault: PiiVault,
    clock: Arc<dyn Clock>,
    rules: UserRules,
    hashing: Arc<tokio::sync::Semaphore>,
    /// The hash of a random password, compared against when there is no real one, so an
    /// unknown or locked account costs the same time as a wrong password.
    decoy: Arc<tokio::sync::OnceCell<String>>,
    /// The reCAPTCHA check of `/v2/user/exists`.
    captcha: crate::services::captcha::Captcha,
    frameworks: FrameworkCheck,
}

/// Hashes a password with Argon2id on the blocking pool (tens of milliseconds and 19 MiB each),
/// at most as many at once as the semaphore allows, so a flood of sign-ups cannot take every
/// core and gigabytes of memory.
async fn hash_password(hashing: &tokio::sync::Semaphore, password: String) -> DomainResult<String> {
    let _permit = hashing
        .acquire()
        .await
        .map_err(|_| DomainError::Unavailable("password hashing stopped".into()))?;
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
    })
    .await
    .map_err(DomainError::internal)?
    .map_err(DomainError::Internal)
}

/// Fields with an owner: the verified flags are an administrator's to set (or, later, a
/// verified OTP's): from anyone else they are ignored, so nobody registers someone else's
/// address as verified. External ids must come from the user's own tenant (its channel as
/// provider), unless an ADMIN sets them, so no one squats another tenant's ids.
fn guard_owned_fields(
    authority: &Authority,
    administrator: bool,
    tenant_channel: &str,
    email_verified: &mut bool,
    phone_verified: &mut bool,
    external_ids: &[ExternalId],
) -> DomainResult<()> {
    if !administrator {
        *email_verified = false;
        *phone_verified = false;
    }
    let foreign = external_ids
        .iter()
        .any(|id| !id.provider.eq_ignore_ascii_case(tenant_channel));
    authority.require(authority.is_admin() || !foreign)
}

/// Fields whose stored value is ciphertext or a blind-index token (and the hash): never
/// faceted on.
fn is_sealed_field(field: &str) -> bool {
    pii_token_input(field, "", "").is_some()
        || field == PII_TOKENS_FIELD
        || field.starts_with(&format!("{PII_TOKENS_FIELD}."))
        || matches!(
            field,
            "passwordHash"
                | "encEmail"
                | "encPhone"
                | "externalIds.idToken"
                | "externalIds.claimToken"
        )
}

/// The index field a tokenised filter on `field` looks at: external ids keep their id's token
/// beside it in each entry, every other PII field under [`PII_TOKENS_FIELD`].
fn tokenised_field(field: &str) -> String {
    match field {
        "externalIds.id" => "externalIds.idToken".to_string(),
        _ => format!("{PII_TOKENS_FIELD}.{field}"),
    }
}

/// The blind-index namespace and normalised form of a PII filter value, or `None` for fields
/// that are not PII. Phones take their international form, under `default_country_code` when
/// the value has none.
fn pii_token_input(
    field: &str,
    value: &str,
    default_country_code: &str,
) -> Option<(&'static str, String)> {
    let trimmed = value.trim();
    match field {
        "email" | "recoveryEmail" | "prevUsedEmail" => {
            let kind = match field {
                "email" => "email",
                "recoveryEmail" => "recoveryEmail",
                _ => "prevUsedEmail",
            };
            Some((kind, trimmed.to_lowercase()))
        }
        "phone" | "recoveryPhone" | "prevUsedPhone" => {
            let kind = match field {
                "phone" => "phone",
                "recoveryPhone" => "recoveryPhone",
                _ => "prevUsedPhone",
            };
            Some((kind, Phone::index_form_of(trimmed, default_country_code)))
        }
        "userName" | "loginId" => Some(("userName", trimmed.to_lowercase())),
        "externalIds.id" => Some((EXTERNAL_ID_TOKEN_KIND, trimmed.to_lowercase())),
        _ => None,
    }
}

impl UserService {
    pub fn new(
        store: Arc<dyn Store>,
        search: Arc<dyn SearchIndex>,
        owners: UserOwners,
        vault: PiiVault,
        clock: Arc<dyn Clock>,
        rules: UserRules,
    ) -> Self {
        let hashing = Arc::new(tokio::sync::Semaphore::new(
            rules.password_hash_concurrency.max(1),
        ));
        let frameworks = FrameworkCheck::new(Arc::clone(&store), None);
        UserService {
            store,
            search,
            owners,
            vault,
            clock,
            rules,
            hashing,
            decoy: Arc::new(tokio::sync::OnceCell::new()),
            captcha: crate::services::captcha::Captcha::Off,
            frameworks,
        }
    }

    /// The same service checking users' frameworks against `api` (the content service's
    /// framework read API) instead of the `frameworks` system setting.
    pub fn with_framework_api(mut self, api: Arc<dyn crate::content::FrameworkSource>) -> Self {
        self.frameworks = FrameworkCheck::new(Arc::clone(&self.store), Some(api));
        self
    }

    /// Replaces a request's framework with its checked, stored form. A child's framework
    /// that does not pass is left out (`lenient`), as Sunbird leaves it out.
    async fn check_framework(
        &self,
        profile: &mut Map<String, Value>,
        lenient: bool,
    ) -> DomainResult<()> {
        let Some(framework) = profile.get("framework") else {
            return Ok(());
        };
        match self.frameworks.check(framework).await {
            Ok(stored) => {
                profile.insert("framework".into(), stored);
            }
            Err(DomainError::Rule(_)) if lenient => {
                profile.remove("framework");
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Hashes a new password (Argon2id, under the same bound as sign-ups) after checking it
    /// against the password policy; `None` when the policy refuses it.
    pub async fn hash_new_password(&self, password: &str) -> DomainResult<Option<String>> {
        if !self.rules.password_policy.accepts(password) {
            return Ok(None);
        }
        Ok(Some(
            hash_password(&self.hashing, password.to_string()).await?,
        ))
    }

    /// The owners of users (for commands other services send on a user's behalf).
    pub fn owners(&self) -> &UserOwners {
        &self.owners
    }

    /// The same service with a reCAPTCHA check on `/v2/user/exists`.
    pub fn with_captcha(mut self, captcha: crate::services::captcha::Captcha) -> Self {
        self.captcha = captcha;
        self
    }

    /// Whether `password` matches `hash` (Argon2id, on the blocking pool, under the same bound
    /// as hashing). With no hash the password is compared with a decoy's, which takes the same
    /// time, and the answer is `false`.
    pub async fn verify_password(
        &self,
        hash: Option<String>,
        password: String,
    ) -> DomainResult<bool> {
        let (hash, real) = match hash {
            Some(hash) => (hash, true),
            None => {
                let decoy = self
                    .decoy
                    .get_or_try_init(|| {
                        let random = uuid::Uuid::new_v4().to_string();
                        hash_password(&self.hashing, random)
                    })
                    .await?;
                (decoy.clone(), false)
            }
        };
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| DomainError::Unavailable("password hashing stopped".into()))?;
        let matched = tokio::task::spawn_blocking(move || {
            use argon2::password_hash::PasswordVerifier;
            // The hash's own parameters decide the cost; a hash that does not parse matches
            // nothing.
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .map_err(DomainError::internal)?;
        Ok(real && matched)
    }

    pub fn vault(&self) -> &PiiVault {
        &self.vault
    }

    /// Sunbird's "already exists" for an identifier someone holds, checked in its order (phone,
    /// email, username) before any expensive work.
    async fn refuse_taken_identifiers(&self, request: &CreateRequest) -> DomainResult<()> {
        if let Some(phone) = &request.phone
            && self
                .owner_of(ClaimKind::Phone, "phone", &phone.index_form())
                .await?
                .is_some()
        {
            return Err(DomainError::already_exists("phone"));
        }
        if let Some(email) = &request.email
            && self
                .owner_of(ClaimKind::Email, "email", email.as_str())
                .await?
                .is_some()
        {
            return Err(DomainError::already_exists("email"));
        }
        if let Some(username) = &request.username {
            let token = username_token(&self.vault, username);
            if self
                .store
                .claim_owner(ClaimKind::Username, &token)
                .await?
                .is_some()
            {
                return Err(DomainError::already_exists("userName"));
            }
        }
        Ok(())
    }

    // ==== Create ====

    pub async fn create(
        &self,
        caller: &Caller,
        route: CreateRoute,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        self.create_with(caller, route, body, new_user_id(), Transaction::default())
            .await
    }

    /// A create of the user `new_id` that commits `also` with it, or not at all (a bulk row's
    /// done mark and welcome message).
    pub async fn create_with(
        &self,
        caller: &Caller,
        route: CreateRoute,
        body: &Body,
        new_id: String,
        also: Transaction,
    ) -> DomainResult<Map<String, Value>> {
        let mut request = parse_create(
            body,
            route,
            &self.rules.password_policy,
            &self.rules.default_country_code,
        )?;
        let authority = Authority::of(caller).await?;
        let (custodian_id, custodian_channel) = custodian(&self.store).await?;

        let (root_org_id, channel) = if route.self_declared() {
            (custodian_id.clone(), custodian_channel.clone())
        } else {
            self.resolve_organisation(
                &request.channel,
                &request.organisation_id,
                &custodian_id,
                &custodian_channel,
            )
            .await?
        };

        // The original trusts an API gateway here; a standalone service must not let an
        // anonymous caller place users in a tenant or grant roles.
        let privileged_roles: Vec<&String> =
            request.roles.iter().filter(|r| *r != PUBLIC).collect();
        authority.require(authority.may_grant(&request.roles))?;
        // A child is created by its parent (Sunbird answers anyone else 401), on every route
        // that takes `managedBy`; the parent must be a live, unmanaged user with a name.
        if let Some(parent) = &request.managed_by {
            if !(authority.caller.user_id() == Some(parent.as_str()) || authority.is_admin()) {
                return Err(DomainError::unauthorized());
            }
            let live = user(&self.store, parent).await?.is_some_and(|found| {
                found.record.is_active()
                    && found.record.managed_by.is_none()
                    && found
                        .record
                        .first_name
                        .as_deref()
                        .is_some_and(|name| !name.trim().is_empty())
            });
            if !live {
                return Err(DomainError::not_found("user"));
            }
        }
        if !route.self_declared() {
            // Placing a user in a tenant, in an organisation below its root, or with roles is
            // for that tenant's administrators.
            let placing = root_org_id != custodian_id
                || !privileged_roles.is_empty()
                || request
                    .organisation_id
                    .as_deref()
                    .is_some_and(|org| org != root_org_id);
            authority.require(!placing || authority.administers(&root_org_id))?;
        }
        check_roles_exist(&self.store, &request.roles).await?;
        let administrator = authority.administers(&root_org_id);
        guard_owned_fields(
            &authority,
            administrator,
            &channel,
            &mut request.email_verified,
            &mut request.phone_verified,
            &request.external_ids,
        )?;

        self.check_framework(&mut request.profile, route == CreateRoute::Managed)
            .await?;
        // The expensive hash comes after the cheap checks: a create that will be refused for
        // a taken identifier costs no Argon2 run (the commit's claims still decide races).
        if request.password.is_some() {
            self.refuse_taken_identifiers(&request).await?;
        }
        let password_hash = match &request.password {
            Some(password) => Some(hash_password(&self.hashing, password.clone()).await?),
            None => None,
        };
        let association_type = if route.self_declared() {
            ASSOCIATION_SELF_DECLARATION
        } else {
            ASSOCIATION_SSO
        };
        let flags_value = if root_org_id != custodian_id {
            STATE_VALIDATED
        } else {
            0
        };
        let mut request = request;
        request.roles.retain(|role| role != PUBLIC);
        // A create that grants roles is a role grant, audited with the create itself.
        let audit = (!request.roles.is_empty()).then(|| {
            audit::note(
                caller,
                "role.grant",
                &new_id,
                json!({"roles": request.roles}),
            )
        });
        let id = self
            .owners
            .create_with(
                NewUser {
                    id: new_id,
                    request,
                    password_hash,
                    root_org_id,
                    channel,
                    association_type,
                    created_by: caller.audit_id(),
                    flags_value,
                },
                audit,
                also,
            )
            .await?;
        let mut result = success();
        result.insert("userId".into(), json!(id));
        if !route.self_declared() {
            result.insert("errors".into(), json!([]));
        }
        Ok(result)
    }

    /// `(rootOrgId, channel)` for a create: from the channel, else from the organisation's
    /// channel, else the custodian organisation.
    async fn resolve_organisation(
        &self,
        channel: &Option<String>,
        organisation_id: &Option<String>,
        custodian_id: &str,
        custodian_channel: &str,
    ) -> DomainResult<(String, String)> {
        let organisation = match organisation_id {
            Some(id) => Some(get_org(&self.store, id).await?.ok_or_else(|| {
                DomainError::rule(ErrorCode::invalidParameter, &["organisation"])
            })?),
            None => None,
        };
        let channel = match (channel, &organisation) {
            (Some(channel), _) => Some(channel.clone()),
            (None, Some(org)) => Some(org.channel.clone()).filter(|c| !c.is_empty()),
            (None, None) => None,
        };
        let Some(channel) = channel else {
            return Ok((custodian_id.to_string(), custodian_channel.to_string()));
        };
        let tenant = tenant_by_channel(&self.store, &channel)
            .await?
            .ok_or_else(|| {
                DomainError::rule(ErrorCode::invalidParameterValue, &[&channel, "channel"])
            })?;
        let tenant_id = tenant.id.clone();
        if let Some(org) = &organisation {
            let same_channel = org.channel.eq_ignore_ascii_case(&channel);
            if !same_channel || (org.is_tenant() && org.id != tenant_id) {
                return Err(DomainError::rule(
                    ErrorCode::parameterMismatch,
                    &["channel, organisationId"],
                ));
            }
        }
        let tenant_channel = if tenant.channel.is_empty() {
            channel
        } else {
            tenant.channel
        };
        Ok((tenant_id, tenant_channel))
    }

    // ==== Read ====

    async fn load_user(&self, id: &str) -> DomainResult<UserRecord> {
        user(&self.store, id)
            .await?
            .map(|found| found.record)
            .ok_or_else(|| DomainError::not_found("user"))
    }

    /// A managed child as its parent sees it in the list of its children (the v5 read view).
    pub async fn child_view(&self, child: &UserRecord) -> DomainResult<Map<String, Value>> {
        self.view_of(child, ReadVersion::V5, false, true, &[]).await
    }

    /// The read view of a loaded user.
    async fn view_of(
        &self,
        user: &UserRecord,
        version: ReadVersion,
        private: bool,
        own_profile: bool,
        fields: &[String],
    ) -> DomainResult<Map<String, Value>> {
        let memberships = memberships(&self.store, &user.id)
            .await?
            .into_iter()
            .map(|m| m.record.to_doc())
            .collect();
        let roles = role_grants(&self.store, &user.id)
            .await?
            .into_iter()
            .map(|grant| grant.record.to_doc())
            .collect();
        let root_org = match get_org(&self.store, &user.root_org_id).await? {
            Some(org) => {
                let mut org = crate::search::documents::organisation_document(org.to_doc());
                org.remove("contactDetail");
                Some(Value::Object(org))
            }
            None => None,
        };
        let tnc_config = json_setting(&self.store, "tncConfig").await?;
        let mut view = read_view(
            user.to_doc(),
            ReadContext {
                vault: &self.vault,
                version,
                private,
                own_profile,
                fields,
                root_org,
                memberships,
                roles,
                tnc_config,
                today: self.clock.today(),
            },
        );
        // Sunbird matches the `fields` values as substrings (`contains`).
        let asked = |name: &str| fields.iter().any(|field| field.contains(name));
        if asked("organisations") {
            self.detail_organisations(&mut view).await?;
        }
        if asked("roles") {
            // Sunbird's cached role list: every role of the catalogue as `{id, name}`.
            let rows = self.store.scan(Table::Role, "", None, 10_000).await?;
            let list: Vec<Value> = rows
                .into_iter()
                .map(|row| {
                    let name = row.doc.get("name").cloned().unwrap_or(Value::Null);
                    json!({"id": row.key.trim(), "name": name})
                })
                .collect();
            view.insert("roleList".into(), Value::Array(list));
        }
        // The declared info is the user's: opened for them (or their parent) and other
        // services only.
        if asked("declarations") && (own_profile || private) {
            let declarations = declaration_views(&self.store, &self.vault, &user.id).await?;
            view.insert("declarations".into(), Value::Array(declarations));
        }
        if asked("locations") {
            let ids: Vec<String> = user
                .profile
                .get("profileLocation")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|location| location.get("id").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            let locations = self.location_views(&ids).await?;
            view.insert("userLocations".into(), Value::Array(locations));
            view.remove("locationIds");
            view.remove("profileLocation");
        }
        Ok(view)
    }

    /// `fields=organisations`: each membership with its organisation's name, channel,
    /// hashTagId, locations and school flag, as Sunbird's profile read adds them.
    async fn detail_organisations(&self, view: &mut Map<String, Value>) -> DomainResult<()> {
        let Some(Value::Array(memberships)) = view.get_mut("organisations") else {
            return Ok(());
        };
        let types = org_types(&self.store).await?;
        let school = crate::domain::org::org_type_value(&types, "school");
        for membership in memberships.iter_mut().filter_map(Value::as_object_mut) {
            let Some(id) = membership
                .get("organisationId")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            let Some(org) = get_org(&self.store, &id).await? else {
                continue;
            };
            let doc = crate::search::documents::organisation_document(org.to_doc());
            for key in ["orgName", "channel", "hashTagId", "externalId"] {
                membership.insert(key.into(), doc.get(key).cloned().unwrap_or(Value::Null));
            }
            let org_location = doc.get("orgLocation").cloned().unwrap_or(json!([]));
            let location_ids: Vec<String> = org_location
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|location| location.get("id").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            membership.insert("locationIds".into(), json!(location_ids));
            membership.insert("orgLocation".into(), org_location);
            membership.insert(
                "locations".into(),
                Value::Array(self.location_views(&location_ids).await?),
            );
            let is_school = doc
                .get("organisationType")
                .and_then(Value::as_i64)
                .is_some()
                && doc.get("organisationType").and_then(Value::as_i64) == school;
            membership.insert("isSchool".into(), json!(is_school));
        }
        Ok(())
    }

    /// Locations by id as Sunbird shows them on a profile: `code`, `name`, `type`, `parentId`,
    /// `id` (unknown ids are left out).
    async fn location_views(&self, ids: &[String]) -> DomainResult<Vec<Value>> {
        let mut views = Vec::new();
        for id in ids {
            if let Some(row) = self.store.get(Table::Location, id).await? {
                let mut view = Map::new();
                for key in ["code", "name", "type", "parentId", "id"] {
                    if let Some(value) = row.doc.get(key) {
                        view.insert(key.into(), value.clone());
                    }
                }
                views.push(Value::Object(view));
            }
        }
        Ok(views)
    }

    pub async fn read(
        &self,
        caller: &Caller,
        raw_id: &str,
        external: Option<(&str, Option<&str>)>,
        version: ReadVersion,
        private: bool,
        fields: &[String],
    ) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        let id = match external {
            None => user_id_from_path(raw_id),
            Some((provider, id_type)) => {
                let id_type = id_type.ok_or_else(|| DomainError::mandatory_missing("idType"))?;
                let external = ExternalId {
                    id: raw_id.trim().to_string(),
                    id_type: id_type.to_string(),
                    provider: provider.to_string(),
                };
                let owner = self
                    .store
                    .claim_owner(
                        ClaimKind::ExternalId,
                        &external_id_claim(&self.vault, &external),
                    )
                    .await?;
                match owner {
                    Some(owner) => owner,
                    // A stranger learns nothing more from an unknown external id.
                    None if !private && authority.is_plain_user() => {
                        return Err(DomainError::forbidden());
                    }
                    None => {
                        return Err(DomainError::with_message(
                            ErrorCode::resourceNotFound,
                            format!(
                                "External ID (id: {}, idType: {}, provider: {}) not found for given user.",
                                external.id, external.id_type, external.provider
                            ),
                        ));
                    }
                }
            }
        };
        if !private {
            self.refuse_strangers(&authority, &id).await?;
        }
        let user = self.load_user(&id).await?;
        if user.is_deleted() {
            return Err(DomainError::rule(ErrorCode::userAccountlocked, &[]));
        }
        let managed_by = user.managed_by.as_deref();
        if !private {
            authority.require(authority.may_act_on_user(&id, managed_by, &user.root_org_id))?;
        }
        let own = authority.is_self_or_manager(&id, managed_by);
        let view = self.view_of(&user, version, private, own, fields).await?;
        Ok(response(Value::Object(view)))
    }

    /// A caller with no administrator role asking for someone else is refused (403) before the
    /// user is looked up, as Sunbird's deployment refuses it in front of the service: the answer
    /// is the same whether the id exists or not. The one exception is a child the caller
    /// manages, which needs the row to be seen.
    async fn refuse_strangers(&self, authority: &Authority, user_id: &str) -> DomainResult<()> {
        let Some(caller_id) = authority.caller.user_id() else {
            return Ok(());
        };
        if caller_id == user_id || !authority.is_plain_user() {
            return Ok(());
        }
        let managed = user(&self.store, user_id)
            .await?
            .is_some_and(|found| found.record.managed_by.as_deref() == Some(caller_id));
        authority.require(managed)
    }

    // ==== Update ====

    pub async fn update(
        &self,
        caller: &Caller,
        route: UpdateRoute,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        self.update_with(caller, route, body, None).await
    }

    /// An update that writes `on_graduation` too when it turns a managed user into a normal one.
    pub async fn update_with(
        &self,
        caller: &Caller,
        route: UpdateRoute,
        body: &Body,
        on_graduation: Option<Transaction>,
    ) -> DomainResult<Map<String, Value>> {
        let mut request = parse_update(body, route, &self.rules.default_country_code)?;
        let authority = Authority::of(caller).await?;
        self.refuse_strangers(&authority, &request.user_id).await?;
        let user = self.load_user(&request.user_id).await?;
        authority.require(authority.may_act_on_user(
            &request.user_id,
            user.managed_by.as_deref(),
            &user.root_org_id,
        ))?;
        let target_roles = load_roles(&self.store, &request.user_id).await?;
        authority.require(authority.may_act_on_holder_of(&target_roles))?;
        let administrator = authority.administers(&user.root_org_id);
        // Joining an organisation is for the user's administrators, and only within the user's
        // tenant.
        if let Some(organisation) = &request.organisation_id {
            let org = get_org(&self.store, organisation).await?.ok_or_else(|| {
                DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[organisation, "organisationId"],
                )
            })?;
            authority.require(administrator)?;
            if tenant_id_of(&self.store, &org).await?.as_deref() != Some(user.root_org_id.as_str())
            {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[organisation, "organisationId"],
                ));
            }
        }
        let mut email_verified = request.email_verified.unwrap_or(false);
        let mut phone_verified = request.phone_verified.unwrap_or(false);
        let external_ids: Vec<ExternalId> = request
            .external_ids
            .iter()
            .map(|(_, id)| id.clone())
            .collect();
        guard_owned_fields(
            &authority,
            administrator,
            &user.channel,
            &mut email_verified,
            &mut phone_verified,
            &external_ids,
        )?;
        if !administrator {
            request.email_verified = None;
            request.phone_verified = None;
        }
        self.check_framework(&mut request.profile, false).await?;
        self.owners
            .update(
                UserUpdate {
                    request,
                    updated_by: caller.audit_id(),
                },
                on_graduation,
            )
            .await?;
        let mut result = success();
        result.insert("errors".into(), json!([]));
        Ok(result)
    }

    // ==== Identifier free-up ====

    /// `POST /private/user/v1/identifier/freeup`: `{id, identifier: ["email", "phone"]}`. The
    /// values move to the previously used ones and become free for other users (services and
    /// ADMINs only).
    pub async fn free_up(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        authority.require(authority.is_admin())?;
        let id = required_str(body, "id")?;
        let identifiers = opt_str_list(body, "identifier")?
            .filter(|list| !list.is_empty())
            .ok_or_else(|| DomainError::mandatory_missing("identifier"))?;
        let (mut email, mut phone) = (false, false);
        for identifier in &identifiers {
            match identifier.trim() {
                "email" => email = true,
                "phone" => phone = true,
                other => {
                    return Err(DomainError::rule(
                        ErrorCode::invalidValue,
                        &["identifier", other, "email, phone"],
                    ));
                }
            }
        }
        let user = self.load_user(&id).await?;
        if user.is_deleted() {
            return Err(DomainError::rule(ErrorCode::inactiveUser, &[]));
        }
        self.owners
            .free_up(FreeUp {
                user_id: id,
                email,
                phone,
            })
            .await?;
        Ok(success())
    }

    // ==== Block, unblock, delete ====

    pub async fn change_status(
        &self,
        caller: &Caller,
        change: StatusChange,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let user_id = opt_nonblank(body, "userId")?
            .ok_or_else(|| DomainError::mandatory_missing("userId"))?;
        let target = user(&self.store, &user_id)
            .await?
            .ok_or_else(|| DomainError::with_message(ErrorCode::resourceNotFound, "user"))?;
        let authority = Authority::of(caller).await?;
        let root = target.record.root_org_id.as_str();
        let allowed = match change {
            // Sunbird deletion is self-service; administrators may delete too.
            StatusChange::Delete => {
                authority.caller.user_id() == Some(user_id.as_str()) || authority.is_admin()
            }
            StatusChange::Block | StatusChange::Unblock => authority.administers(root),
        };
        authority.require(allowed)?;
        let target_roles = load_roles(&self.store, &user_id).await?;
        authority.require(authority.may_act_on_holder_of(&target_roles))?;
        let action = match change {
            StatusChange::Block => "user.block",
            StatusChange::Unblock => "user.unblock",
            StatusChange::Delete => "user.delete",
        };
        let audit = audit::note(caller, action, &user_id, json!({}));
        self.owners
            .change_status(user_id, change, caller.audit_id(), audit)
            .await?;
        Ok(success())
    }

    // ==== Search ====

    fn rewrite_filter(&self, filter: Filter, version: SearchVersion) -> Filter {
        let field_of = |field: String| -> String {
            match (field.as_str(), version) {
                ("organisations.roles", _) => "roles.role".to_string(),
                ("userType", SearchVersion::V1) => "profileUserTypes.type".to_string(),
                ("userSubType", SearchVersion::V1) => "profileUserTypes.subType".to_string(),
                ("locationIds", SearchVersion::V1) => "profileLocation.id".to_string(),
                _ => field,
            }
        };
        let token = |field: &str, value: &Scalar| -> Option<Scalar> {
            let Scalar::Str(text) = value else {
                return None;
            };
            let (kind, normalised) =
                pii_token_input(field, text, &self.rules.default_country_code)?;
            Some(Scalar::Str(self.vault.token(kind, &normalised)))
        };
        match filter {
            Filter::Term { field, value } => match token(&field, &value) {
                Some(tokenised) => Filter::Term {
                    field: tokenised_field(&field),
                    value: tokenised,
                },
                None => Filter::Term {
                    field: field_of(field),
                    value,
                },
            },
            Filter::Terms { field, values } => {
                if pii_token_input(&field, "", "").is_some() {
                    let values = values
                        .iter()
                        .map(|v| token(&field, v).unwrap_or_else(|| v.clone()))
                        .collect();
                    Filter::Terms {
                        field: tokenised_field(&field),
                        values,
                    }
                } else {
                    Filter::Terms {
                        field: field_of(field),
                        values,
                    }
                }
            }
            Filter::Or(clauses) => Filter::Or(
                clauses
                    .into_iter()
                    .map(|clause| self.rewrite_filter(clause, version))
                    .collect(),
            ),
            Filter::Range {
                field,
                gte,
                gt,
                lte,
                lt,
            } => Filter::Range {
                field: field_of(field),
                gte,
                gt,
                lte,
                lt,
            },
            Filter::Prefix { field, prefix } => Filter::Prefix {
                field: field_of(field),
                prefix,
            },
            Filter::Suffix { field, suffix } => Filter::Suffix {
                field: field_of(field),
                suffix,
            },
            Filter::Exists(field) => Filter::Exists(field_of(field)),
            Filter::NotExists(field) => Filter::NotExists(field_of(field)),
        }
    }

    pub async fn search(
        &self,
        caller: &Caller,
        version: SearchVersion,
        body: &Body,
        query_fields: &[String],
    ) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        let scope = authority.search_scope();
        let mut requested_facets = Vec::new();
        let mut page = search::run(
            &*self.search,
            IndexName::User,
            body,
            &self.rules.search_limits,
            Steps {
                rewrite: |filter| Some(self.rewrite_filter(filter, version)),
                adjust: |query| {
                    query
                        .exclude_fields
                        .extend(view::EXCLUDED_FIELDS.iter().map(|f| f.to_string()));
                    // A facet on a sealed or tokenised field would list ciphertexts or
                    // blind-index tokens: such facets are answered empty, never computed.
                    requested_facets = query.facets.iter().map(|f| f.field.clone()).collect();
                    query.facets.retain(|facet| !is_sealed_field(&facet.field));
                    // Everyone but an ADMIN finds only the users of their own tenants.
                    if let Some(scope) = &scope {
                        query.filters.push(Filter::Terms {
                            field: "rootOrgId".into(),
                            values: scope.iter().cloned().map(Scalar::Str).collect(),
                        });
                    }
                },
                present: |_, hit| {
                    let relation = authority.relation(
                        hit.get("id").and_then(Value::as_str).unwrap_or_default(),
                        hit.get("managedBy").and_then(Value::as_str),
                        hit.get("rootOrgId")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    );
                    let mut view = search_hit_view(&self.vault, &hit, version);
                    restrict_to(relation, &mut view);
                    Value::Object(view)
                },
            },
        )
        .await?;
        // Every requested facet is answered, in order, even when all of them were sealed ones
        // and the engine computed none.
        if !requested_facets.is_empty() {
            let mut computed = page.facets.take().unwrap_or_default().into_iter();
            page.facets = Some(
                requested_facets
                    .into_iter()
                    .map(|name| match is_sealed_field(&name) {
                        true => Facet {
                            name,
                            values: Vec::new(),
                        },
                        false => computed.next().unwrap_or(Facet {
                            name,
                            values: Vec::new(),
                        }),
                    })
                    .collect(),
            );
        }
        // `?fields=orgName`: each hit's organisations are named, as Sunbird's search does.
        if query_fields
            .iter()
            .any(|field| field.eq_ignore_ascii_case("orgName"))
        {
            self.name_organisations(&mut page.content).await?;
        }
        Ok(response(Value::Object(page.into_result())))
    }

    /// Adds `rootOrgName` and `organisations[].orgName` to search hits (one read per
    /// organisation, however many hits name it).
    async fn name_organisations(&self, hits: &mut [Value]) -> DomainResult<()> {
        let mut names: std::collections::HashMap<String, Option<String>> =
            std::collections::HashMap::new();
        for hit in hits.iter() {
            let mut ids: Vec<String> = Vec::new();
            if let Some(root) = hit.get("rootOrgId").and_then(Value::as_str) {
                ids.push(root.to_string());
            }
            for membership in hit
                .get("organisations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(id) = membership.get("organisationId").and_then(Value::as_str) {
                    ids.push(id.to_string());
                }
            }
            for id in ids {
                if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(id) {
                    let name = get_org(&self.store, slot.key())
                        .await?
                        .and_then(|org| org.org_name.clone());
                    slot.insert(name);
                }
            }
        }
        let name_of = |id: Option<&str>| {
            id.and_then(|id| names.get(id).cloned().flatten())
                .map_or(Value::Null, Value::from)
        };
        for hit in hits.iter_mut() {
            let Some(view) = hit.as_object_mut() else {
                continue;
            };
            if view.contains_key("rootOrgId") {
                let name = name_of(view.get("rootOrgId").and_then(Value::as_str));
                view.insert("rootOrgName".into(), name);
            }
            if let Some(Value::Array(memberships)) = view.get_mut("organisations") {
                for membership in memberships.iter_mut().filter_map(Value::as_object_mut) {
                    let name = name_of(membership.get("organisationId").and_then(Value::as_str));
                    membership.insert("orgName".into(), name);
                }
            }
        }
        Ok(())
    }

    // ==== Lookups ====

    /// The owner of a PII value through its blind-index claim.
    async fn owner_of(
        &self,
        kind: ClaimKind,
        token_kind: &str,
        normalised: &str,
    ) -> DomainResult<Option<String>> {
        let token = self.vault.token(token_kind, normalised);
        self.store
            .claim_owner(kind, &token)
            .await
            .map_err(DomainError::from)
    }

    /// Resolves `key`/`value` (email, phone, username/loginId) to a user id.
    async fn user_id_by_key(&self, key: &str, value: &str) -> DomainResult<Option<String>> {
        match key.to_lowercase().as_str() {
            "email" => match Email::parse(value) {
                Some(email) => {
                    self.owner_of(ClaimKind::Email, "email", email.as_str())
                        .await
                }
                None => Ok(None),
            },
            "phone" => match Phone::parse(value, None, &self.rules.default_country_code) {
                Ok(phone) => {
                    self.owner_of(ClaimKind::Phone, "phone", &phone.index_form())
                        .await
                }
                Err(_) => Ok(None),
            },
            "username" | "loginid" => {
                let token = username_token(&self.vault, &value.trim().to_lowercase());
                self.store
                    .claim_owner(ClaimKind::Username, &token)
                    .await
                    .map_err(DomainError::from)
            }
            "id" => Ok(self
                .store
                .get(Table::User, value.trim())
                .await?
                .map(|_| value.trim().to_string())),
            _ => Ok(None),
        }
    }

    /// The user a sign-in name belongs to: an email, a phone number or a username, in any
    /// case (one user, so one failure counter, whatever the spelling).
    pub async fn user_id_by_login(&self, login: &str) -> DomainResult<Option<String>> {
        let login = login.trim();
        if login.is_empty() {
            return Ok(None);
        }
        if login.contains('@')
            && let Some(found) = self.user_id_by_key("email", login).await?
        {
            return Ok(Some(found));
        }
        if login.chars().any(|c| c.is_ascii_digit())
            && let Some(found) = self.user_id_by_key("phone", login).await?
        {
            return Ok(Some(found));
        }
        self.user_id_by_key("username", login).await
    }

    /// What the sign-in tells about a user (userinfo): `None` unless the user exists and is
    /// active. Names as stored, the username and email opened.
    pub async fn sign_in_profile(&self, user_id: &str) -> DomainResult<Option<SignInProfile>> {
        let Some(found) = user(&self.store, user_id).await? else {
            return Ok(None);
        };
        let record = found.record;
        if !record.is_active() {
            return Ok(None);
        }
        let open = |kind: &str, sealed: &Option<String>| {
            sealed
                .as_deref()
                .filter(|value| !value.is_empty())
                .and_then(|value| self.vault.open(user_id, kind, value).ok())
        };
        Ok(Some(SignInProfile {
            user_name: open("userName", &record.user_name),
            email: open("email", &record.email),
            email_verified: record.email_verified,
            first_name: record.first_name.clone().filter(|name| !name.is_empty()),
            last_name: record.last_name.clone().filter(|name| !name.is_empty()),
        }))
    }

    /// `POST /private/user/v1/lookup`: `{key, value, fields?}` to a list of users.
    pub async fn lookup(&self, body: &Body) -> DomainResult<Map<String, Value>> {
        if body.is_empty() {
            return Err(DomainError::rule(ErrorCode::invalidRequestData, &[]));
        }
        let value =
            opt_nonblank(body, "value")?.ok_or_else(|| DomainError::mandatory_missing("value"))?;
        let key =
            opt_nonblank(body, "key")?.ok_or_else(|| DomainError::mandatory_missing("key"))?;
        if !["username", "email", "phone", "id"].contains(&key.as_str()) {
            return Err(DomainError::with_message(
                ErrorCode::invalidValue,
                format!("Invalid key: {key}. Valid values are: [username, email, phone, id]."),
            ));
        }
        let fields = opt_str_list(body, "fields")?.unwrap_or_default();
        let mut users = Vec::new();
        if let Some(id) = self.user_id_by_key(&key, &value).await?
            && let Some(found) = user(&self.store, &id).await?
        {
            let source = found
                .record
                .to_doc()
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut shown = search_hit_view(&self.vault, &source, SearchVersion::V3);
            if !fields.is_empty() {
                shown.retain(|field, _| fields.iter().any(|wanted| wanted == field));
            }
            users.push(Value::Object(shown));
        }
        Ok(response(Value::Array(users)))
    }

    fn validate_key_value(key: &str, value: &str) -> DomainResult<String> {
        if key.trim().is_empty() || value.trim().is_empty() {
            return Err(DomainError::mandatory_missing("key/value"));
        }
        let normalised = match key.to_lowercase().as_str() {
            "email" => "email",
            "phone" => "phone",
            "loginid" => "loginId",
            "username" => "userName",
            _ => {
                return Err(DomainError::with_message(
                    ErrorCode::invalidValue,
                    format!(
                        "Invalid key: {key}. Valid values are: email, phone, loginId, userName."
                    ),
                ));
            }
        };
        // Sunbird formats these two messages without filling the placeholder.
        let unformatted = || DomainError::unfilled(ErrorCode::dataFormatError);
        if normalised == "email" && Email::parse(value).is_none() {
            return Err(unformatted());
        }
        if normalised == "phone" && value.contains('+') {
            return Err(unformatted());
        }
        Ok(normalised.to_string())
    }

    /// `GET /v1/user/exists/:key/:value` (`v2 = false`) and `/v2/...` (`v2 = true`).
    pub async fn exists(
        &self,
        caller: &Caller,
        key: &str,
        value: &str,
        v2: bool,
        captcha: (Option<&str>, bool),
    ) -> DomainResult<Map<String, Value>> {
        // Sunbird checks the captcha of v2 before the key and value.
        if v2 && !self.captcha.passes(captcha.0, captcha.1).await {
            return Err(DomainError::rule(ErrorCode::invalidCaptcha, &[]));
        }
        let key = Self::validate_key_value(key, value)?;
        // Sunbird leaves only the email and phone checks open to anonymous callers.
        if matches!(caller, Caller::Anonymous) && !matches!(key.as_str(), "email" | "phone") {
            return Err(DomainError::unauthorized());
        }
        let found = self.user_id_by_key(&key, value).await?;
        let mut result = Map::new();
        match found {
            Some(id) if v2 => {
                let name = user(&self.store, &id)
                    .await?
                    .ok_or_else(|| DomainError::with_message(ErrorCode::resourceNotFound, "user"))?
                    .record
                    .full_name();
                result.insert("exists".into(), json!(true));
                result.insert("id".into(), json!(id));
                result.insert("name".into(), json!(name));
            }
            Some(_) => {
                result.insert("exists".into(), json!(true));
            }
            None => {
                result.insert("exists".into(), json!(false));
            }
        }
        Ok(result)
    }

    /// `GET /v1|v2/user/get/:idType/:id`: the v5 profile of the user holding that identifier.
    pub async fn get_by_key(
        &self,
        caller: &Caller,
        id_type: &str,
        value: &str,
    ) -> DomainResult<Map<String, Value>> {
        let key = Self::validate_key_value(id_type, value)?;
        if matches!(caller, Caller::Anonymous)
            && !(self.rules.anonymous_profiles && matches!(key.as_str(), "email" | "phone"))
        {
            return Err(DomainError::unauthorized());
        }
        self.profile_by_key(caller, &key, value, &[]).await
    }

    /// `POST /v1/user/getuser`: the v5 profile by login id; `fields` come from the query string,
    /// as Sunbird reads them (`?fields=topic,...`), and shape the profile as on read.
    pub async fn get_by_login_id(
        &self,
        caller: &Caller,
        body: &Body,
        fields: &[String],
    ) -> DomainResult<Map<String, Value>> {
        let login_id = opt_nonblank(body, "loginId")?
            .ok_or_else(|| DomainError::rule(ErrorCode::invalidParameter, &["loginId"]))?;
        if matches!(caller, Caller::Anonymous) && !self.rules.anonymous_profiles {
            return Err(DomainError::unauthorized());
        }
        self.profile_by_key(caller, "loginId", &login_id, fields)
            .await
    }

    /// The v5 profile of the user holding an identifier, as the caller's relation allows (an
    /// anonymous caller gets here only with Sunbird's anonymous lookups switched on, and then
    /// sees what Sunbird shows).
    async fn profile_by_key(
        &self,
        caller: &Caller,
        key: &str,
        value: &str,
        fields: &[String],
    ) -> DomainResult<Map<String, Value>> {
        let not_found = || DomainError::rule(ErrorCode::resourceNotFound, &[value]);
        let id = self
            .user_id_by_key(key, value)
            .await?
            .ok_or_else(not_found)?;
        let user = user(&self.store, &id)
            .await?
            .map(|found| found.record)
            .filter(|user| !user.is_deleted())
            .ok_or_else(not_found)?;
        let mut view = self
            .view_of(&user, ReadVersion::V5, false, false, fields)
            .await?;
        if !matches!(caller, Caller::Anonymous) {
            let authority = Authority::of(caller).await?;
            let relation =
                authority.relation(&user.id, user.managed_by.as_deref(), &user.root_org_id);
            restrict_to(relation, &mut view);
        }
        Ok(response(Value::Object(view)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federated_ids_keep_the_last_segment() {
        assert_eq!(user_id_from_path("f:5a8a3f2b:1234"), "1234");
        assert_eq!(user_id_from_path("abcd"), "abcd");
    }

    #[test]
    fn pii_filters_are_normalised_before_tokenising() {
        assert_eq!(
            pii_token_input("email", " A@B.co ", "91"),
            Some(("email", "a@b.co".to_string()))
        );
        assert_eq!(
            pii_token_input("phone", "98765-43210", "91"),
            Some(("phone", "+919876543210".to_string()))
        );
        assert_eq!(
            pii_token_input("loginId", "X", "91"),
            Some(("userName", "x".to_string()))
        );
        assert_eq!(pii_token_input("firstName", "x", "91"), None);
    }
}
