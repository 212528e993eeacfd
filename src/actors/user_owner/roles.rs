//! Role assignment (reference §8.8): v1 replaces a user's roles in one organisation, v2 adds or
//! removes organisations from single roles. The new role set is planned by a pure function; a
//! role in an organisation the user is not an active member of makes them a member.

use std::collections::BTreeMap;

use super::{UserOwnerContext, load_user, now};
use crate::domain::membership::MembershipRecord;
use crate::domain::role::{RoleGrant, scope_of};
use crate::domain::rules::new_timestamp_id;
use crate::domain::user::{ASSOCIATION_SSO, AssignRoles, RoleAssignment};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::storage::audit::{AuditNote, append};
use crate::storage::records::{memberships, role_grants};
use crate::storage::retry::read_modify_write;
use crate::storage::{Expect, Table, Topic, Transaction, Versioned, compose_key};

pub(super) async fn assign_roles(
    context: &UserOwnerContext,
    assignment: AssignRoles,
    audit: &AuditNote,
) -> DomainResult<()> {
    let assignment = &assignment;
    read_modify_write(
        &*context.store,
        |kind| DomainError::already_exists(kind.name()),
        || async move {
            let user = load_user(context, &assignment.user_id).await?;
            if user.record.is_deleted() {
                return Err(DomainError::rule(ErrorCode::inactiveUser, &[]));
            }
            let grants = role_grants(&context.store, &assignment.user_id).await?;
            let members = memberships(&context.store, &assignment.user_id).await?;
            let plan = plan_roles(&grants, assignment)?;
            let at = now(context);
            let mut transaction =
                build_role_assignment(&at, user.version, &grants, &members, &plan, assignment)?;
            append(&*context.store, &mut transaction, audit, &at).await?;
            Ok((transaction, ()))
        },
    )
    .await
}

/// Every role the user will hold after the assignment, with its organisations (empty: the role
/// is removed).
pub(super) fn plan_roles(
    grants: &[Versioned<RoleGrant>],
    assignment: &AssignRoles,
) -> DomainResult<BTreeMap<String, Vec<String>>> {
    let mut roles: BTreeMap<String, Vec<String>> = grants
        .iter()
        .map(|grant| (grant.record.role.clone(), grant.record.organisations()))
        .collect();
    match &assignment.assignment {
        RoleAssignment::ReplaceForOrganisation {
            organisation_id,
            roles: wanted,
        } => {
            for (role, organisations) in roles.iter_mut() {
                let keep = wanted.contains(role);
                let has = organisations.contains(organisation_id);
                if keep && !has {
                    organisations.push(organisation_id.clone());
                } else if !keep && has {
                    organisations.retain(|o| o != organisation_id);
                }
            }
            for role in wanted {
                roles
                    .entry(role.clone())
                    .or_insert_with(|| vec![organisation_id.clone()]);
            }
        }
        RoleAssignment::Scopes(changes) => {
            for change in changes {
                let organisations = roles.entry(change.role.clone()).or_default();
                for organisation in &change.organisations {
                    let has = organisations.contains(organisation);
                    if change.add && !has {
                        organisations.push(organisation.clone());
                    } else if !change.add && has {
                        organisations.retain(|o| o != organisation);
                    }
                }
            }
        }
    }
    if assignment.single_organisation {
        let distinct: std::collections::BTreeSet<&String> = roles.values().flatten().collect();
        if distinct.len() > 1 {
            return Err(DomainError::rule(
                ErrorCode::roleProcessingInvalidOrgError,
                &[],
            ));
        }
    }
    Ok(roles)
}

/// The writes that take the stored grants to `plan`: changed grants updated or deleted at their
/// version, new ones inserted, memberships added for new organisations, and the user's event.
pub(super) fn build_role_assignment(
    now: &str,
    user_version: u64,
    grants: &[Versioned<RoleGrant>],
    members: &[Versioned<MembershipRecord>],
    plan: &BTreeMap<String, Vec<String>>,
    assignment: &AssignRoles,
) -> DomainResult<Transaction> {
    let user_id = assignment.user_id.as_str();
    let by = assignment.by.as_deref();
    let mut transaction = Transaction::default();
    let mut new_organisations: Vec<String> = Vec::new();
    for (role, organisations) in plan {
        let stored = grants.iter().find(|grant| &grant.record.role == role);
        let before = stored
            .map(|grant| grant.record.organisations())
            .unwrap_or_default();
        if stored.is_some() && organisations == &before {
            continue;
        }
        for organisation in organisations {
            if !before.contains(organisation) && !new_organisations.contains(organisation) {
                new_organisations.push(organisation.clone());
            }
        }
        let key = compose_key(&[user_id, role]);
        match (stored, organisations.is_empty()) {
            (Some(grant), true) => {
                transaction.delete(Table::UserRoles, key, Expect::Version(grant.version));
            }
            (None, true) => {}
            (Some(grant), false) => {
                let mut record = grant.record.clone();
                record.scope = scope_of(organisations);
                record.updated_by = by.map(str::to_string);
                record.updated_date = Some(now.to_string());
                transaction.put_record(
                    Table::UserRoles,
                    key,
                    &record,
                    Expect::Version(grant.version),
                )?;
            }
            (None, false) => {
                let record = RoleGrant::new(user_id, role, organisations, by, now);
                transaction.put_record(Table::UserRoles, key, &record, Expect::Absent)?;
            }
        }
    }
    // A role in an organisation makes the user a member of it.
    for organisation in new_organisations {
        let active = members.iter().any(|membership| {
            membership.record.organisation_id == organisation && membership.record.is_active()
        });
        if !active {
            let membership = MembershipRecord::new(
                new_timestamp_id(),
                user_id,
                &organisation,
                ASSOCIATION_SSO,
                now,
                by,
            );
            transaction.put_record(
                Table::UserOrganisation,
                compose_key(&[user_id, &organisation]),
                &membership,
                Expect::Any,
            )?;
        }
    }
    // The user row is not rewritten; its document changes (roles, memberships).
    transaction.event(Topic::User, user_id, user_version);
    Ok(transaction)
}
