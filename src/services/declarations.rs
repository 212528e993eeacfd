//! Self-declarations (reference §8.13): a user's declared persona information per organisation
//! and persona, `user_declarations` rows keyed `userId␟orgId␟persona`. The `info` map is PII (a
//! declared email, phone, school...): it is sealed as one value bound to the row's user, never
//! stored or indexed in clear, and opened only for the user's read (`fields=declarations`).
//!
//! Status flow: a user (or their parent) submits (`SUBMITTED`); the organisation's
//! administrators, an ADMIN or another service validate it (`VALIDATED`), reject it
//! (`REJECTED`) or mark an error (`ERROR` with an `errorType`). A user cannot validate their
//! own declaration.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::clock::{Clock, sunbird_timestamp};
use crate::crypto::PiiVault;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, opt_nonblank};
use crate::storage::records::{custodian, get_org, tenant_id_of, user};
use crate::storage::retry::read_modify_write;
use crate::storage::{Expect, Row, Store, Table, Transaction, compose_key, key_prefix};

pub const SEAL_KIND: &str = "declarations.info";
const DEFAULT_PERSONA: &str = "default";
const SUBMITTED: &str = "SUBMITTED";
/// Statuses only a validator may set.
const VALIDATOR_STATUSES: [&str; 3] = ["VALIDATED", "REJECTED", "ERROR"];
/// Sunbird's error types of a declaration in ERROR.
const ERROR_TYPES: [&str; 8] = [
    "ERROR-ID",
    "ERROR-NAME",
    "ERROR-STATE",
    "ERROR-DISTRICT",
    "ERROR-EMAIL",
    "ERROR-PHONE",
    "ERROR-SCHOOL ORG NAME",
    "ERROR-SCHOOL ORG ID",
];
/// Most declarations one user has (every organisation and persona).
const MAX_DECLARATIONS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Add,
    Edit,
    Remove,
}

/// One entry of a request, validated.
struct Declaration {
    operation: Operation,
    user_id: String,
    org_id: String,
    persona: String,
    info: Option<Map<String, Value>>,
    status: Option<String>,
    error_type: Option<String>,
    /// Allowed only as the organisation's validator: the status (and error type) of the
    /// existing row change, nothing else.
    status_only: bool,
}

#[derive(Clone)]
pub struct DeclarationService {
    store: Arc<dyn Store>,
    vault: PiiVault,
    clock: Arc<dyn Clock>,
}

/// Sunbird answers every request-shape error of this route as `INVALID_PARAMETER_VALUE`
/// with the message of the check that failed.
fn shape_error(message: &str) -> DomainError {
    DomainError::with_message(ErrorCode::invalidParameterValue, message)
}

fn parse(body: &Body) -> DomainResult<Vec<Declaration>> {
    let items = match body.get("declarations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(DomainError::data_type("declarations", "List")),
    };
    if items.is_empty() {
        return Err(shape_error("Mandatory parameter declarations is missing."));
    }
    let mut parsed = Vec::with_capacity(items.len());
    for item in &items {
        let Some(entry) = item.as_object() else {
            return Err(DomainError::data_type("declarations", "List"));
        };
        let user_id = opt_nonblank(entry, "userId")?;
        let org_id = opt_nonblank(entry, "orgId")?;
        let (Some(user_id), Some(org_id)) = (user_id, org_id) else {
            return Err(shape_error(
                "Mandatory parameter userId or orgId is missing.",
            ));
        };
        let persona = opt_nonblank(entry, "persona")?
            .map(|p| p.to_lowercase())
            .unwrap_or_else(|| DEFAULT_PERSONA.into());
        let operation = match opt_nonblank(entry, "operation")?
            .map(|o| o.to_lowercase())
            .as_deref()
        {
            Some("add") => Operation::Add,
            Some("edit") => Operation::Edit,
            Some("remove") => Operation::Remove,
            _ => return Err(DomainError::rule(ErrorCode::invalidOperationName, &[])),
        };
        let info = match entry.get("info") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map.clone()),
            Some(_) => return Err(DomainError::data_type("info", "Map")),
        };
        let status = opt_nonblank(entry, "status")?.map(|s| s.to_uppercase());
        if let Some(status) = &status
            && status != SUBMITTED
            && !VALIDATOR_STATUSES.contains(&status.as_str())
        {
            return Err(DomainError::rule(
                ErrorCode::invalidValue,
                &["status", status, "SUBMITTED, VALIDATED, REJECTED, ERROR"],
            ));
        }
        let error_type = match opt_nonblank(entry, "errorType")? {
            Some(kind) => Some(kind),
            None => opt_nonblank(entry, "errtype")?,
        }
        .map(|kind| kind.to_uppercase());
        if let Some(kind) = &error_type
            && !ERROR_TYPES.contains(&kind.as_str())
        {
            return Err(DomainError::rule(
                ErrorCode::invalidValue,
                &["errorType", kind, &ERROR_TYPES.join(", ")],
            ));
        }
        parsed.push(Declaration {
            operation,
            user_id,
            org_id,
            persona,
            info,
            status,
            error_type,
            status_only: false,
        });
    }
    Ok(parsed)
}

impl DeclarationService {
    pub fn new(store: Arc<dyn Store>, vault: PiiVault, clock: Arc<dyn Clock>) -> Self {
        DeclarationService {
            store,
            vault,
            clock,
        }
    }

    /// `PATCH /v1/user/declarations` → `{response: SUCCESS}`; every entry of the request is
    /// applied, in order, in one transaction.
    pub async fn update(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let mut declarations = parse(body)?;
        let authority = Authority::of(caller).await?;
        let (custodian_id, _) = custodian(&self.store).await?;
        let mut seen = std::collections::HashSet::new();
        for declaration in declarations.iter_mut() {
            if !seen.insert((
                &declaration.user_id,
                &declaration.org_id,
                &declaration.persona,
            )) {
                return Err(shape_error(&format!(
                    "Duplicate declaration for userId {}, orgId {} and persona {}.",
                    declaration.user_id, declaration.org_id, declaration.persona
                )));
            }
            if declaration.org_id == custodian_id {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameter,
                    &["organisationid"],
                ));
            }
            let Some(org) = get_org(&self.store, &declaration.org_id).await? else {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[&declaration.org_id, "orgId"],
                ));
            };
            let found = user(&self.store, &declaration.user_id).await?;
            let managed_by = found.as_ref().and_then(|f| f.record.managed_by.clone());
            let tenant = tenant_id_of(&self.store, &org).await?;
            let own = authority.is_self_or_manager(&declaration.user_id, managed_by.as_deref());
            // Services and ADMINs may do anything; the user (or their parent) submits, edits
            // and removes, without validating; an administrator of the organisation (or its
            // tenant) only sets the status of a declaration made to it, never their own.
            let trusted = matches!(caller, Caller::Internal) || authority.is_admin();
            let administrator = authority.administers(&declaration.org_id)
                || tenant.is_some_and(|tenant| authority.administers(&tenant));
            let sets_validation = declaration
                .status
                .as_deref()
                .is_some_and(|s| VALIDATOR_STATUSES.contains(&s));
            let validates = declaration.operation == Operation::Edit
                && declaration.info.as_ref().is_none_or(Map::is_empty)
                && authority.caller.user_id() != Some(declaration.user_id.as_str());
            let allowed = trusted
                || if sets_validation {
                    administrator && validates
                } else {
                    own
                };
            authority.require(allowed)?;
            declaration.status_only = !trusted && sets_validation;
            match found {
                Some(found) if !found.record.is_deleted() => {}
                Some(_) => return Err(DomainError::rule(ErrorCode::inactiveUser, &[])),
                None => return Err(DomainError::not_found("user")),
            }
        }
        let by = caller.audit_id();
        read_modify_write(
            &*self.store,
            |_| DomainError::internal(anyhow::anyhow!("declarations claim nothing")),
            || async { Ok((self.build(&declarations, by.as_deref()).await?, ())) },
        )
        .await?;
        let mut result = Map::new();
        result.insert("response".into(), json!("SUCCESS"));
        Ok(result)
    }

    async fn rows_of(&self, user_id: &str) -> DomainResult<Vec<Row>> {
        Ok(self
            .store
            .scan(
                Table::UserDeclarations,
                &key_prefix(user_id),
                None,
                MAX_DECLARATIONS,
            )
            .await?)
    }

    /// The transaction of a request: each user's declarations read once into a working set,
    /// every entry applied to it in order, then one write per row that changed (at the version
    /// read), and a check that each user is still the one read (a delete meanwhile refuses it).
    async fn build(
        &self,
        declarations: &[Declaration],
        by: Option<&str>,
    ) -> DomainResult<Transaction> {
        let mut transaction = Transaction::default();
        // key -> (version read, current document); `None` document: no row.
        let mut rows: std::collections::BTreeMap<String, (Option<u64>, Option<Value>)> =
            std::collections::BTreeMap::new();
        let mut users: Vec<&str> = Vec::new();
        for declaration in declarations {
            if users.contains(&declaration.user_id.as_str()) {
                continue;
            }
            users.push(&declaration.user_id);
            let Some(found) = user(&self.store, &declaration.user_id).await? else {
                return Err(DomainError::not_found("user"));
            };
            if found.record.is_deleted() {
                return Err(DomainError::rule(ErrorCode::inactiveUser, &[]));
            }
            transaction.check(
                Table::User,
                &declaration.user_id,
                Expect::Version(found.version),
            );
            for row in self.rows_of(&declaration.user_id).await? {
                rows.insert(row.key, (Some(row.version), Some(row.doc)));
            }
        }
        let originals: std::collections::BTreeMap<String, Option<Value>> = rows
            .iter()
            .map(|(key, (_, doc))| (key.clone(), doc.clone()))
            .collect();
        for declaration in declarations {
            self.apply(&mut rows, declaration, by)?;
        }
        for (key, (version, doc)) in rows {
            let expect = match version {
                Some(version) => Expect::Version(version),
                None => Expect::Absent,
            };
            let original = originals.get(&key).cloned().flatten();
            match doc {
                Some(doc) if Some(&doc) != original.as_ref() => {
                    transaction.put(Table::UserDeclarations, key, doc, expect);
                }
                None if original.is_some() => {
                    transaction.delete(Table::UserDeclarations, key, expect);
                }
                _ => {}
            }
        }
        Ok(transaction)
    }

    /// One entry applied to the working set of its user's rows.
    fn apply(
        &self,
        rows: &mut std::collections::BTreeMap<String, (Option<u64>, Option<Value>)>,
        declaration: &Declaration,
        by: Option<&str>,
    ) -> DomainResult<()> {
        let key = compose_key(&[
            &declaration.user_id,
            &declaration.org_id,
            &declaration.persona,
        ]);
        let now = sunbird_timestamp(self.clock.now());
        let current = rows.get(&key).and_then(|(_, doc)| doc.clone());
        let set = |rows: &mut std::collections::BTreeMap<String, (Option<u64>, Option<Value>)>,
                   key: &str,
                   doc: Option<Value>| {
            rows.entry(key.to_string()).or_insert((None, None)).1 = doc;
        };
        if declaration.status_only {
            let Some(mut doc) = current else {
                return Err(DomainError::not_found("declaration"));
            };
            doc["status"] = json!(declaration.status);
            doc["errorType"] = json!(declaration.error_type);
            doc["updatedBy"] = json!(by);
            doc["updatedOn"] = json!(now);
            set(rows, &key, Some(doc));
            return Ok(());
        }
        match declaration.operation {
            Operation::Remove => set(rows, &key, None),
            Operation::Add => {
                let info = declaration.info.clone().unwrap_or_default();
                let doc = json!({
                    "userId": declaration.user_id,
                    "orgId": declaration.org_id,
                    "persona": declaration.persona,
                    "info": self.seal(&declaration.user_id, &info)?,
                    "status": declaration.status.clone().unwrap_or_else(|| SUBMITTED.into()),
                    "errorType": declaration.error_type,
                    "createdBy": by,
                    "createdOn": now,
                    "updatedBy": null,
                    "updatedOn": null,
                });
                set(rows, &key, Some(doc));
            }
            Operation::Edit => {
                // Sunbird keeps one declaration per user: the edited one replaces the user's
                // other rows (same organisation under another persona first, else another
                // organisation under the same persona, else every other row).
                let prefix = key_prefix(&declaration.user_id);
                let others: Vec<(String, Value)> = rows
                    .iter()
                    .filter(|(other, (_, doc))| {
                        other.starts_with(&prefix) && **other != key && doc.is_some()
                    })
                    .filter_map(|(other, (_, doc))| doc.clone().map(|doc| (other.clone(), doc)))
                    .collect();
                let field = |doc: &Value, name: &str| {
                    doc.get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let same_org: Vec<&(String, Value)> = others
                    .iter()
                    .filter(|(_, doc)| field(doc, "orgId") == declaration.org_id)
                    .collect();
                let same_persona: Vec<&(String, Value)> = others
                    .iter()
                    .filter(|(_, doc)| field(doc, "persona") == declaration.persona)
                    .collect();
                let superseded: Vec<&(String, Value)> = if !same_org.is_empty() {
                    same_org
                } else if !same_persona.is_empty() {
                    same_persona
                } else {
                    others.iter().collect()
                };
                let mut doc = match &current {
                    Some(doc) => doc.clone(),
                    // The replaced declaration carries over what the edit does not give.
                    None => match superseded.first() {
                        Some((_, doc)) => doc.clone(),
                        None => json!({"createdBy": by, "createdOn": now}),
                    },
                };
                let superseded: Vec<String> =
                    superseded.iter().map(|(other, _)| other.clone()).collect();
                for other in superseded {
                    set(rows, &other, None);
                }
                doc["userId"] = json!(declaration.user_id);
                doc["orgId"] = json!(declaration.org_id);
                doc["persona"] = json!(declaration.persona);
                if let Some(info) = declaration.info.as_ref().filter(|info| !info.is_empty()) {
                    doc["info"] = json!(self.seal(&declaration.user_id, info)?);
                } else if doc.get("info").is_none_or(Value::is_null) {
                    doc["info"] = json!(self.seal(&declaration.user_id, &Map::new())?);
                }
                doc["status"] = json!(
                    declaration
                        .status
                        .clone()
                        .unwrap_or_else(|| SUBMITTED.into())
                );
                doc["errorType"] = json!(declaration.error_type);
                doc["updatedBy"] = json!(by);
                doc["updatedOn"] = json!(now);
                set(rows, &key, Some(doc));
            }
        }
        Ok(())
    }

    fn seal(&self, user_id: &str, info: &Map<String, Value>) -> DomainResult<String> {
        let plain = Value::Object(info.clone()).to_string();
        self.vault
            .seal(user_id, SEAL_KIND, &plain)
            .map_err(|error| DomainError::internal(anyhow::anyhow!(error)))
    }
}

/// A user's declarations as their read shows them (`fields=declarations`): `[{status,
/// errorType, orgId, persona, info}]`, the info opened.
pub async fn declaration_views(
    store: &Arc<dyn Store>,
    vault: &PiiVault,
    user_id: &str,
) -> DomainResult<Vec<Value>> {
    let rows = store
        .scan(
            Table::UserDeclarations,
            &key_prefix(user_id),
            None,
            MAX_DECLARATIONS,
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let doc = row.doc;
            let info = doc
                .get("info")
                .and_then(Value::as_str)
                .and_then(|sealed| vault.open(user_id, SEAL_KIND, sealed).ok())
                .and_then(|plain| serde_json::from_str::<Value>(&plain).ok())
                .unwrap_or_else(|| json!({}));
            let field = |name: &str| doc.get(name).cloned().unwrap_or(Value::Null);
            json!({
                "status": field("status"),
                "errorType": field("errorType"),
                "orgId": field("orgId"),
                "persona": field("persona"),
                "info": info,
            })
        })
        .collect())
}
