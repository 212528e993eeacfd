//! Terms-and-conditions acceptance (reference §8.13): `POST /v1/user/tnc/accept` with
//! `{version, tncType?, userId?}`. The version must be the `latestVersion` of the system
//! setting named by `tncType` (default `tncConfig`); `orgAdminTnc` needs ORG_ADMIN of the
//! user's root organisation and `reportViewerTnc` REPORT_VIEWER or REPORT_ADMIN there. A parent
//! accepts for its managed child by naming it in `userId` (Sunbird does not check that the
//! child is the caller's; this service does).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::actors::user_owner::UserOwners;
use crate::domain::role::ORG_ADMIN;
use crate::domain::user::{AcceptTnc, TNC_CONFIG};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, opt_nonblank, required_str};
use crate::storage::Store;
use crate::storage::records::{json_setting, load_roles, user};

const ORG_ADMIN_TNC: &str = "orgAdminTnc";
const REPORT_VIEWER_TNC: &str = "reportViewerTnc";
const REPORT_VIEWER: &str = "REPORT_VIEWER";
const REPORT_ADMIN: &str = "REPORT_ADMIN";

#[derive(Clone)]
pub struct TncService {
    store: Arc<dyn Store>,
    owners: UserOwners,
}

impl TncService {
    pub fn new(store: Arc<dyn Store>, owners: UserOwners) -> Self {
        TncService { store, owners }
    }

    pub async fn accept(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let version = required_str(body, "version")?;
        let tnc_type = opt_nonblank(body, "tncType")?.unwrap_or_else(|| TNC_CONFIG.into());
        let asked_for = opt_nonblank(body, "userId")?;
        if let Some(id) = &asked_for
            && uuid::Uuid::parse_str(id).is_err()
        {
            return Err(DomainError::rule(
                ErrorCode::invalidPropertyError,
                &["userId"],
            ));
        }
        let authority = Authority::of(caller).await?;
        // A user accepts for themself or a managed child of theirs; another service for the
        // user it names.
        let service = matches!(caller, Caller::Internal);
        let caller_id = authority.caller.user_id().map(str::to_string);
        let target_id = match (asked_for, &caller_id) {
            (Some(id), _) => id,
            (None, Some(id)) => id.clone(),
            (None, None) if service => return Err(DomainError::mandatory_missing("userId")),
            (None, None) => return Err(DomainError::unauthorized()),
        };
        let found = user(&self.store, &target_id).await?;
        let managed_by = found.as_ref().and_then(|f| f.record.managed_by.clone());
        authority
            .require(service || authority.is_self_or_manager(&target_id, managed_by.as_deref()))?;
        let target = found.ok_or_else(|| DomainError::not_found("user"))?.record;
        if target.is_deleted() {
            return Err(DomainError::rule(ErrorCode::userAccountlocked, &[]));
        }
        let latest = json_setting(&self.store, &tnc_type)
            .await?
            .and_then(|config| {
                config
                    .get("latestVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        if !latest.eq_ignore_ascii_case(&version) {
            return Err(DomainError::rule(
                ErrorCode::invalidParameterValue,
                &[&version, "version"],
            ));
        }
        let needed: &[&str] = match tnc_type.as_str() {
            ORG_ADMIN_TNC => &[ORG_ADMIN],
            REPORT_VIEWER_TNC => &[REPORT_VIEWER, REPORT_ADMIN],
            _ => &[],
        };
        if !needed.is_empty() {
            let roles = load_roles(&self.store, &target_id).await?;
            if !needed
                .iter()
                .any(|role| roles.has_in(role, &target.root_org_id))
            {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[&target.root_org_id, "organisationId"],
                ));
            }
        }
        self.owners
            .accept_tnc(AcceptTnc {
                user_id: target_id,
                tnc_type,
                version,
                by: caller_id,
            })
            .await?;
        let mut result = Map::new();
        result.insert("response".into(), json!("SUCCESS"));
        Ok(result)
    }
}
