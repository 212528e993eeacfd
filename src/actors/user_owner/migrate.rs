//! Tenant migration (reference §8.13): a custodian user moves into a state tenant. The user's
//! root organisation and channel change, STATE_VALIDATED is set, the old memberships go and the
//! tenant's (and the sub-organisation's) come, the given external ids are added (claimed), and
//! what the service prepared besides (consents marked DELETED, declarations, the notice) is
//! written in the same transaction.

use super::contacts::claim_message;
use super::update::apply_external_ids;
use super::{UserOwnerContext, load_user, now};
use crate::domain::membership::MembershipRecord;
use crate::domain::rules::new_timestamp_id;
use crate::domain::user::{
    ASSOCIATION_SSO, ExternalIdOperation, MigrateTenant, STATE_VALIDATED_FLAG,
};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::records::role_grants;
use crate::storage::retry::read_modify_write;
use crate::storage::{Expect, Table, Topic, Transaction, compose_key, key_prefix};

/// Most memberships one user has.
const MAX_MEMBERSHIPS: usize = 10_000;

pub(super) async fn migrate(
    context: &UserOwnerContext,
    migration: MigrateTenant,
    with: Transaction,
) -> DomainResult<()> {
    let (migration, with) = (&migration, &with);
    read_modify_write(
        &*context.store,
        |kind| claim_message(kind, None),
        || async move {
            let current = load_user(context, &migration.user_id).await?;
            let stored = &current.record;
            if stored.is_deleted() {
                return Err(DomainError::rule(ErrorCode::inactiveUser, &[]));
            }
            if !migration.force && stored.root_org_id != migration.custodian_id {
                return Err(DomainError::rule(
                    ErrorCode::parameterMismatch,
                    &["user rootOrgId and custodianOrgId"],
                ));
            }
            let at = now(context);
            let user_id = migration.user_id.as_str();
            let mut record = stored.clone();
            let mut transaction = Transaction::default();
            record.root_org_id = migration.root_org_id.clone();
            record.channel = migration.channel.clone();
            record.flags_value |= STATE_VALIDATED_FLAG;
            if let Some(location) = &migration.profile_location {
                record.set_profile_field("profileLocation", location.clone());
            }
            record.updated_date = Some(at.clone());
            record.updated_by = migration.by.clone();
            let additions: Vec<_> = migration
                .external_ids
                .iter()
                .map(|id| (ExternalIdOperation::Add, id.clone()))
                .collect();
            apply_external_ids(&context.vault, &mut record, &mut transaction, &additions)?;
            // The old memberships go; the tenant's and the sub-organisation's come.
            let memberships = context
                .store
                .scan(
                    Table::UserOrganisation,
                    &key_prefix(user_id),
                    None,
                    MAX_MEMBERSHIPS,
                )
                .await?;
            let mut organisations = vec![migration.root_org_id.clone()];
            if let Some(sub) = &migration.organisation_id
                && sub != &migration.root_org_id
            {
                organisations.push(sub.clone());
            }
            for row in memberships {
                let kept = organisations
                    .iter()
                    .any(|org| row.key == compose_key(&[user_id, org]));
                if !kept {
                    transaction.delete(
                        Table::UserOrganisation,
                        row.key,
                        Expect::Version(row.version),
                    );
                }
            }
            for organisation in &organisations {
                let membership = MembershipRecord::new(
                    new_timestamp_id(),
                    user_id,
                    organisation,
                    ASSOCIATION_SSO,
                    &at,
                    migration.by.as_deref(),
                );
                transaction.put_record(
                    Table::UserOrganisation,
                    compose_key(&[user_id, organisation]),
                    &membership,
                    Expect::Any,
                )?;
            }
            // Roles held in the old tenant's organisations do not follow the user: a grant keeps
            // only the new organisations of its scope, and goes when none is left.
            for grant in role_grants(&context.store, user_id).await? {
                let mut kept = grant.record.clone();
                kept.scope
                    .retain(|entry| organisations.contains(&entry.organisation_id));
                if kept.scope.len() == grant.record.scope.len() {
                    continue;
                }
                if kept.scope.is_empty() {
                    transaction.delete(Table::UserRoles, grant.key, Expect::Version(grant.version));
                } else {
                    transaction.put_record(
                        Table::UserRoles,
                        grant.key,
                        &kept,
                        Expect::Version(grant.version),
                    )?;
                }
            }
            transaction.put_record(
                Table::User,
                user_id,
                &record,
                Expect::Version(current.version),
            )?;
            transaction.event(Topic::User, user_id, current.version + 1);
            transaction.append(with.clone());
            Ok((transaction, ()))
        },
    )
    .await
}
