//! User consent (reference §8.13): a user's consent, per consumer organisation and object, to
//! share their data, `user_consent` rows keyed `userId␟consumerId␟objectId`. Update is an
//! upsert (created once, then updated) with an expiry of `[users] consent_expiry_days` from
//! now; read answers the consent of one user, consumer and object, DELETED ones left out.
//!
//! Sunbird keeps no state for an expired consent; here an ACTIVE consent past its expiry reads
//! as `EXPIRED`, so a consumer comparing the status with ACTIVE stops at once.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::consent::{ACTIVE, ConsentRow, DELETED, STATUSES};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, opt_nonblank, required_str};
use crate::storage::records::{custodian, get_org, user};
use crate::storage::retry::read_modify_write;
use crate::storage::{Expect, Store, Table, Transaction, compose_key};

/// What an ACTIVE consent past its expiry reads as.
const EXPIRED: &str = "EXPIRED";

#[derive(Clone)]
pub struct ConsentService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    expiry_days: i64,
}

/// The `consent` object of a request.
fn consent_of(body: &Body) -> DomainResult<Map<String, Value>> {
    match body.get("consent") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(DomainError::data_type("consent", "Map")),
    }
}

impl ConsentService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, expiry_days: i64) -> Self {
        ConsentService {
            store,
            clock,
            expiry_days,
        }
    }

    /// The user must exist; the user, their managing parent and other services may change
    /// their consent (an administrator may not give it for them).
    async fn authorise_update(&self, caller: &Caller, user_id: &str) -> DomainResult<()> {
        let authority = Authority::of(caller).await?;
        let found = user(&self.store, user_id).await?;
        let managed_by = found.as_ref().and_then(|f| f.record.managed_by.clone());
        let service = matches!(caller, Caller::Internal);
        authority
            .require(service || authority.is_self_or_manager(user_id, managed_by.as_deref()))?;
        match found {
            Some(found) if !found.record.is_deleted() => Ok(()),
            Some(_) => Err(DomainError::rule(ErrorCode::userAccountlocked, &[])),
            None => Err(DomainError::not_found("user")),
        }
    }

    /// `POST /v1/user/consent/update`: `{consent: {userId, consumerId, objectId, objectType,
    /// consumerType?, status}}` → `{consent: {userId}, message}`.
    pub async fn update(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let consent = consent_of(body)?;
        let user_id = required_str(&consent, "userId")?;
        let consumer_id = required_str(&consent, "consumerId")?;
        let object_type = required_str(&consent, "objectType")?;
        let object_id = required_str(&consent, "objectId")?;
        let status = required_str(&consent, "status")?.to_uppercase();
        if !STATUSES.contains(&status.as_str()) {
            return Err(DomainError::rule(ErrorCode::invalidConsentStatus, &[]));
        }
        let consumer_type =
            opt_nonblank(&consent, "consumerType")?.unwrap_or_else(|| "ORGANISATION".into());
        self.authorise_update(caller, &user_id).await?;
        // The consumer is an organisation other than the custodian.
        let (custodian_id, _) = custodian(&self.store).await?;
        let invalid_consumer =
            || DomainError::rule(ErrorCode::invalidParameter, &["organisationId"]);
        if consumer_id.eq_ignore_ascii_case(&custodian_id) {
            return Err(invalid_consumer());
        }
        if get_org(&self.store, &consumer_id).await?.is_none() {
            return Err(invalid_consumer());
        }
        let key = compose_key(&[&user_id, &consumer_id, &object_id]);
        let now = self.clock.now();
        let stamp = sunbird_timestamp(now);
        let expiry = sunbird_timestamp(now + chrono::Duration::days(self.expiry_days));
        read_modify_write(
            &*self.store,
            |_| DomainError::internal(anyhow::anyhow!("consents claim nothing")),
            || async {
                let current = self.store.get(Table::UserConsent, &key).await?;
                let (created_on, expect) = match &current {
                    Some(row) => (
                        row.doc.get("createdOn").cloned().unwrap_or(json!(stamp)),
                        Expect::Version(row.version),
                    ),
                    None => (json!(stamp), Expect::Absent),
                };
                let categories = current
                    .as_ref()
                    .and_then(|row| row.doc.get("categories").cloned())
                    .unwrap_or(json!([]));
                let mut transaction = Transaction::default();
                let row = ConsentRow {
                    user_id: &user_id,
                    consumer_id: &consumer_id,
                    object_id: &object_id,
                    consumer_type: &consumer_type,
                    object_type: &object_type,
                    status: &status,
                    expiry: json!(expiry),
                    categories,
                    created_on,
                    now: &stamp,
                };
                transaction.put(Table::UserConsent, &key, row.to_doc(), expect);
                Ok((transaction, ()))
            },
        )
        .await?;
        let mut result = Map::new();
        result.insert("consent".into(), json!({"userId": user_id}));
        result.insert(
            "message".into(),
            json!("User Consent updated successfully."),
        );
        Ok(result)
    }

    /// `POST /v1|v2/user/consent/read`: `{consent: {filters: {userId, consumerId, objectId}}}` →
    /// `{consents: [...]}`; none (or only DELETED ones) is 404. The user, their parent, the
    /// consumer organisation's administrators, the user's tenant administrators, an ADMIN and
    /// services may read it.
    pub async fn read(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let consent = consent_of(body)?;
        let filters = match consent.get("filters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(DomainError::data_type("filters", "Map")),
        };
        let user_id = required_str(&filters, "userId")?;
        let consumer_id = required_str(&filters, "consumerId")?;
        let object_id = required_str(&filters, "objectId")?;
        let authority = Authority::of(caller).await?;
        let found = user(&self.store, &user_id).await?;
        let (managed_by, root) = match &found {
            Some(found) => (
                found.record.managed_by.clone(),
                found.record.root_org_id.clone(),
            ),
            None => (None, String::new()),
        };
        authority.require(
            authority.is_self_or_manager(&user_id, managed_by.as_deref())
                || authority.administers(&consumer_id)
                || (!root.is_empty() && authority.administers(&root)),
        )?;
        let key = compose_key(&[&user_id, &consumer_id, &object_id]);
        let now = self.clock.now();
        // Compared as instants: the stored text carries its offset, and instances in other
        // time zones (or a DST change) would break a comparison of the strings.
        let lapsed = |expiry: &str| {
            chrono::DateTime::parse_from_str(expiry, "%Y-%m-%d %H:%M:%S:%3f%z")
                .is_ok_and(|at| at < now)
        };
        let consents: Vec<Value> = self
            .store
            .get(Table::UserConsent, &key)
            .await?
            .map(|row| row.doc)
            .filter(|doc| doc.get("status").and_then(Value::as_str) != Some(DELETED))
            .map(|mut doc| {
                let expired = doc
                    .get("expiry")
                    .and_then(Value::as_str)
                    .is_some_and(lapsed);
                if expired && doc.get("status").and_then(Value::as_str) == Some(ACTIVE) {
                    doc["status"] = json!(EXPIRED);
                }
                doc
            })
            .into_iter()
            .collect();
        if consents.is_empty() {
            return Err(DomainError::not_found("user consent"));
        }
        let mut result = Map::new();
        result.insert("consents".into(), Value::Array(consents));
        Ok(result)
    }
}
