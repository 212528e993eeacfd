//! Organisation use cases (reference §1.12, §8.7): create, update, status, read, search, key
//! assignment and the encryption-key upload. Validation follows Sunbird's order and messages;
//! writes go to the owning actor, reads to the store and searches to the index.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::actors::org_owner::{NewOrg, OrgChanges, OrgOwners};
use crate::domain::Record;
use crate::domain::contact::Email;
use crate::domain::org::{OrgRecord, OrgType, org_type_names, org_type_value};
use crate::domain::rules::new_timestamp_id;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::search::documents::organisation_document;
use crate::search::dsl::SearchLimits;
use crate::search::{Filter, IndexName, Scalar, SearchIndex};
use crate::services::access::{Authority, Caller};
use crate::services::audit;
use crate::services::json::{Body, doc_str, opt_bool, opt_nonblank, present, response, success};
use crate::services::notifications::NotificationService;
use crate::services::search::{self, Steps};
use crate::storage::records::{get_org, org_types, tenant_by_channel, tenant_id_of};
use crate::storage::{ClaimKind, Store, Table, Transaction};

/// Keys Sunbird adds as null to an organisation read (`Util.getOrgDefaultValue`).
const ORG_DEFAULT_NULLS: [&str; 16] = [
    "dateTime",
    "preferredLanguage",
    "approvedBy",
    "addressId",
    "approvedDate",
    "communityId",
    "isApproved",
    "locationId",
    "noOfMembers",
    "orgCode",
    "theme",
    "thumbnail",
    "isDefault",
    "parentOrgId",
    "orgTypeId",
    "orgType",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgSearchVersion {
    V1,
    V2,
}

#[derive(Clone)]
pub struct OrgService {
    store: Arc<dyn Store>,
    search: Arc<dyn SearchIndex>,
    owners: OrgOwners,
    limits: SearchLimits,
    /// Queues new tenants' channel registrations with the content service, when one is
    /// configured.
    channels: Option<NotificationService>,
}

fn invalid_request() -> DomainError {
    DomainError::rule(ErrorCode::invalidRequestData, &[])
}

/// Sunbird's organisation actor tells the client the exceptions of an update and a status
/// update itself (`sender().tell(e)`), so they carry the bare key (`0028`), not
/// `UOS_ORGUPD0028`. Refusals of the caller (this service's own checks) stay wrapped.
fn told_by_actor(error: DomainError) -> DomainError {
    match &error {
        DomainError::Rule(rule)
            if !matches!(
                rule.code,
                ErrorCode::errorForbidden | ErrorCode::unAuthorized | ErrorCode::dataTypeError
            ) =>
        {
            error.bare()
        }
        _ => error,
    }
}

/// A list field that must be a list when present.
fn opt_list<'a>(body: &'a Body, field: &str) -> DomainResult<Option<&'a Vec<Value>>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(DomainError::data_type(field, "List")),
    }
}

/// The location checks shared by create and update (controller order).
fn check_location_fields(body: &Body) -> DomainResult<()> {
    let ids = opt_list(body, "locationIds")?;
    let codes = opt_list(body, "locationCode")?;
    if ids.is_some() && codes.is_some() {
        return Err(DomainError::rule(
            ErrorCode::errorAttributeConflict,
            &["locationCode", "locationIds"],
        ));
    }
    Ok(())
}

fn check_email(body: &Body) -> DomainResult<Option<String>> {
    match opt_nonblank(body, "email")? {
        Some(raw) => Email::parse(&raw)
            .map(|email| Some(email.as_str().to_string()))
            .ok_or_else(|| DomainError::format_error("email")),
        None => Ok(None),
    }
}

fn type_value(types: &[OrgType], field: &str, raw: &Value) -> DomainResult<i64> {
    let given = match raw {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // A number that is one of the configured values is accepted as is.
    if let Some(number) = raw.as_i64()
        && types.iter().any(|t| t.value == number)
    {
        return Ok(number);
    }
    org_type_value(types, &given).ok_or_else(|| {
        DomainError::rule(
            ErrorCode::invalidValue,
            &[field, &given, &org_type_names(types)],
        )
    })
}

impl OrgService {
    pub fn new(
        store: Arc<dyn Store>,
        search: Arc<dyn SearchIndex>,
        owners: OrgOwners,
        limits: SearchLimits,
    ) -> Self {
        OrgService {
            store,
            search,
            owners,
            limits,
            channels: None,
        }
    }

    /// Registers every new tenant's channel with the content service, through `notifications`'
    /// outbox.
    pub fn with_channel_registration(mut self, notifications: NotificationService) -> Self {
        self.channels = Some(notifications);
        self
    }

    /// The channel registration of a new tenant, queued in `transaction`: Sunbird's body
    /// (`name` the channel, `code` the organisation id, the description, and the default
    /// license and framework when the create names them).
    fn queue_channel_registration(
        &self,
        transaction: &mut Transaction,
        id: &str,
        channel: &str,
        body: &Body,
    ) -> DomainResult<()> {
        let Some(notifications) = &self.channels else {
            return Ok(());
        };
        let mut registration = Map::new();
        registration.insert("name".into(), json!(channel));
        registration.insert(
            "description".into(),
            body.get("description").cloned().unwrap_or(Value::Null),
        );
        registration.insert("code".into(), json!(id));
        for (field, key) in [
            ("license", "defaultLicense"),
            ("defaultFramework", "defaultFramework"),
        ] {
            if let Some(value) = opt_nonblank(body, field)? {
                registration.insert(key.into(), json!(value));
            }
        }
        notifications.queue_call(
            transaction,
            "channel-registration",
            crate::content::CHANNEL_CREATE_PATH,
            &json!({"request": {"channel": registration}}),
        )?;
        Ok(())
    }

    // ==== Locations of an organisation ====

    async fn location_by_id(&self, id: &str) -> DomainResult<Option<Value>> {
        Ok(self
            .store
            .get(Table::Location, id)
            .await?
            .map(|row| row.doc))
    }

    async fn location_by_code(&self, code: &str) -> DomainResult<Option<Value>> {
        let owner = self
            .store
            .claim_owner(ClaimKind::LocationCode, &code.trim().to_lowercase())
            .await?;
        match owner {
            Some(id) => self.location_by_id(&id).await,
            None => Ok(None),
        }
    }

    /// `orgLocation` (`[{id}|{code}]`), `locationIds` or `locationCode` resolved to the stored
    /// `[{id, type}]` of every location and its ancestors; `None` when none was given.
    async fn resolve_locations(&self, body: &Body) -> DomainResult<Option<Value>> {
        let mut by_id: Vec<String> = Vec::new();
        let mut by_code: Vec<String> = Vec::new();
        if let Some(items) = opt_list(body, "orgLocation")? {
            for item in items {
                if let Some(id) = item.get("id").and_then(Value::as_str) {
                    by_id.push(id.to_string());
                } else if let Some(code) = item.get("code").and_then(Value::as_str) {
                    by_code.push(code.to_string());
                }
            }
        }
        let text_list = |items: &Vec<Value>| -> Vec<String> {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        if let Some(items) = opt_list(body, "locationIds")? {
            by_id.extend(text_list(items));
        }
        if let Some(items) = opt_list(body, "locationCode")? {
            by_code.extend(text_list(items));
        }
        if by_id.is_empty() && by_code.is_empty() {
            return Ok(None);
        }
        let mut requested = Vec::new();
        let mut missing_ids = Vec::new();
        for id in &by_id {
            match self.location_by_id(id).await? {
                Some(location) => requested.push(location),
                None => missing_ids.push(id.clone()),
            }
        }
        if !missing_ids.is_empty() {
            return Err(DomainError::rule(
                ErrorCode::invalidParameterValue,
                &[&format!("[{}]", missing_ids.join(", ")), "locationIds"],
            ));
        }
        let mut missing_codes = Vec::new();
        for code in &by_code {
            match self.location_by_code(code).await? {
                Some(location) => requested.push(location),
                None => missing_codes.push(code.clone()),
            }
        }
        if !missing_codes.is_empty() {
            return Err(DomainError::rule(
                ErrorCode::invalidParameterValue,
                &[&format!("[{}]", missing_codes.join(", ")), "locationCode"],
            ));
        }
        // Expand to ancestors; two different locations of one type conflict.
        let mut chosen: Vec<Value> = Vec::new();
        for location in requested {
            let mut current = Some(location);
            let mut hops = 0;
            while let Some(location) = current.take() {
                hops += 1;
                let kind = doc_str(&location, "type").unwrap_or_default().to_string();
                let id = doc_str(&location, "id").unwrap_or_default().to_string();
                if let Some(existing) = chosen
                    .iter()
                    .find(|c| doc_str(c, "type") == Some(kind.as_str()))
                {
                    if doc_str(existing, "id") != Some(id.as_str()) {
                        let first = doc_str(existing, "code").unwrap_or_default().to_string();
                        let second = doc_str(&location, "code").unwrap_or_default().to_string();
                        return Err(DomainError::rule(
                            ErrorCode::conflictingOrgLocations,
                            &[&first, &second, &kind],
                        ));
                    }
                } else {
                    chosen.push(location.clone());
                }
                if hops > 16 {
                    break;
                }
                if let Some(parent) = doc_str(&location, "parentId") {
                    current = self.location_by_id(parent).await?;
                }
            }
        }
        Ok(Some(Value::Array(
            chosen
                .iter()
                .map(|l| json!({"id": l.get("id"), "type": l.get("type")}))
                .collect(),
        )))
    }

    // ==== Create ====

    pub async fn create(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        self.create_with(caller, body, new_timestamp_id(), Transaction::default())
            .await
    }

    /// A create of the organisation `id` that commits `also` with it, or not at all (a bulk
    /// row's done mark).
    pub async fn create_with(
        &self,
        caller: &Caller,
        body: &Body,
        id: String,
        mut also: Transaction,
    ) -> DomainResult<Map<String, Value>> {
        if !present(body, "organisationType")
            || body
                .get("organisationType")
                .and_then(Value::as_str)
                .is_some_and(|s| s.trim().is_empty())
        {
            return Err(DomainError::mandatory_missing("organisationType"));
        }
        let org_name = opt_nonblank(body, "orgName")?
            .ok_or_else(|| DomainError::mandatory_missing("orgName"))?;
        let tenant = opt_bool(body, "isTenant")?
            .ok_or_else(|| DomainError::mandatory_missing("isTenant"))?;
        let channel = opt_nonblank(body, "channel")?;
        if tenant && channel.is_none() {
            return Err(DomainError::rule(
                ErrorCode::dependentParameterMissing,
                &["channel", "isTenant"],
            ));
        }
        if tenant
            && let Some(Value::String(license)) = body.get("license")
            && license.trim().is_empty()
        {
            return Err(DomainError::rule(
                ErrorCode::invalidParameterValue,
                &[license, "license"],
            ));
        }
        check_location_fields(body)?;
        let email = check_email(body)?;
        let types = org_types(&self.store).await?;
        let org_type = type_value(&types, "organisationType", &body["organisationType"])?;
        let sub_type = match body.get("organisationSubType") {
            Some(raw) if !raw.is_null() => Some(type_value(&types, "organisationType", raw)?),
            _ => None,
        };
        let channel = channel.ok_or_else(|| DomainError::mandatory_missing("channel"))?;

        let authority = Authority::of(caller).await?;
        if tenant {
            authority.require(authority.is_admin())?;
        } else {
            let root = tenant_by_channel(&self.store, &channel)
                .await?
                .ok_or_else(|| DomainError::rule(ErrorCode::invalidParameter, &["channel"]))?;
            if !root.is_active() {
                return Err(DomainError::rule(
                    ErrorCode::errorInactiveOrg,
                    &["channel", &channel],
                ));
            }
            authority.require(authority.administers(&root.id))?;
        }
        let org_location = self.resolve_locations(body).await?;

        let mut fields = Map::new();
        fields.insert("orgName".into(), json!(org_name));
        fields.insert("organisationType".into(), json!(org_type));
        if let Some(sub_type) = sub_type {
            fields.insert("organisationSubType".into(), json!(sub_type));
        }
        for key in ["description", "contactDetail", "homeUrl", "imgUrl"] {
            if let Some(value) = body.get(key).filter(|v| !v.is_null()) {
                fields.insert(key.to_string(), value.clone());
            }
        }
        if let Some(email) = email {
            fields.insert("email".into(), json!(email));
        }
        fields.insert(
            "orgLocation".into(),
            org_location.unwrap_or_else(|| json!([])),
        );
        fields.insert(
            "isSSOEnabled".into(),
            json!(tenant && opt_bool(body, "isSSOEnabled")?.unwrap_or(false)),
        );
        let external_id = opt_nonblank(body, "externalId")?.map(|id| id.to_lowercase());
        if tenant {
            self.queue_channel_registration(&mut also, &id, &channel, body)?;
        }
        let id = self
            .owners
            .create(NewOrg {
                id,
                fields,
                channel,
                is_tenant: tenant,
                external_id,
                created_by: caller.audit_id(),
                also,
            })
            .await?;
        let mut result = success();
        result.insert("organisationId".into(), json!(id));
        Ok(result)
    }

    // ==== Update and status ====

    /// Loads an organisation for a change and checks the caller administers its tenant.
    async fn load_for_change(&self, caller: &Caller, id: &str) -> DomainResult<OrgRecord> {
        let org = get_org(&self.store, id)
            .await?
            .ok_or_else(invalid_request)?;
        let authority = Authority::of(caller).await?;
        let tenant = tenant_id_of(&self.store, &org).await?;
        let allowed = authority.is_admin()
            || tenant.as_deref().is_some_and(|t| authority.administers(t))
            || authority.administers(id);
        authority.require(allowed)?;
        Ok(org)
    }

    pub async fn update(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let id = opt_nonblank(body, "organisationId")?
            .ok_or_else(|| DomainError::mandatory_missing("organisationId"))?;
        if let Some(root) = body.get("rootOrgId")
            && root.as_str().is_some_and(|s| s.trim().is_empty())
        {
            // Sunbird formats this message with String.format, leaving the placeholders.
            return Err(DomainError::unfilled(ErrorCode::invalidParameterValue));
        }
        if present(body, "status") {
            return Err(DomainError::rule(
                ErrorCode::invalidRequestParameter,
                &["status"],
            ));
        }
        let channel = opt_nonblank(body, "channel")?;
        if opt_bool(body, "isTenant")? == Some(true) && channel.is_none() {
            return Err(DomainError::rule(
                ErrorCode::dependentParameterMissing,
                &["channel", "isTenant"],
            ));
        }
        check_location_fields(body)?;
        self.apply_update(caller, body, id, channel)
            .await
            .map_err(told_by_actor)
    }

    /// The part of an update Sunbird's organisation actor runs after the controller's checks.
    async fn apply_update(
        &self,
        caller: &Caller,
        body: &Body,
        id: String,
        channel: Option<String>,
    ) -> DomainResult<Map<String, Value>> {
        let org = self.load_for_change(caller, &id).await?;
        let email = check_email(body)?;
        let types = org_types(&self.store).await?;
        let mut fields = Map::new();
        if let Some(raw) = body.get("organisationType").filter(|v| !v.is_null()) {
            fields.insert(
                "organisationType".into(),
                json!(type_value(&types, "organisationType", raw)?),
            );
        }
        if let Some(raw) = body.get("organisationSubType").filter(|v| !v.is_null()) {
            fields.insert(
                "organisationSubType".into(),
                json!(type_value(&types, "organisationType", raw)?),
            );
        }
        if let Some(location) = self.resolve_locations(body).await? {
            fields.insert("orgLocation".into(), location);
        }
        if let Some(name) = opt_nonblank(body, "orgName")? {
            fields.insert("orgName".into(), json!(name));
        }
        for key in ["description", "homeUrl", "imgUrl"] {
            if let Some(value) = body.get(key) {
                fields.insert(key.to_string(), value.clone());
            }
        }
        if let Some(email) = email {
            fields.insert("email".into(), json!(email));
        }
        if org.is_tenant()
            && let Some(sso) = opt_bool(body, "isSSOEnabled")?
        {
            fields.insert("isSSOEnabled".into(), json!(sso));
        }
        // Moving an organisation to another channel moves it to another tenant: a tenant's
        // administrator has no right over the tenant it lands in, so only an ADMIN may.
        if let Some(new_channel) = &channel
            && !org.channel.eq_ignore_ascii_case(new_channel)
        {
            let authority = Authority::of(caller).await?;
            authority.require(authority.is_admin())?;
        }
        // A sub-organisation may only move to the channel of an existing tenant.
        if let Some(new_channel) = &channel
            && !org.is_tenant()
            && !org.channel.eq_ignore_ascii_case(new_channel)
            && tenant_by_channel(&self.store, new_channel).await?.is_none()
        {
            return Err(DomainError::rule(
                ErrorCode::errorDuplicateEntry,
                &[new_channel, "channel"],
            ));
        }
        let external_id = match body.get("externalId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(Some(s.trim().to_lowercase())),
            Some(_) => return Err(DomainError::data_type("externalId", "String")),
        };
        self.owners
            .update(OrgChanges {
                id: id.clone(),
                fields,
                channel,
                external_id,
                updated_by: caller.audit_id(),
            })
            .await?;
        let mut result = success();
        result.insert("organisationId".into(), json!(id));
        Ok(result)
    }

    pub async fn update_status(
        &self,
        caller: &Caller,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let id = opt_nonblank(body, "organisationId")?
            .ok_or_else(|| DomainError::mandatory_missing("organisationId"))?;
        let status = body
            .get("status")
            .and_then(Value::as_i64)
            .ok_or_else(invalid_request)?;
        self.load_for_change(caller, &id)
            .await
            .map_err(told_by_actor)?;
        let audit = audit::note(caller, "org.status", &id, json!({"status": status}));
        self.owners
            .set_status(id.clone(), status, caller.audit_id(), audit)
            .await
            .map_err(told_by_actor)?;
        let mut result = success();
        result.insert("organisationId".into(), json!(id));
        Ok(result)
    }

    // ==== Read and search ====

    fn add_type_flags(types: &[OrgType], view: &mut Map<String, Value>) {
        if let Some(value) = view.get("organisationType").and_then(Value::as_i64) {
            let school = org_type_value(types, "school");
            view.insert("isSchool".into(), json!(school == Some(value)));
        }
    }

    pub async fn read(&self, body: &Body) -> DomainResult<Map<String, Value>> {
        let id = opt_nonblank(body, "organisationId")?
            .ok_or_else(|| DomainError::mandatory_missing("organisationId"))?;
        let org = get_org(&self.store, &id)
            .await?
            .ok_or_else(|| DomainError::not_found("organisation"))?;
        let types = org_types(&self.store).await?;
        let mut view = organisation_document(org.to_doc());
        view.remove("contactDetail");
        if !view.get("orgLocation").is_some_and(Value::is_array) {
            view.insert("orgLocation".into(), json!([]));
        }
        Self::add_type_flags(&types, &mut view);
        for key in ORG_DEFAULT_NULLS {
            view.entry(key.to_string()).or_insert(Value::Null);
        }
        Ok(response(Value::Object(view)))
    }

    fn rewrite_filter(
        filter: Filter,
        version: OrgSearchVersion,
        school: Option<i64>,
    ) -> Option<Filter> {
        match filter {
            Filter::Term { field, value } if field == "isSchool" => match (value, school) {
                (Scalar::Bool(true), Some(school)) => Some(Filter::Term {
                    field: "organisationType".into(),
                    value: Scalar::Int(school),
                }),
                _ => None,
            },
            Filter::Term { field, value }
                if field == "isRootOrg" && version == OrgSearchVersion::V1 =>
            {
                Some(Filter::Term {
                    field: "isTenant".into(),
                    value,
                })
            }
            Filter::Or(clauses) => Some(Filter::Or(
                clauses
                    .into_iter()
                    .filter_map(|clause| Self::rewrite_filter(clause, version, school))
                    .collect(),
            )),
            other => Some(other),
        }
    }

    pub async fn search(
        &self,
        version: OrgSearchVersion,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let types = org_types(&self.store).await?;
        let school = org_type_value(&types, "school");
        let page = search::run(
            &*self.search,
            IndexName::Organisation,
            body,
            &self.limits,
            Steps {
                rewrite: |filter| Self::rewrite_filter(filter, version, school),
                adjust: |_| {},
                present: |query, org| Self::present_hit(&types, version, &query.fields, org),
            },
        )
        .await?;
        Ok(response(Value::Object(page.into_result())))
    }

    /// One organisation search hit as the version shows it.
    fn present_hit(
        types: &[OrgType],
        version: OrgSearchVersion,
        fields: &[String],
        mut org: Map<String, Value>,
    ) -> Value {
        if (fields.is_empty() || fields.iter().any(|f| f == "hashTagId"))
            && let Some(id) = org.get("id").cloned()
        {
            org.insert("hashTagId".into(), id);
        }
        Self::add_type_flags(types, &mut org);
        match version {
            OrgSearchVersion::V1 => {
                for key in ORG_DEFAULT_NULLS {
                    if fields.is_empty() || fields.iter().any(|f| f == key) {
                        org.entry(key.to_string()).or_insert(Value::Null);
                    }
                }
                if let Some(tenant) = org.get("isTenant").cloned() {
                    org.insert("isRootOrg".into(), tenant);
                }
            }
            OrgSearchVersion::V2 => {
                for key in ORG_DEFAULT_NULLS.iter().chain(["locationIds"].iter()) {
                    org.remove(*key);
                }
            }
        }
        Value::Object(org)
    }

    // ==== Keys ====

    fn key_list(body: &Body, field: &str) -> DomainResult<Vec<Value>> {
        match body.get(field) {
            None | Some(Value::Null) => Err(DomainError::mandatory_missing(field)),
            Some(Value::Array(items)) if items.is_empty() => Err(DomainError::rule(
                ErrorCode::errorMandatoryParamsEmpty,
                &[field],
            )),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(_) => Err(DomainError::data_type(field, "List")),
        }
    }

    pub async fn assign_keys(
        &self,
        caller: &Caller,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let id = opt_nonblank(body, "id")?.ok_or_else(|| DomainError::mandatory_missing("id"))?;
        let sign_keys = Self::key_list(body, "signKeys")?;
        let enc_keys = Self::key_list(body, "encKeys")?;
        // The original leaves this route to its gateway; keys are a system administrator's job.
        let authority = Authority::of(caller).await?;
        authority.require(authority.is_admin())?;
        let audit = audit::note(caller, "org.keys", &id, json!({}));
        self.owners
            .assign_keys(id, sign_keys, enc_keys, caller.audit_id(), audit)
            .await?;
        Ok(success())
    }

    /// The multipart upload of an organisation's public encryption key.
    pub async fn add_encryption_key(
        &self,
        caller: &Caller,
        fields: &Map<String, Value>,
        file: Option<(String, Vec<u8>)>,
    ) -> DomainResult<Map<String, Value>> {
        let Some((file_name, bytes)) = file else {
            return Err(invalid_request());
        };
        let id = opt_nonblank(fields, "organisationId")?
            .ok_or_else(|| DomainError::mandatory_missing("organisationId"))?;
        let extension = file_name
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_lowercase());
        if extension.as_deref() != Some("pem") {
            return Err(DomainError::rule(ErrorCode::invalidFileExtension, &["pem"]));
        }
        let pem = String::from_utf8(bytes).map_err(|_| invalid_request())?;
        if !is_rsa_public_key(&pem) {
            return Err(invalid_request());
        }
        let org = get_org(&self.store, &id)
            .await?
            .ok_or_else(|| DomainError::rule(ErrorCode::rootOrgAssociationError, &[&id]))?;
        let authority = Authority::of(caller).await?;
        let tenant = tenant_id_of(&self.store, &org).await?;
        authority.require(
            authority.is_admin() || tenant.as_deref().is_some_and(|t| authority.administers(t)),
        )?;
        let safe_name: String = file_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .take(100)
            .collect();
        let audit = audit::note(
            caller,
            "org.encryption_key",
            &id,
            json!({"file": safe_name}),
        );
        self.owners
            .set_encryption_key(id, safe_name, pem, caller.audit_id(), audit)
            .await?;
        Ok(success())
    }
}

/// True when `pem` holds an RSA public key (SPKI or PKCS#1).
fn is_rsa_public_key(pem: &str) -> bool {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    rsa::RsaPublicKey::from_public_key_pem(pem.trim()).is_ok()
        || rsa::RsaPublicKey::from_pkcs1_pem(pem.trim()).is_ok()
}

/// The ids of a list of organisations that exist.
pub async fn existing_orgs(
    store: &Arc<dyn Store>,
    ids: &[String],
) -> DomainResult<HashSet<String>> {
    let mut found = HashSet::new();
    for id in ids {
        if get_org(store, id).await?.is_some() {
            found.insert(id.clone());
        }
    }
    Ok(found)
}
