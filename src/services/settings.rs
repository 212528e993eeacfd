//! System settings (reference §1.17, §8.15): `{id, field, value}` rows with string values.
//!
//! Sunbird serves reads from an in-memory map refreshed every few hours, so a `set` shows up
//! late; here reads go through the store's read-through cache, which every commit invalidates,
//! so a `set` is visible to the next `get` at once.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::org::{CUSTODIAN_ORG_CHANNEL, channel_claim};
use crate::domain::setting::{self, SettingShape};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller};
use crate::services::audit::{self, commit_with_entry};
use crate::services::json::{Body, response, success};
use crate::storage::records::{custodian, get_org};
use crate::storage::{Expect, Store, Table, Transaction};

/// Settings Sunbird's cache always holds, whatever the table says.
const ALWAYS_PRESENT: &[(&str, &str)] = &[("phoneUnique", "true"), ("emailUnique", "true")];

const PAGE: usize = 500;

#[derive(Clone)]
pub struct SettingsService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

fn setting_doc(id: &str, value: &str) -> Value {
    json!({"id": id, "field": id, "value": value})
}

/// A mandatory string of the set request: absent, null or blank is "missing", another type is
/// "should be String" (Sunbird fails on the cast with a 500).
fn required_string(body: &Body, field: &str) -> DomainResult<String> {
    match body.get(field) {
        None | Some(Value::Null) => Err(DomainError::mandatory_missing(field)),
        Some(Value::String(text)) if text.trim().is_empty() => {
            Err(DomainError::mandatory_missing(field))
        }
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(DomainError::data_type(field, "String")),
    }
}

impl SettingsService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> SettingsService {
        SettingsService { store, clock }
    }

    /// GET /v1/system/settings/get/{field}: `{"response": {"id", "field", "value"}}`.
    pub async fn get(&self, field: &str) -> DomainResult<Map<String, Value>> {
        let row = self.store.get(Table::SystemSettings, field).await?;
        if let Some(row) = row {
            return Ok(response(row.doc));
        }
        if let Some((id, value)) = ALWAYS_PRESENT.iter().find(|(id, _)| *id == field) {
            return Ok(response(setting_doc(id, value)));
        }
        // Sunbird throws the template without filling it in, so the placeholder is the message.
        Err(DomainError::unfilled(ErrorCode::resourceNotFound))
    }

    /// GET /v1/system/settings/list: `{"response": [{"id", "field", "value"}, ...]}` in id order.
    pub async fn list(&self) -> DomainResult<Map<String, Value>> {
        let mut settings: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let rows = self
                .store
                .scan(Table::SystemSettings, "", after.as_deref(), PAGE)
                .await?;
            let Some(last) = rows.last().map(|row| row.key.clone()) else {
                break;
            };
            settings.extend(rows.into_iter().map(|row| row.doc));
            after = Some(last);
        }
        for (id, value) in ALWAYS_PRESENT {
            if !settings
                .iter()
                .any(|s| s.get("id").and_then(Value::as_str) == Some(id))
            {
                settings.push(setting_doc(id, value));
            }
        }
        Ok(response(Value::Array(settings)))
    }

    /// POST /v1/system/settings/set: an upsert; `{"response": "SUCCESS", "id": <id>}`.
    ///
    /// Sunbird leaves `set` open at the service level and relies on its gateway; here it needs
    /// a system administrator, since settings steer every tenant (custodian org, TnC, ...).
    pub async fn set(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        authority.require(authority.is_admin())?;
        let id = required_string(body, "id")?;
        let field = required_string(body, "field")?;
        let value = required_string(body, "value")?;
        setting::check_shape(&id, &value)?;
        let mut transaction = Transaction::default();
        transaction.put(
            Table::SystemSettings,
            &id,
            json!({"id": id, "field": field, "value": value}),
            Expect::Any,
        );
        match setting::shape_of(&id) {
            SettingShape::TenantId => {
                // The custodian moves with its channel, in the same commit.
                let org = get_org(&self.store, value.trim())
                    .await?
                    .filter(|org| org.is_tenant() && org.is_active())
                    .ok_or_else(|| setting::not_a_tenant(&id, &value))?;
                transaction.put(
                    Table::SystemSettings,
                    CUSTODIAN_ORG_CHANNEL,
                    setting_doc(CUSTODIAN_ORG_CHANNEL, &org.channel),
                    Expect::Any,
                );
            }
            SettingShape::CustodianChannel => {
                let (_, channel) = custodian(&self.store).await?;
                if channel_claim(&channel) != channel_claim(&value) {
                    return Err(setting::not_a_tenant(&id, &value));
                }
            }
            _ => {}
        }
        let note = audit::note(caller, "setting.set", &id, json!({"field": field}));
        let at = sunbird_timestamp(self.clock.now());
        commit_with_entry(&*self.store, transaction, &note, &at).await?;
        tracing::info!(setting.id = %id, "system setting set");
        let mut result = success();
        result.insert("id".into(), json!(id));
        Ok(result)
    }
}
