//! First start on an empty data dir: what Sunbird needs seeded by hand (roles and role groups,
//! the custodian organisation and channel, the system settings of reference §8.15/§10) and a
//! bootstrap administrator, so the service works right away.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::actors::user_owner::UserOwners;
use crate::clock::{Clock, sunbird_timestamp};
use crate::config::Settings;
use crate::domain::contact::Email;
use crate::domain::org::{CUSTODIAN_ORG_CHANNEL, CUSTODIAN_ORG_ID, channel_claim};
use crate::domain::rules::{new_timestamp_id, new_user_id};
use crate::domain::user::{ASSOCIATION_SSO, CreateRequest, NewUser};
use crate::storage::audit::AuditNote;
use crate::storage::records::setting;
use crate::storage::{ClaimKind, Expect, Store, StoreError, Table, Topic, Transaction};

/// The roles Sunbird's migration scripts insert, with their display names.
pub const DEFAULT_ROLES: &[(&str, &str)] = &[
    ("ADMIN", "Admin"),
    ("ORG_ADMIN", "Org Admin"),
    ("ORG_MODERATOR", "Org Moderator"),
    ("CONTENT_CREATOR", "Content Creator"),
    ("CONTENT_REVIEWER", "Content Reviewer"),
    ("COURSE_MENTOR", "Course Mentor"),
    ("FLAG_REVIEWER", "Flag Reviewer"),
    ("COURSE_ADMIN", "Course Admin"),
    ("COURSE_CREATOR", "Course Creator"),
    ("PUBLIC", "Public"),
    ("ANNOUNCEMENT_SENDER", "Announcement Sender"),
    ("PROGRAM_MANAGER", "Program Manager"),
    ("PROGRAM_DESIGNER", "Program Designer"),
    ("BOOK_CREATOR", "Book Creator"),
    ("BOOK_REVIEWER", "Book Reviewer"),
    ("REPORT_VIEWER", "Report Viewer"),
    ("REPORT_ADMIN", "Report Admin"),
    (
        "OFFICIAL_TEXTBOOK_BADGE_ISSUER",
        "Official TextBook Badge Issuer",
    ),
    ("TEACHER_BADGE_ISSUER", "Teacher Badge Issuer"),
];

/// Role groups beyond the one-group-per-role convention.
const EXTRA_GROUPS: &[(&str, &str)] = &[
    ("SYSTEM_ADMINISTRATION", "System Administration"),
    ("ORG_MANAGEMENT", "Org Management"),
    ("MEMBERSHIP_MANAGEMENT", "Membership Management"),
];

fn role_groups_of(role: &str) -> Vec<&'static str> {
    match role {
        "ADMIN" => vec!["SYSTEM_ADMINISTRATION", "ORG_MANAGEMENT"],
        "ORG_ADMIN" => vec!["ORG_MANAGEMENT", "MEMBERSHIP_MANAGEMENT"],
        _ => Vec::new(),
    }
}

/// The system settings Sunbird's setup guide seeds, as `(id, JSON or text value)`.
fn default_settings(custodian_id: &str, custodian_channel: &str) -> Vec<(&'static str, String)> {
    vec![
        (CUSTODIAN_ORG_ID, custodian_id.to_string()),
        (CUSTODIAN_ORG_CHANNEL, custodian_channel.to_string()),
        (
            "orgTypeConfig",
            json!({"fields": [
                {"name": "School", "value": 2, "description": "School", "displayName": "School", "flagNameList": ["isSchool"]},
                {"name": "Board", "value": 5, "description": "Board", "displayName": "Board", "flagNameList": ["isBoard"]}
            ]})
            .to_string(),
        ),
        (
            "userProfileConfig",
            json!({
                "fields": ["firstName", "lastName", "profileSummary", "avatar", "countryCode", "dob", "email", "gender", "grade", "language", "location", "phone", "subject", "userName", "webPages", "jobProfile", "address", "education", "skills", "badgeAssertions"],
                "publicFields": ["firstName", "lastName", "profileSummary", "userName"],
                "privateFields": ["email", "phone"],
                "csv": {
                    "supportedColumns": {"NAME": "firstName", "MOBILE PHONE": "phone", "EMAIL": "email", "SCHOOL ID": "orgId", "USER_TYPE": "userType", "ROLES": "roles", "USER ID": "userId", "SCHOOL EXTERNAL ID": "orgExternalId"},
                    "outputColumns": {"userId": "USER ID", "firstName": "NAME", "phone": "MOBILE PHONE", "email": "EMAIL", "orgId": "SCHOOL ID", "orgName": "SCHOOL NAME", "userType": "USER_TYPE", "orgExternalId": "SCHOOL EXTERNAL ID"},
                    "outputColumnsOrder": ["userId", "firstName", "phone", "email", "organisationId", "orgName", "userType", "orgExternalId"],
                    "mandatoryColumns": ["firstName", "userType", "roles"]
                },
                "read": {"excludedFields": ["avatar", "jobProfile", "address", "education", "webPages", "skills"]},
                "framework": {"fields": ["board", "gradeLevel", "medium", "subject", "id"], "mandatoryFields": ["id"]}
            })
            .to_string(),
        ),
        (
            "orgProfileConfig",
            json!({"csv": {
                "supportedColumns": {"SCHOOL NAME": "orgName", "BLOCK CODE": "locationCode", "STATUS": "status", "SCHOOL ID": "organisationId", "EXTERNAL ID": "externalId", "DESCRIPTION": "description", "ORGANISATION TYPE": "organisationType"},
                "outputColumns": {"organisationId": "SCHOOL ID", "orgName": "SCHOOL NAME", "locationCode": "BLOCK CODE", "locationName": "BLOCK NAME", "externalId": "EXTERNAL ID", "organisationType": "ORGANISATION TYPE"},
                "outputColumnsOrder": ["organisationId", "orgName", "locationCode", "locationName", "externalId", "organisationType"],
                "mandatoryColumns": ["orgName", "locationCode", "status", "organisationType"]
            }})
            .to_string(),
        ),
        (
            "tncConfig",
            json!({"latestVersion": "v1", "v1": {"url": "http://localhost:9000/terms-and-conditions-v1.html"}}).to_string(),
        ),
        (
            "orgAdminTnc",
            json!({"latestVersion": "v1", "v1": {"url": "http://localhost:9000/terms-and-conditions-v1.html#administratorGuidelines"}}).to_string(),
        ),
        (
            "groupsTnc",
            json!({"latestVersion": "v1", "v1": {"url": "http://localhost:9000/terms-and-conditions-v1.html#groupGuidelines"}}).to_string(),
        ),
        (
            "reportViewerTnc",
            json!({"latestVersion": "v1", "v1": {"url": "http://localhost:9000/terms-and-conditions-v1.html#reportViewerGuidelines"}}).to_string(),
        ),
        ("phoneUnique", "true".to_string()),
        ("emailUnique", "true".to_string()),
    ]
}

/// Where the bootstrap administrator's id is written for `userorg token --admin`.
pub fn bootstrap_admin_file(data_dir: &Path) -> PathBuf {
    data_dir.join("bootstrap-admin.json")
}

pub fn read_bootstrap_admin(data_dir: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(bootstrap_admin_file(data_dir))?;
    let value: Value = serde_json::from_str(&text)?;
    value
        .get("userId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("bootstrap admin file has no userId"))
}

/// Seeds roles, the custodian organisation and the system settings in one transaction, unless
/// a previous start did.
/// Puts each built-in message template the store lacks (a new store, or one from before a
/// template existed), leaving the ones an operator changed alone.
pub async fn seed_templates(store: &Arc<dyn Store>) -> anyhow::Result<usize> {
    let mut transaction = Transaction::default();
    for template in crate::notify::templates::defaults() {
        if store
            .get(Table::MessageTemplate, &template.name)
            .await?
            .is_none()
        {
            transaction.put(
                Table::MessageTemplate,
                template.name.clone(),
                serde_json::to_value(&template)?,
                Expect::Absent,
            );
        }
    }
    let added = transaction.writes.len();
    if added == 0 {
        return Ok(0);
    }
    match store.commit(transaction).await {
        // Another instance seeded them at the same moment.
        Ok(_) | Err(crate::storage::StoreError::Conflict { .. }) => Ok(added),
        Err(error) => Err(error.into()),
    }
}

pub async fn seed_reference_data(
    store: &Arc<dyn Store>,
    settings: &Settings,
    clock: &dyn Clock,
) -> anyhow::Result<bool> {
    if setting(store, CUSTODIAN_ORG_ID)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_some()
    {
        return Ok(false);
    }
    let now = sunbird_timestamp(clock.now());
    let mut transaction = Transaction::default();
    for (id, name) in DEFAULT_ROLES {
        let mut groups = vec![(*id).to_string()];
        groups.extend(role_groups_of(id).into_iter().map(str::to_string));
        transaction.put(
            Table::Role,
            *id,
            json!({"id": id, "name": name, "roleGroupId": groups, "status": 1}),
            Expect::Any,
        );
        transaction.put(
            Table::RoleGroup,
            *id,
            json!({"id": id, "name": name, "urlActionIds": []}),
            Expect::Any,
        );
    }
    for (id, name) in EXTRA_GROUPS {
        transaction.put(
            Table::RoleGroup,
            *id,
            json!({"id": id, "name": name, "urlActionIds": []}),
            Expect::Any,
        );
    }
    let org_id = new_timestamp_id();
    let channel = settings.seed.custodian_channel.trim().to_string();
    transaction.claim(ClaimKind::OrgChannel, channel_claim(&channel), &org_id);
    transaction.claim(ClaimKind::OrgSlug, channel_claim(&channel), &org_id);
    transaction.put(
        Table::Organisation,
        &org_id,
        json!({
            "id": org_id,
            "orgName": settings.seed.custodian_org_name,
            "description": settings.seed.custodian_org_name,
            "channel": channel,
            "slug": channel_claim(&channel),
            "isTenant": true,
            "isRootOrg": true,
            "rootOrgId": org_id,
            "hashTagId": org_id,
            "status": 1,
            "organisationType": 5,
            "isSSOEnabled": false,
            "createdDate": now,
            "createdBy": null,
        }),
        Expect::Absent,
    );
    transaction.event(Topic::Organisation, &org_id, 1);
    for (id, value) in default_settings(&org_id, &channel) {
        transaction.put(
            Table::SystemSettings,
            id,
            json!({"id": id, "field": id, "value": value}),
            Expect::Any,
        );
    }
    match store.commit(transaction).await {
        Ok(_) => {}
        // Instances starting at once on one new store: the custodian channel's claim lets one
        // seed through; the others find its seed and go on.
        Err(StoreError::ClaimTaken { .. })
            if setting(store, CUSTODIAN_ORG_ID)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .is_some() =>
        {
            return Ok(false);
        }
        Err(error) => return Err(error.into()),
    }
    tracing::info!(org.id = %org_id, "seeded roles, the custodian organisation and system settings");
    Ok(true)
}

const KEY_CHECK: &str = "key-check";
const KEY_CHECK_KIND: &str = "keycheck";
const KEY_CHECK_VALUE: &str = "userorg key check";

/// Refuses a start whose keys are not the ones the store's values were written with: a value
/// sealed and a blind-index token made at the store's first start are kept in it, and every
/// start opens and recomputes them. Instances sharing a store with different keys would write
/// values the others cannot open, and claim one email under two tokens. A value sealed with a
/// retired key is resealed under the current one (after `userorg keys rotate`).
pub async fn check_key_material(
    store: &Arc<dyn Store>,
    vault: &crate::crypto::PiiVault,
) -> anyhow::Result<()> {
    let token = vault.token(KEY_CHECK_KIND, KEY_CHECK_VALUE);
    let marker = |vault: &crate::crypto::PiiVault| -> anyhow::Result<Value> {
        let sealed = vault
            .seal(KEY_CHECK, KEY_CHECK_KIND, KEY_CHECK_VALUE)
            .map_err(|e| anyhow::anyhow!("cannot seal the key check: {e}"))?;
        Ok(json!({"sealed": sealed, "token": token}))
    };
    for _ in 0..4 {
        let Some(row) = store.get(Table::Meta, KEY_CHECK).await? else {
            let mut transaction = Transaction::default();
            transaction.put(Table::Meta, KEY_CHECK, marker(vault)?, Expect::Absent);
            match store.commit(transaction).await {
                Ok(_) => return Ok(()),
                // Another instance made it first: check against theirs.
                Err(StoreError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        };
        if row.doc["token"].as_str() != Some(token.as_str()) {
            anyhow::bail!(
                "this store was written with another blind-index key: every instance of a store \
                 needs the same [security] blind_index_key (or the same keys/blind-index.key)"
            );
        }
        let sealed = row.doc["sealed"].as_str().unwrap_or_default();
        match vault.open(KEY_CHECK, KEY_CHECK_KIND, sealed) {
            Ok(value) if value == KEY_CHECK_VALUE => {}
            _ => anyhow::bail!(
                "this store's values are sealed with a PII key this instance does not have (its \
                 current key is {}): every instance of a store needs the same [security] \
                 pii_encryption_key (or keys/pii.key), with earlier keys in pii_retired_keys",
                vault.current_key_id()
            ),
        }
        if !vault.needs_reseal(sealed) {
            return Ok(());
        }
        let mut transaction = Transaction::default();
        transaction.put(
            Table::Meta,
            KEY_CHECK,
            marker(vault)?,
            Expect::Version(row.version),
        );
        match store.commit(transaction).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    anyhow::bail!("the store's key check keeps changing under this start")
}

/// The meta row naming the key the instances of this store sign their tokens with.
const SIGNING_KEY: &str = "signing-key";

/// Refuses a start whose local signing key differs from the one the other instances of this
/// store sign with, unless this instance can verify that one (a rotation: the old key's public
/// part kept beside the new key), in which case its own key becomes the recorded one. With
/// another key, and the other's public part missing, each instance would answer 401 to the
/// tokens the other signed. `own` is this instance's signing key id (`None`: no local signer,
/// nothing to check); `verifiable` the key ids it trusts.
pub async fn check_signing_key(
    store: &Arc<dyn Store>,
    own: Option<&str>,
    verifiable: &[String],
) -> anyhow::Result<()> {
    let Some(own) = own else {
        return Ok(());
    };
    for _ in 0..4 {
        let row = store.get(Table::Meta, SIGNING_KEY).await?;
        let recorded = row
            .as_ref()
            .and_then(|row| row.doc["kid"].as_str())
            .map(str::to_string);
        let expect = match (&row, recorded.as_deref()) {
            (_, Some(kid)) if kid == own => return Ok(()),
            (Some(row), Some(kid)) => {
                if !verifiable.iter().any(|known| known == kid) {
                    anyhow::bail!(
                        "the other instances of this store sign tokens with key `{kid}`, and this \
                         one with `{own}`, without the public key of `{kid}`: give every instance \
                         the same keys/local-signing-key.pem (to rotate, keep the old key's public \
                         PEM in auth.public_keys_dir while instances move to the new one)"
                    );
                }
                Expect::Version(row.version)
            }
            (Some(row), None) => Expect::Version(row.version),
            (None, _) => Expect::Absent,
        };
        let mut transaction = Transaction::default();
        transaction.put(Table::Meta, SIGNING_KEY, json!({"kid": own}), expect);
        match store.commit(transaction).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    anyhow::bail!("the store's signing key record keeps changing under this start")
}

/// The actor of the audit entry that grants the bootstrap administrator ADMIN at first start.
pub const BOOTSTRAP_ACTOR: &str = "bootstrap";

/// Creates the bootstrap administrator (ADMIN in the custodian organisation) unless the data
/// dir already records one. Returns its id.
pub async fn seed_admin(
    store: &Arc<dyn Store>,
    owners: &UserOwners,
    settings: &Settings,
    vault: &crate::crypto::PiiVault,
) -> anyhow::Result<Option<String>> {
    if !settings.seed.bootstrap_admin {
        tracing::info!("bootstrap admin disabled (seed.bootstrap_admin = false)");
        return Ok(None);
    }
    if let Ok(id) = read_bootstrap_admin(&settings.data_dir) {
        return Ok(Some(id));
    }
    let email = Email::parse(&settings.seed.admin_email)
        .ok_or_else(|| anyhow::anyhow!("invalid configuration key `seed.admin_email`"))?;
    let custodian_id = setting(store, CUSTODIAN_ORG_ID)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("custodian organisation not seeded"))?;
    let channel = setting(store, CUSTODIAN_ORG_CHANNEL)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .unwrap_or_default();
    // A crash between the user's commit and the file write leaves the email claimed: reuse it.
    let token = vault.token("email", email.as_str());
    let id = match store.claim_owner(ClaimKind::Email, &token).await? {
        Some(existing) => existing,
        None => {
            let request = CreateRequest {
                profile: serde_json::Map::new(),
                first_name: "Admin".to_string(),
                last_name: None,
                email: Some(email),
                email_verified: true,
                phone: None,
                phone_verified: false,
                recovery_email: None,
                recovery_phone: None,
                username: Some("admin".to_string()),
                password: None,
                dob: None,
                channel: None,
                organisation_id: None,
                roles: vec!["ADMIN".to_string()],
                external_ids: Vec::new(),
                managed_by: None,
            };
            let id = new_user_id();
            // The first ADMIN is a role grant like any other: audited with the create.
            let audit = AuditNote {
                actor: BOOTSTRAP_ACTOR.to_string(),
                action: "role.grant".to_string(),
                target: id.clone(),
                details: json!({"roles": ["ADMIN"]}),
            };
            let created = owners
                .create(
                    NewUser {
                        id,
                        request,
                        password_hash: None,
                        root_org_id: custodian_id,
                        channel,
                        association_type: ASSOCIATION_SSO,
                        created_by: None,
                        flags_value: 0,
                    },
                    Some(audit),
                )
                .await;
            match created {
                Ok(id) => id,
                // Another instance sharing the store created it meanwhile: its email claim
                // names it.
                Err(error) => store
                    .claim_owner(ClaimKind::Email, &token)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("cannot create the bootstrap admin: {error}"))?,
            }
        }
    };
    let file = bootstrap_admin_file(&settings.data_dir);
    std::fs::write(&file, json!({"userId": id}).to_string())?;
    tracing::info!(user.id = %id, "bootstrap administrator ready");
    Ok(Some(id))
}

#[cfg(test)]
mod signing_key_tests {
    use super::*;

    #[tokio::test]
    async fn instances_of_one_store_sign_with_one_key_or_can_verify_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            crate::storage::redb_store::RedbStore::open(&dir.path().join("store.redb"))
                .expect("store"),
        );
        let trusted = |kids: &[&str]| kids.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        check_signing_key(&store, None, &[])
            .await
            .expect("no local signer: nothing to check");
        check_signing_key(&store, Some("k1"), &trusted(&["k1"]))
            .await
            .expect("the first instance records its key");
        check_signing_key(&store, Some("k1"), &trusted(&["k1"]))
            .await
            .expect("the same key");
        let refused = check_signing_key(&store, Some("k2"), &trusted(&["k2"]))
            .await
            .expect_err("another key, and k1's tokens unverifiable here");
        assert_eq!(
            refused.to_string(),
            "the other instances of this store sign tokens with key `k1`, and this one with \
             `k2`, without the public key of `k1`: give every instance the same \
             keys/local-signing-key.pem (to rotate, keep the old key's public PEM in \
             auth.public_keys_dir while instances move to the new one)"
        );
        check_signing_key(&store, Some("k2"), &trusted(&["k1", "k2"]))
            .await
            .expect("a rotation: k1's tokens still verify here");
        check_signing_key(&store, Some("k1"), &trusted(&["k1"]))
            .await
            .expect_err("an instance left on the old key is refused after the rotation");
    }
}
