//! Roles (reference §1.6, §3.4, §8.8): the role catalogue, a user's roles, and assignment v1
//! (the complete set for one organisation) and v2 (scopes added or removed per role).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::RwLock;

use crate::actors::user_owner::UserOwners;
use crate::domain::role::ORG_ADMIN;
use crate::domain::user::{AssignRoles, RoleAssignment, ScopeChange, user_id_from_path};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller};
use crate::services::audit;
use crate::services::json::{Body, opt_nonblank, success};
use crate::storage::records::{check_roles_exist, get_org, load_roles, tenant_id_of};
use crate::storage::{ClaimKind, Store, Table, key_prefix};

/// How long the role catalogue is served from memory (roles change only by migration).
const CATALOGUE_TTL: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct RoleService {
    store: Arc<dyn Store>,
    owners: UserOwners,
    single_organisation: bool,
    catalogue: Arc<RwLock<Option<(Instant, Value)>>>,
}

fn literal_missing() -> DomainError {
    // Sunbird's v2 validator throws the template without filling it.
    DomainError::unfilled(ErrorCode::mandatoryParamsMissing)
}

fn roles_list(body: &Body) -> DomainResult<&Vec<Value>> {
    match body.get("roles") {
        None | Some(Value::Null) => Err(DomainError::mandatory_missing("roles")),
        Some(Value::Array(items)) if items.is_empty() => Err(DomainError::rule(
            ErrorCode::errorMandatoryParamsEmpty,
            &["roles"],
        )),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(DomainError::data_type("roles", "List")),
    }
}

impl RoleService {
    pub fn new(store: Arc<dyn Store>, owners: UserOwners, single_organisation: bool) -> Self {
        RoleService {
            store,
            owners,
            single_organisation,
            catalogue: Arc::new(RwLock::new(None)),
        }
    }

    /// `GET /v1/role/read`: `{roles: [{id, name, actionGroups: [{id, name, actions}]}]}`.
    pub async fn catalogue(&self) -> DomainResult<Map<String, Value>> {
        if let Some((at, roles)) = self.catalogue.read().await.as_ref()
            && at.elapsed() < CATALOGUE_TTL
        {
            let mut result = Map::new();
            result.insert("roles".into(), roles.clone());
            return Ok(result);
        }
        let roles = self.build_catalogue().await?;
        *self.catalogue.write().await = Some((Instant::now(), roles.clone()));
        let mut result = Map::new();
        result.insert("roles".into(), roles);
        Ok(result)
    }

    async fn build_catalogue(&self) -> DomainResult<Value> {
        let rows = self.store.scan(Table::Role, "", None, 10_000).await?;
        let mut roles = Vec::with_capacity(rows.len());
        for row in rows {
            let groups = row
                .doc
                .get("roleGroupId")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut action_groups = Vec::new();
            for group in groups.iter().filter_map(Value::as_str) {
                if let Some(group_row) = self.store.get(Table::RoleGroup, group).await? {
                    action_groups.push(json!({
                        "id": group_row.doc.get("id"),
                        "name": group_row.doc.get("name"),
                        "actions": [],
                    }));
                }
            }
            roles.push(json!({
                "id": row.doc.get("id"),
                "name": row.doc.get("name"),
                "actionGroups": action_groups,
            }));
        }
        Ok(Value::Array(roles))
    }

    /// `GET /v1/user/role/read/:uid`: `{roles: [{role, scope}], name}`.
    pub async fn user_roles(&self, raw_id: &str) -> DomainResult<Map<String, Value>> {
        let user_id = user_id_from_path(raw_id);
        let rows = self
            .store
            .scan(Table::UserRoles, &key_prefix(&user_id), None, 1000)
            .await?;
        let roles: Vec<Value> = rows
            .iter()
            .map(|row| {
                json!({
                    "role": row.doc.get("role"),
                    "scope": row.doc.get("scope").cloned().unwrap_or_else(|| json!([])),
                })
            })
            .collect();
        let mut result = Map::new();
        let has_roles = !roles.is_empty();
        result.insert("roles".into(), Value::Array(roles));
        if has_roles && let Some(user) = self.store.get(Table::User, &user_id).await? {
            let first = user
                .doc
                .get("firstName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let last = user
                .doc
                .get("lastName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            result.insert("name".into(), json!(format!("{first} {last}").trim()));
        }
        Ok(result)
    }

    /// The caller may assign roles in every organisation of the request: ADMIN, or ORG_ADMIN of
    /// the organisation or of its tenant. Only an ADMIN may hand out ADMIN.
    async fn authorise(
        &self,
        caller: &Caller,
        user_id: &str,
        organisations: &[String],
        roles: &[String],
    ) -> DomainResult<()> {
        let authority = Authority::of(caller).await?;
        if authority.is_admin() {
            return Ok(());
        }
        // v1 replaces the user's whole set in the organisation, so it may remove a role it
        // does not name: a user holding a privileged role is off limits altogether.
        let target = load_roles(&self.store, user_id).await?;
        authority.require(authority.may_grant(roles) && authority.may_act_on_holder_of(&target))?;
        for organisation in organisations {
            let org = get_org(&self.store, organisation).await?;
            let tenant = match &org {
                Some(org) => tenant_id_of(&self.store, org).await?,
                None => None,
            };
            let allowed = authority.roles.has_in(ORG_ADMIN, organisation)
                || tenant
                    .as_deref()
                    .is_some_and(|t| authority.roles.has_in(ORG_ADMIN, t));
            authority.require(allowed)?;
        }
        Ok(())
    }

    async fn check_organisations(&self, organisations: &[String]) -> DomainResult<()> {
        for organisation in organisations {
            if get_org(&self.store, organisation).await?.is_none() {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[organisation, "organisationId"],
                ));
            }
        }
        Ok(())
    }

    async fn check_user(&self, user_id: &str) -> DomainResult<()> {
        self.store
            .get(Table::User, user_id)
            .await?
            .map(|_| ())
            .ok_or_else(|| DomainError::not_found("user"))
    }

    /// `POST /v1/user/assign/role`.
    pub async fn assign_v1(
        &self,
        caller: &Caller,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let user_id = opt_nonblank(body, "userId")?
            .ok_or_else(|| DomainError::mandatory_missing("userId"))?;
        let roles: Vec<String> = roles_list(body)?
            .iter()
            .map(|role| {
                role.as_str()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| DomainError::rule(ErrorCode::invalidParameter, &["role"]))
            })
            .collect::<DomainResult<_>>()?;
        let organisation_id = match opt_nonblank(body, "organisationId")? {
            Some(id) => id,
            None => {
                let external_id = opt_nonblank(body, "externalId")?;
                let provider = opt_nonblank(body, "provider")?;
                match (external_id, provider) {
                    (Some(external_id), Some(provider)) => self
                        .store
                        .claim_owner(
                            ClaimKind::OrgExternalId,
                            &crate::storage::records::external_id_claim(&provider, &external_id),
                        )
                        .await?
                        .ok_or_else(|| {
                            DomainError::rule(
                                ErrorCode::invalidParameterValue,
                                &[&external_id, "externalId"],
                            )
                        })?,
                    _ => {
                        return Err(DomainError::mandatory_missing(
                            "organisationId or externalId and provider",
                        ));
                    }
                }
            }
        };
        check_roles_exist(&self.store, &roles).await?;
        self.check_user(&user_id).await?;
        self.check_organisations(std::slice::from_ref(&organisation_id))
            .await?;
        self.authorise(
            caller,
            &user_id,
            std::slice::from_ref(&organisation_id),
            &roles,
        )
        .await?;
        let audit = audit::note(
            caller,
            "role.assign",
            &user_id,
            json!({"organisationId": organisation_id, "roles": roles}),
        );
        self.owners
            .assign_roles(
                AssignRoles {
                    user_id,
                    assignment: RoleAssignment::ReplaceForOrganisation {
                        organisation_id,
                        roles,
                    },
                    by: caller.audit_id(),
                    single_organisation: self.single_organisation,
                },
                audit,
            )
            .await?;
        Ok(success())
    }

    /// `POST /v2/user/assign/role`.
    pub async fn assign_v2(
        &self,
        caller: &Caller,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let user_id = opt_nonblank(body, "userId")?
            .ok_or_else(|| DomainError::mandatory_missing("userId"))?;
        let mut changes = Vec::new();
        for item in roles_list(body)? {
            let role = item
                .get("role")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(literal_missing)?;
            let operation = item
                .get("operation")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(literal_missing)?;
            let scope = item
                .get("scope")
                .and_then(Value::as_array)
                .filter(|s| !s.is_empty())
                .ok_or_else(literal_missing)?;
            let mut organisations = Vec::new();
            for entry in scope {
                match entry.get("organisationId") {
                    None | Some(Value::Null) => {
                        return Err(DomainError::rule(
                            ErrorCode::invalidParameterValue,
                            &["null", "scope.organisationId"],
                        ));
                    }
                    Some(Value::String(id)) if id.trim().is_empty() => {
                        return Err(DomainError::rule(
                            ErrorCode::invalidParameterValue,
                            &[id, "scope.organisationId"],
                        ));
                    }
                    Some(Value::String(id)) => {
                        if !organisations.contains(id) {
                            organisations.push(id.clone());
                        }
                    }
                    Some(_) => {
                        return Err(DomainError::data_type("scope.organisationId", "String"));
                    }
                }
            }
            let add = match operation {
                "add" => true,
                "remove" => false,
                other => {
                    return Err(DomainError::rule(
                        ErrorCode::invalidValue,
                        &["operation", other, "add, remove"],
                    ));
                }
            };
            changes.push(ScopeChange {
                role: role.to_string(),
                add,
                organisations,
            });
        }
        let added: Vec<String> = changes
            .iter()
            .filter(|c| c.add)
            .map(|c| c.role.clone())
            .collect();
        // Unknown roles are refused only when added, as Sunbird does.
        check_roles_exist(&self.store, &added).await?;
        self.check_user(&user_id).await?;
        let mut organisations: Vec<String> = changes
            .iter()
            .flat_map(|c| c.organisations.iter().cloned())
            .collect();
        organisations.sort();
        organisations.dedup();
        self.check_organisations(&organisations).await?;
        let all_roles: Vec<String> = changes.iter().map(|c| c.role.clone()).collect();
        self.authorise(caller, &user_id, &organisations, &all_roles)
            .await?;
        let audited: Vec<Value> = changes
            .iter()
            .map(|c| json!({"role": c.role, "add": c.add, "organisations": c.organisations}))
            .collect();
        let audit = audit::note(caller, "role.assign", &user_id, json!({"changes": audited}));
        self.owners
            .assign_roles(
                AssignRoles {
                    user_id,
                    assignment: RoleAssignment::Scopes(changes),
                    by: caller.audit_id(),
                    single_organisation: self.single_organisation,
                },
                audit,
            )
            .await?;
        Ok(success())
    }
}
