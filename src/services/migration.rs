//! Tenant migration (reference §8.13, `PATCH /private/user/v1/migrate`): a user of the custodian
//! organisation moves into a state tenant (`channel`), optionally into one of its organisations
//! (`orgId` or `orgExternalId`), with external ids. In one commit, run by the user's owner: the
//! move itself, every consent the user gave marked DELETED (and the tenant's own consent row,
//! as Sunbird writes it), the user's declarations to the tenant's organisations VALIDATED, and
//! the notice (email, else SMS). `action: "reject"` refuses a self-declared migration instead:
//! the user stays and those declarations become REJECTED.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::actors::user_owner::UserOwners;
use crate::clock::{Clock, sunbird_timestamp};
use crate::crypto::PiiVault;
use crate::domain::consent::{ConsentRow, DELETED, mark_deleted};
use crate::domain::notification::Channel;
use crate::domain::org::OrgRecord;
use crate::domain::user::{MigrateTenant, UserRecord};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::notify::templates::{MIGRATION_EMAIL_TEMPLATE, MIGRATION_SMS_TEMPLATE};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, opt_bool, opt_nonblank, required_str, success};
use crate::services::notifications::{NotificationService, stored_address};
use crate::services::users::input::parse_external_ids;
use crate::storage::records::{
    custodian, external_id_claim, get_org, tenant_by_channel, tenant_id_of, user,
};
use crate::storage::{ClaimKind, Expect, Store, Table, Transaction, compose_key, key_prefix};

const MAX_ROWS: usize = 10_000;

#[derive(Clone)]
pub struct MigrationService {
    store: Arc<dyn Store>,
    owners: UserOwners,
    notifications: NotificationService,
    vault: PiiVault,
    clock: Arc<dyn Clock>,
    default_country_code: String,
}

impl MigrationService {
    pub fn new(
        store: Arc<dyn Store>,
        owners: UserOwners,
        notifications: NotificationService,
        vault: PiiVault,
        clock: Arc<dyn Clock>,
        default_country_code: String,
    ) -> Self {
        MigrationService {
            store,
            owners,
            notifications,
            vault,
            clock,
            default_country_code,
        }
    }

    pub async fn migrate(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        authority.require(authority.is_admin())?;
        let user_id = required_str(body, "userId")?;
        let channel = required_str(body, "channel")?;
        let external_ids: Vec<_> = parse_external_ids(body, true)?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let accept = match opt_nonblank(body, "action")?
            .map(|a| a.to_lowercase())
            .as_deref()
        {
            None | Some("accept") => true,
            Some("reject") => false,
            Some(other) => {
                return Err(DomainError::rule(
                    ErrorCode::invalidValue,
                    &["action", other, "accept, reject"],
                ));
            }
        };
        let notify = opt_bool(body, "notifyMigration")?.unwrap_or(true);
        let force = opt_bool(body, "forceMigration")?.unwrap_or(false);

        let tenant = tenant_by_channel(&self.store, &channel)
            .await?
            .ok_or_else(|| {
                DomainError::rule(ErrorCode::invalidParameterValue, &[&channel, "channel"])
            })?;
        if !tenant.is_active() {
            return Err(DomainError::rule(
                ErrorCode::errorInactiveOrg,
                &["channel", &channel],
            ));
        }
        let sub_org = self.sub_organisation(body, &tenant, &channel).await?;
        let found = user(&self.store, &user_id)
            .await?
            .ok_or_else(|| DomainError::not_found("user"))?;
        let record = found.record;
        if record.is_deleted() {
            return Err(DomainError::rule(ErrorCode::inactiveUser, &[]));
        }
        let now = sunbird_timestamp(self.clock.now());

        let mut with = Transaction::default();
        self.settle_declarations(&mut with, &user_id, &tenant.id, accept, &now)
            .await?;
        if !accept {
            self.store.commit(with).await?;
            return Ok(success());
        }
        self.delete_consents(&mut with, &user_id, &tenant.id, &now)
            .await?;
        if notify {
            self.notice(&mut with, &record, &tenant).await?;
        }
        let (custodian_id, _) = custodian(&self.store).await?;
        self.owners
            .migrate(
                MigrateTenant {
                    user_id,
                    custodian_id,
                    force,
                    root_org_id: tenant.id.clone(),
                    channel: tenant.channel.clone(),
                    organisation_id: sub_org.as_ref().map(|org| org.id.clone()),
                    profile_location: sub_org
                        .as_ref()
                        .and_then(|org| org.fields.get("orgLocation").cloned())
                        .filter(|location| !location.is_null()),
                    external_ids,
                    by: caller.audit_id(),
                },
                with,
            )
            .await?;
        let mut result = success();
        result.insert("errors".into(), json!([]));
        Ok(result)
    }

    /// The organisation of the tenant the user joins too: `orgId`, else `orgExternalId`
    /// within the channel.
    async fn sub_organisation(
        &self,
        body: &Body,
        tenant: &OrgRecord,
        channel: &str,
    ) -> DomainResult<Option<OrgRecord>> {
        if let Some(org_id) = opt_nonblank(body, "orgId")? {
            let org = get_org(&self.store, &org_id)
                .await?
                .ok_or_else(|| DomainError::rule(ErrorCode::invalidParameter, &["orgId"]))?;
            if tenant_id_of(&self.store, &org).await?.as_deref() != Some(tenant.id.as_str()) {
                return Err(DomainError::rule(
                    ErrorCode::parameterMismatch,
                    &["channel, orgId"],
                ));
            }
            return Ok(Some(org));
        }
        let Some(external) = opt_nonblank(body, "orgExternalId")? else {
            return Ok(None);
        };
        let owner = self
            .store
            .claim_owner(
                ClaimKind::OrgExternalId,
                &external_id_claim(channel, &external),
            )
            .await?;
        let org = match owner {
            Some(id) => get_org(&self.store, &id).await?,
            None => None,
        };
        org.map(Some).ok_or_else(|| {
            DomainError::rule(
                ErrorCode::invalidParameterValue,
                &[&external, "orgExternalId"],
            )
        })
    }

    /// The user's declarations to organisations of the tenant: VALIDATED on acceptance,
    /// REJECTED on refusal.
    async fn settle_declarations(
        &self,
        with: &mut Transaction,
        user_id: &str,
        tenant_id: &str,
        accept: bool,
        now: &str,
    ) -> DomainResult<()> {
        let rows = self
            .store
            .scan(
                Table::UserDeclarations,
                &key_prefix(user_id),
                None,
                MAX_ROWS,
            )
            .await?;
        for row in rows {
            let org_id = row
                .doc
                .get("orgId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Some(org) = get_org(&self.store, &org_id).await? else {
                continue;
            };
            if tenant_id_of(&self.store, &org).await?.as_deref() != Some(tenant_id) {
                continue;
            }
            let mut doc = row.doc.clone();
            doc["status"] = json!(if accept { "VALIDATED" } else { "REJECTED" });
            doc["updatedOn"] = json!(now);
            with.put(
                Table::UserDeclarations,
                row.key,
                doc,
                // Marked whatever happened to the row meanwhile: the migration's retries
                // must not conflict on it forever.
                Expect::Any,
            );
        }
        Ok(())
    }

    /// Every consent the user gave is DELETED, and so is the tenant's own consent row (which
    /// Sunbird writes on migration so the user is asked again).
    async fn delete_consents(
        &self,
        with: &mut Transaction,
        user_id: &str,
        tenant_id: &str,
        now: &str,
    ) -> DomainResult<()> {
        let tenant_key = compose_key(&[user_id, tenant_id, tenant_id]);
        let mut saw_tenant = false;
        for row in self
            .store
            .scan(Table::UserConsent, &key_prefix(user_id), None, MAX_ROWS)
            .await?
        {
            saw_tenant |= row.key == tenant_key;
            let mut doc = row.doc.clone();
            mark_deleted(&mut doc, now);
            with.put(
                Table::UserConsent,
                row.key,
                doc,
                // Marked whatever happened to the row meanwhile: the migration's retries
                // must not conflict on it forever.
                Expect::Any,
            );
        }
        if !saw_tenant {
            with.put(
                Table::UserConsent,
                tenant_key,
                ConsentRow {
                    user_id,
                    consumer_id: tenant_id,
                    object_id: tenant_id,
                    consumer_type: "ORGANISATION",
                    object_type: "Organisation",
                    status: DELETED,
                    expiry: Value::Null,
                    categories: json!([]),
                    created_on: json!(now),
                    now,
                }
                .to_doc(),
                Expect::Any,
            );
        }
        Ok(())
    }

    /// The notice to the user's email, else their phone; nothing when they have neither.
    async fn notice(
        &self,
        with: &mut Transaction,
        record: &UserRecord,
        tenant: &OrgRecord,
    ) -> DomainResult<()> {
        let address = |channel, sealed: Option<&str>| {
            stored_address(
                &self.vault,
                &record.id,
                record,
                sealed,
                channel,
                &self.default_country_code,
            )
        };
        let (channel, to, name) = match (
            address(Channel::Email, record.email.as_deref()),
            address(Channel::Sms, record.phone.as_deref()),
        ) {
            (Some(email), _) => (Channel::Email, email, MIGRATION_EMAIL_TEMPLATE),
            (None, Some(phone)) => (Channel::Sms, phone, MIGRATION_SMS_TEMPLATE),
            (None, None) => return Ok(()),
        };
        let template = self
            .notifications
            .template(name, Some(&tenant.id))
            .await?
            .ok_or_else(|| DomainError::internal(anyhow::anyhow!("template {name} is missing")))?;
        let vars = json!({
            "name": record.first_name.clone().unwrap_or_default(),
            "orgName": tenant.org_name.clone().unwrap_or_default(),
            "installationName": self.notifications.options().installation_name,
        });
        self.notifications
            .queue(with, channel, "migration", &template, &vars, &to)?;
        Ok(())
    }
}
