//! Ownership transfer (reference §1.18, Sunbird release 8, `POST /v1/user/ownership/transfer`):
//! an organisation's administrator hands a user's content and assets to another user of the
//! same tenant. This service keeps no assets: it checks the request as Sunbird does, records
//! the transfer in the audit trail, and emits one `user.ownership.transfer` domain event per
//! object (one with no asset information when none is named) in the same commit, for the
//! content services that own the assets (Sunbird sends the same `edata` as a Kafka job).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::role::{ADMIN, ORG_ADMIN};
use crate::domain::user::UserRecord;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller};
use crate::services::audit::note;
use crate::services::json::{Body, opt_nonblank};
use crate::storage::audit::commit_with_entry;
use crate::storage::records::{get_org, load_roles, tenant_id_of, user};
use crate::storage::{ChangeEvent, Store, Topic, Transaction};

pub const OWNERSHIP_TRANSFER_EVENT: &str = "user.ownership.transfer";

#[derive(Clone)]
pub struct OwnershipService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// Sunbird answers every malformed transfer request `invalidRequestData` with its own text.
fn bad(message: String) -> DomainError {
    DomainError::with_message(ErrorCode::invalidRequestData, message)
}

/// One of `actionBy`, `fromUser`, `toUser`: the object, its user id and the stored user.
struct Party {
    node: Map<String, Value>,
    id: String,
    record: UserRecord,
    version: u64,
}

impl OwnershipService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        OwnershipService { store, clock }
    }

    /// A party of the transfer; `fromUser` may be a deleted user (handing over a leaver's
    /// assets is the common case), the others must be live.
    async fn party(&self, body: &Body, key: &str) -> DomainResult<Party> {
        let Some(Value::Object(node)) = body.get(key) else {
            return Err(bad(format!("{key} key is not present in the data.")));
        };
        let missing = || bad(format!("given user id under {key} is not present or blank"));
        let id = opt_nonblank(node, "userId")?.ok_or_else(missing)?;
        let found = user(&self.store, &id)
            .await?
            .filter(|found| key == "fromUser" || !found.record.is_deleted())
            .ok_or_else(missing)?;
        Ok(Party {
            node: node.clone(),
            id,
            record: found.record,
            version: found.version,
        })
    }

    /// The role names of a user node within `organisation`: plain names, or Sunbird's
    /// `{role, scope: [{organisationId}]}` objects scoped to it.
    fn roles(key: &str, node: &Map<String, Value>, organisation: &str) -> DomainResult<Vec<Value>> {
        let roles = match node.get("roles") {
            None | Some(Value::Null) => {
                return Err(bad(format!("Roles key is not present for {key}")));
            }
            Some(Value::Array(roles)) => roles,
            Some(_) => return Err(DomainError::data_type("roles", "List")),
        };
        if roles.is_empty() {
            return Err(bad(format!("Roles are empty in {key} details.")));
        }
        Ok(roles
            .iter()
            .filter_map(|role| match role {
                Value::String(name) => Some(json!(name)),
                Value::Object(entry) => {
                    let scoped =
                        entry
                            .get("scope")
                            .and_then(Value::as_array)
                            .is_some_and(|scope| {
                                scope.iter().any(|s| {
                                    s.get("organisationId").and_then(Value::as_str)
                                        == Some(organisation)
                                })
                            });
                    scoped.then(|| entry.get("role").cloned()).flatten()
                }
                _ => None,
            })
            .collect())
    }

    pub async fn transfer(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let organisation = opt_nonblank(body, "organisationId")?
            .ok_or_else(|| bad("Organization ID is mandatory in the request.".into()))?;
        let org = get_org(&self.store, &organisation).await?.ok_or_else(|| {
            bad(format!(
                "Organization with ID {organisation} does not exist."
            ))
        })?;
        let tenant = tenant_id_of(&self.store, &org)
            .await?
            .unwrap_or_else(|| org.id.clone());
        let action_by = self.party(body, "actionBy").await?;
        let from = self.party(body, "fromUser").await?;
        let to = self.party(body, "toUser").await?;
        let from_roles = Self::roles("fromUser", &from.node, &organisation)?;
        let to_roles = Self::roles("toUser", &to.node, &organisation)?;
        let objects = match body.get("objects") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(objects)) => objects.clone(),
            Some(_) => return Err(DomainError::data_type("objects", "List")),
        };

        // The caller administers the tenant (Sunbird leaves this to its gateway) and `actionBy`
        // holds ORG_ADMIN there, as Sunbird checks; the audit entry names the caller.
        let authority = Authority::of(caller).await?;
        authority.require(authority.administers(&tenant))?;
        let acting = load_roles(&self.store, &action_by.id).await?;
        if !(acting.has_in(ORG_ADMIN, &tenant)
            || acting.has_in(ORG_ADMIN, &organisation)
            || acting.has(ADMIN))
        {
            return Err(DomainError::rule(ErrorCode::cannotTransferOwnership, &[]));
        }
        for (key, party) in [("fromUser", &from), ("toUser", &to)] {
            if party.record.root_org_id != tenant {
                return Err(bad(format!(
                    "given user id under {key} is not a user of the organisation's tenant"
                )));
            }
        }

        let profile = |party: &Party, roles: Vec<Value>, names: bool| {
            let mut profile = json!({"userId": party.id, "roles": roles});
            if names {
                profile["firstName"] = json!(party.record.first_name);
                profile["lastName"] = json!(party.record.last_name);
            }
            profile
        };
        let edata = |asset: Value| {
            json!({
                "event": OWNERSHIP_TRANSFER_EVENT,
                "action": "ownership-transfer",
                "organisationId": organisation,
                "context": body.get("context").cloned().unwrap_or(Value::Null),
                "actionBy": {"userId": action_by.id},
                "fromUserProfile": profile(&from, from_roles.clone(), false),
                "toUserProfile": profile(&to, to_roles.clone(), true),
                "assetInformation": asset,
                "iteration": 1,
            })
        };
        let assets: Vec<Value> = if objects.is_empty() {
            vec![json!({})]
        } else {
            objects
        };
        let mut transaction = Transaction::default();
        for asset in &assets {
            // On the giver's stream at its current version: the indexer finds nothing new.
            transaction.events.push(ChangeEvent {
                topic: Topic::User,
                entity_id: from.id.clone(),
                version: from.version,
                payload: edata(asset.clone()),
            });
        }
        let entry = note(
            caller,
            "user.ownership.transfer",
            &from.id,
            json!({"toUserId": to.id, "organisationId": organisation, "objects": assets.len()}),
        );
        let at = sunbird_timestamp(self.clock.now());
        commit_with_entry(&*self.store, transaction, &entry, &at).await?;
        let mut result = Map::new();
        result.insert(
            "status".into(),
            json!("Ownership transfer process is submitted successfully!"),
        );
        Ok(result)
    }
}
