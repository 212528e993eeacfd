//! Tenant preferences v2 (reference §1.15, §8.15): JSON objects stored per `(orgId, key)` in
//! `tenant_preference_v2`, with the `dataSecurityPolicy` rules and the `default` organisation
//! as the fallback of the two keys Sunbird reads that way.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::clock::Clock;
use crate::domain::data_security::{validate_against_default, validate_policy};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, response, success};
use crate::storage::records::get_org;
use crate::storage::retry::{no_claims, read_modify_write};
use crate::storage::{Expect, Row, Store, StoreError, Table, Transaction, compose_key};

/// The organisation id holding the system-wide preferences.
pub const DEFAULT_ORG: &str = "default";
pub const DATA_SECURITY_POLICY: &str = "dataSecurityPolicy";
pub const USER_PRIVATE_FIELDS: &str = "userPrivateFields";

/// Attempts of one update when concurrent updates keep moving the row.

#[derive(Clone)]
pub struct PreferenceService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// `Requested <key> and <orgId> resource not found`, Sunbird's wording for every preference
/// lookup that went the wrong way (also, with code `errorParamExists`, for "already exists").
fn preference_message(key: &str, org_id: &str) -> String {
    ErrorCode::resourceNotFound.format(&[&format!("{key} and {org_id}")])
}

fn preference_not_found(key: &str, org_id: &str) -> DomainError {
    DomainError::with_message(ErrorCode::resourceNotFound, preference_message(key, org_id))
}

/// Sunbird answers a duplicate create, and a missing special key on read, with the code of
/// `errorParamExists` and the "not found" message; clients match on both, so both are kept.
fn param_exists(key: &str, org_id: &str) -> DomainError {
    DomainError::with_message(ErrorCode::errorParamExists, preference_message(key, org_id))
}

/// A mandatory string field of the request, named `request.<field>` in messages as Sunbird's
/// `TenantPreferenceValidator` does. A null counts as missing (Sunbird fails with a 500).
fn required_text(body: &Body, field: &str) -> DomainResult<String> {
    let name = format!("request.{field}");
    match body.get(field) {
        None | Some(Value::Null) => Err(DomainError::mandatory_missing(&name)),
        Some(Value::String(text)) if text.trim().is_empty() => {
            Err(DomainError::mandatory_missing(&name))
        }
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(DomainError::data_type(&name, "java.lang.String")),
    }
}

/// The `data` object; `non_empty` for create, where an empty object counts as missing.
fn required_data(body: &Body, non_empty: bool) -> DomainResult<Map<String, Value>> {
    let name = "request.data";
    match body.get("data") {
        None | Some(Value::Null) => Err(DomainError::mandatory_missing(name)),
        Some(Value::Object(data)) if non_empty && data.is_empty() => {
            Err(DomainError::mandatory_missing(name))
        }
        Some(Value::Object(data)) => Ok(data.clone()),
        Some(_) => Err(DomainError::data_type(name, "java.util.Map")),
    }
}

fn is_default_org(org_id: &str) -> bool {
    org_id.eq_ignore_ascii_case(DEFAULT_ORG)
}

/// `all`: the installation-wide preferences Sunbird keeps (its clients write and read them
/// under this org id, which names no organisation).
pub const ALL_ORGS: &str = "all";

/// The org ids that name no organisation: written by ADMIN only, never looked up.
fn is_installation_wide(org_id: &str) -> bool {
    is_default_org(org_id) || org_id.eq_ignore_ascii_case(ALL_ORGS)
}

fn preference_key(org_id: &str, key: &str) -> String {
    compose_key(&[org_id, key])
}

/// `orgId`, `key` (and `data`) of a request, validated in Sunbird's order.
struct PreferenceRequest {
    org_id: String,
    key: String,
}

impl PreferenceRequest {
    fn parse(body: &Body) -> DomainResult<PreferenceRequest> {
        Ok(PreferenceRequest {
            org_id: required_text(body, "orgId")?,
            key: required_text(body, "key")?,
        })
    }

    fn is_data_security_policy(&self) -> bool {
        self.key.eq_ignore_ascii_case(DATA_SECURITY_POLICY)
    }
}

impl PreferenceService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> PreferenceService {
        PreferenceService { store, clock }
    }

    async fn get_row(&self, org_id: &str, key: &str) -> DomainResult<Option<Row>> {
        self.store
            .get(Table::TenantPreference, &preference_key(org_id, key))
            .await
            .map_err(DomainError::from)
    }

    /// Sunbird leaves preference writes to its gateway; here they need ADMIN, or ORG_ADMIN of
    /// the organisation (or of its tenant). The system-wide `default` and `all` preferences need
    /// ADMIN, and any other organisation must exist.
    async fn authorise_write(&self, caller: &Caller, org_id: &str) -> DomainResult<()> {
        let authority = Authority::of(caller).await?;
        if is_installation_wide(org_id) {
            return authority.require(authority.is_admin());
        }
        let org = get_org(&self.store, org_id).await?;
        let root_org = org
            .as_ref()
            .map(|org| org.root_org_id.as_str())
            .filter(|root| !root.is_empty())
            .unwrap_or(org_id);
        authority.require(authority.administers(org_id) || authority.administers(root_org))?;
        if org.is_none() {
            return Err(DomainError::not_found("organisation"));
        }
        Ok(())
    }

    /// The `dataSecurityPolicy` rules: the policy on its own, then, for a tenant, against the
    /// `default` organisation's policy, which must exist.
    async fn check_policy(
        &self,
        request: &PreferenceRequest,
        data: &Map<String, Value>,
    ) -> DomainResult<()> {
        if !request.is_data_security_policy() {
            return Ok(());
        }
        validate_policy(data)?;
        if is_default_org(&request.org_id) {
            return Ok(());
        }
        let Some(default) = self.get_row(DEFAULT_ORG, &request.key).await? else {
            return Err(preference_not_found(&request.key, &request.org_id));
        };
        let default_data = default
            .doc
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        validate_against_default(data, &default_data)
    }

    fn now_millis(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// POST /v2/org/preferences/create: `{"orgId", "key", "response": "SUCCESS"}`.
    pub async fn create(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let request = PreferenceRequest::parse(body)?;
        let data = required_data(body, true)?;
        self.authorise_write(caller, &request.org_id).await?;
        if self.get_row(&request.org_id, &request.key).await?.is_some() {
            return Err(param_exists(&request.key, &request.org_id));
        }
        self.check_policy(&request, &data).await?;
        let doc = json!({
            "orgId": request.org_id,
            "key": request.key,
            "data": data,
            "createdBy": caller.audit_id(),
            "createdOn": self.now_millis(),
            "updatedBy": null,
            "updatedOn": null,
        });
        let mut transaction = Transaction::default();
        transaction.put(
            Table::TenantPreference,
            preference_key(&request.org_id, &request.key),
            doc,
            Expect::Absent,
        );
        match self.store.commit(transaction).await {
            Ok(_) => {}
            // Another create of the same pair won the race.
            Err(StoreError::Conflict { .. }) => {
                return Err(param_exists(&request.key, &request.org_id));
            }
            Err(other) => return Err(DomainError::from(other)),
        }
        tracing::info!(org.id = %request.org_id, preference.key = %request.key, "tenant preference created");
        let mut result = Map::new();
        result.insert("orgId".into(), json!(request.org_id));
        result.insert("key".into(), json!(request.key));
        result.extend(success());
        Ok(result)
    }

    /// PATCH /v2/org/preferences/update: replaces `data`; `{"response": "SUCCESS"}`.
    pub async fn update(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let request = PreferenceRequest::parse(body)?;
        let data = required_data(body, false)?;
        self.authorise_write(caller, &request.org_id).await?;
        let (request, data) = (&request, &data);
        let attempt = || async move {
            let Some(current) = self.get_row(&request.org_id, &request.key).await? else {
                return Err(preference_not_found(&request.key, &request.org_id));
            };
            self.check_policy(request, data).await?;
            let mut doc = current.doc.as_object().cloned().unwrap_or_default();
            doc.insert("data".into(), Value::Object(data.clone()));
            doc.insert("updatedBy".into(), json!(caller.audit_id()));
            doc.insert("updatedOn".into(), json!(self.now_millis()));
            let mut transaction = Transaction::default();
            transaction.put(
                Table::TenantPreference,
                current.key.clone(),
                Value::Object(doc),
                Expect::Version(current.version),
            );
            Ok((transaction, ()))
        };
        read_modify_write(&*self.store, no_claims, attempt).await?;
        tracing::info!(org.id = %request.org_id, preference.key = %request.key, "tenant preference updated");
        Ok(success())
    }

    /// POST /v2/org/preferences/read (and its private twin): `{"response": <row>}`.
    pub async fn read(&self, body: &Body) -> DomainResult<Map<String, Value>> {
        let request = PreferenceRequest::parse(body)?;
        let special = request.is_data_security_policy()
            || request.key.eq_ignore_ascii_case(USER_PRIVATE_FIELDS);
        let mut row = self.get_row(&request.org_id, &request.key).await?;
        if special && row.is_none() && !is_default_org(&request.org_id) {
            row = self.get_row(DEFAULT_ORG, &request.key).await?;
        }
        match row {
            Some(row) => Ok(response(row.doc)),
            None if special => Err(param_exists(&request.key, &request.org_id)),
            None => Err(preference_not_found(&request.key, &request.org_id)),
        }
    }
}
