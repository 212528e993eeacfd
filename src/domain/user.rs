//! Users: the stored user record, the commands the user owners execute, and the rules about
//! user ids, status and external ids. Validation builds the commands (services), owners execute
//! them (actors).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::contact::{Email, Phone};
use crate::domain::rules::username_base;

/// Membership association bits (Sunbird `AssociationMechanism`).
pub const ASSOCIATION_SSO: i64 = 1;
pub const ASSOCIATION_SELF_DECLARATION: i64 = 2;
pub const ASSOCIATION_SYSTEM_UPLOAD: i64 = 4;

/// Sunbird's user status values: 1 active, 0 blocked, 2 deleted.
pub const STATUS_BLOCKED: i64 = 0;
pub const STATUS_ACTIVE: i64 = 1;
pub const STATUS_DELETED: i64 = 2;

/// A user row (Sunbird's `user` table): the fields the service reasons about are typed; every
/// other field a client may set (`profileDetails`, `framework`, `profileLocation`, ...) is kept
/// as given in `profile`, so nothing a client sends is lost. PII fields hold ciphertext (sealed
/// by the owner) and `pii_tokens` their blind-index tokens; plaintext PII is never stored.
///
/// The stored JSON keeps Sunbird's column names. Optional PII fields are absent when unset, the
/// other optional fields are stored as `null`, as the original does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: String,
    pub user_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default)]
    pub phone_verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_used_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_used_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
    #[serde(default)]
    pub external_ids: Vec<SealedExternalId>,
    #[serde(default)]
    pub dob: Option<String>,
    pub root_org_id: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub managed_by: Option<String>,
    pub status: i64,
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_blocked: Option<bool>,
    #[serde(default)]
    pub flags_value: i64,
    #[serde(default)]
    pub created_date: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub updated_date: Option<String>,
    #[serde(default)]
    pub updated_by: Option<String>,
    /// Blind-index tokens of the PII fields, by field name, and the managed-child slot of a
    /// child ([`MANAGED_SLOT_TOKEN`]); never shown, indexed for exact filters (`_index` in rows
    /// written before the name changed).
    #[serde(default, alias = "_index")]
    pub pii_tokens: BTreeMap<String, String>,
    /// Every other field, as the client gave it (stored beside the typed ones).
    #[serde(skip)]
    pub profile: Map<String, Value>,
}

/// The entry of [`UserRecord::pii_tokens`] naming the managed-child slot a child holds (the
/// value of its `ManagedSlot` claim), so a delete or graduation frees it.
pub const MANAGED_SLOT_TOKEN: &str = "managedSlot";

/// The `n`th managed-child slot of `parent`.
pub fn managed_slot(parent: &str, n: usize) -> String {
    format!("{parent}/{n}")
}

/// The stored names of the typed fields of [`UserRecord`] (and the old name of the tokens).
pub const USER_FIELDS: &[&str] = &[
    "id",
    "userId",
    "firstName",
    "lastName",
    "phone",
    "maskedPhone",
    "countryCode",
    "phoneVerified",
    "email",
    "maskedEmail",
    "emailVerified",
    "recoveryEmail",
    "recoveryPhone",
    "prevUsedEmail",
    "prevUsedPhone",
    "userName",
    "loginId",
    "externalIds",
    "dob",
    "rootOrgId",
    "channel",
    "managedBy",
    "status",
    "isDeleted",
    "isBlocked",
    "flagsValue",
    "createdDate",
    "createdBy",
    "updatedDate",
    "updatedBy",
    // Not a field any more (hashes live in `user_credential`): listed so a hash in a row written
    // before that is dropped on read instead of surfacing as a profile field.
    "passwordHash",
    "piiTokens",
    "_index",
];

crate::domain::open_record!(UserRecord, profile, USER_FIELDS);

impl UserRecord {
    /// Deleted: Sunbird marks a deleted user with `isDeleted` and status 2; either counts.
    pub fn is_deleted(&self) -> bool {
        self.is_deleted || self.status == STATUS_DELETED
    }

    /// Active: not deleted and not blocked. Only an active user's token is accepted.
    pub fn is_active(&self) -> bool {
        !self.is_deleted() && self.status == STATUS_ACTIVE
    }

    /// Sets a profile field a client gave: the typed ones into their fields (a non-string value
    /// clears them), the rest into `profile`, so `profile` never shadows a typed field.
    pub fn set_profile_field(&mut self, field: &str, value: Value) {
        let text = || value.as_str().map(str::to_string);
        match field {
            "firstName" => self.first_name = text(),
            "lastName" => self.last_name = text(),
            _ => {
                self.profile.insert(field.to_string(), value);
            }
        }
    }

    /// `first last`, trimmed (Sunbird's display name).
    pub fn full_name(&self) -> String {
        format!(
            "{} {}",
            self.first_name.as_deref().unwrap_or_default(),
            self.last_name.as_deref().unwrap_or_default()
        )
        .trim()
        .to_string()
    }
}

/// Sunbird path ids may be federated (`f:<provider>:<uuid>`): the user id is the last segment.
pub fn user_id_from_path(raw: &str) -> String {
    raw.rsplit(':').next().unwrap_or(raw).trim().to_string()
}

/// An external id of a user, stored as Sunbird's `{id, idType, provider}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalId {
    pub id: String,
    pub id_type: String,
    pub provider: String,
}

impl ExternalId {
    /// The uniqueness key of an external id: provider, type and id, case-insensitively.
    pub fn claim_value(&self) -> String {
        format!(
            "{}@{}@{}",
            self.id.to_lowercase(),
            self.id_type.to_lowercase(),
            self.provider.to_lowercase()
        )
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({"id": self.id, "idType": self.id_type, "provider": self.provider})
    }
}

/// An external id as stored: the id sealed (it may be a national id), bound to the user and to
/// its provider and type; the provider and type in clear (they name a tenant and a kind of id,
/// not a person); the blind-index token of the id for exact search filters, and the token its
/// uniqueness claim is held under.
///
/// An entry without tokens was written before external ids were sealed: its id is still in
/// clear and its claim is the clear [`ExternalId::claim_value`], until `userorg keys reseal`
/// seals it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedExternalId {
    pub id: String,
    pub id_type: String,
    pub provider: String,
    #[serde(default)]
    pub id_token: String,
    #[serde(default)]
    pub claim_token: String,
}

impl SealedExternalId {
    /// Written before external ids were sealed (see the type's docs).
    pub fn is_clear(&self) -> bool {
        self.claim_token.is_empty()
    }

    /// The value its uniqueness claim is held under.
    pub fn claim(&self) -> String {
        if self.is_clear() {
            ExternalId {
                id: self.id.clone(),
                id_type: self.id_type.clone(),
                provider: self.provider.clone(),
            }
            .claim_value()
        } else {
            self.claim_token.clone()
        }
    }

    /// True when this entry holds the slot of `other` (same provider and type, in any case).
    pub fn same_slot(&self, other: &ExternalId) -> bool {
        self.provider.eq_ignore_ascii_case(&other.provider)
            && self.id_type.eq_ignore_ascii_case(&other.id_type)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalIdOperation {
    Add,
    Edit,
    Remove,
}

/// A validated create request, before organisation resolution.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub profile: Map<String, Value>,
    pub first_name: String,
    pub last_name: Option<String>,
    pub email: Option<Email>,
    pub email_verified: bool,
    pub phone: Option<Phone>,
    pub phone_verified: bool,
    pub recovery_email: Option<Email>,
    pub recovery_phone: Option<Phone>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub dob: Option<String>,
    pub channel: Option<String>,
    pub organisation_id: Option<String>,
    pub roles: Vec<String>,
    pub external_ids: Vec<ExternalId>,
    pub managed_by: Option<String>,
}

/// A validated update request.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub user_id: String,
    /// Plain profile fields to set (a null value clears the field).
    pub profile: Map<String, Value>,
    pub email: Option<Email>,
    pub email_verified: Option<bool>,
    pub phone: Option<Phone>,
    pub phone_verified: Option<bool>,
    pub recovery_email: Option<Email>,
    pub recovery_phone: Option<Phone>,
    pub dob: Option<String>,
    pub organisation_id: Option<String>,
    pub external_ids: Vec<(ExternalIdOperation, ExternalId)>,
}

impl CreateRequest {
    pub fn username_base(&self) -> String {
        username_base(&self.first_name, self.last_name.as_deref())
    }
}

/// A user to create, validated and resolved by the service.
#[derive(Debug)]
pub struct NewUser {
    pub id: String,
    pub request: CreateRequest,
    pub password_hash: Option<String>,
    pub root_org_id: String,
    pub channel: String,
    pub association_type: i64,
    pub created_by: Option<String>,
    pub flags_value: i64,
}

#[derive(Debug)]
pub struct UserUpdate {
    pub request: UpdateRequest,
    pub updated_by: Option<String>,
}

/// `flagsValue` bit of a user validated by a state tenant (Sunbird `STATE_VALIDATED`).
pub const STATE_VALIDATED_FLAG: i64 = 4;

/// Moving a custodian user into a state tenant (reference §8.13).
#[derive(Debug, Clone, PartialEq)]
pub struct MigrateTenant {
    pub user_id: String,
    /// The custodian organisation, which the user must be in unless `force`.
    pub custodian_id: String,
    pub force: bool,
    /// The tenant and its channel.
    pub root_org_id: String,
    pub channel: String,
    /// A sub-organisation of the tenant the user joins too.
    pub organisation_id: Option<String>,
    /// The sub-organisation's location, written as the user's `profileLocation`.
    pub profile_location: Option<Value>,
    pub external_ids: Vec<ExternalId>,
    pub by: Option<String>,
}

/// Freeing a user's email and/or phone for others (reference §8.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeUp {
    pub user_id: String,
    pub email: bool,
    pub phone: bool,
}

/// The terms-and-conditions type whose acceptance Sunbird keeps in `tncAcceptedVersion` and
/// `tncAcceptedOn`; the other types go into the `allTncAccepted` map.
pub const TNC_CONFIG: &str = "tncConfig";

/// A user accepting a version of one terms-and-conditions type (reference §8.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptTnc {
    pub user_id: String,
    pub tnc_type: String,
    pub version: String,
    pub by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Block,
    Unblock,
    Delete,
}

/// A role assignment (reference §8.8).
#[derive(Debug, Clone)]
pub enum RoleAssignment {
    /// v1: `roles` is the complete set of the user's roles in `organisation_id`.
    ReplaceForOrganisation {
        organisation_id: String,
        roles: Vec<String>,
    },
    /// v2: scopes added to or removed from single roles.
    Scopes(Vec<ScopeChange>),
}

#[derive(Debug, Clone)]
pub struct ScopeChange {
    pub role: String,
    pub add: bool,
    pub organisations: Vec<String>,
}

#[derive(Debug)]
pub struct AssignRoles {
    pub user_id: String,
    pub assignment: RoleAssignment,
    pub by: Option<String>,
    /// Sunbird's `sunbird_disable_multiple_org_role`: roles in one organisation only.
    pub single_organisation: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::Record;

    fn full() -> UserRecord {
        let some = || Some("x".to_string());
        let mut profile = Map::new();
        profile.insert("framework".into(), json!({"board": ["CBSE"]}));
        UserRecord {
            id: "u".into(),
            user_id: "u".into(),
            first_name: some(),
            last_name: some(),
            phone: some(),
            masked_phone: some(),
            country_code: some(),
            phone_verified: true,
            email: some(),
            masked_email: some(),
            email_verified: true,
            recovery_email: some(),
            recovery_phone: some(),
            prev_used_email: some(),
            prev_used_phone: some(),
            user_name: some(),
            login_id: some(),
            external_ids: Vec::new(),
            dob: some(),
            root_org_id: "o".into(),
            channel: "c".into(),
            managed_by: some(),
            status: STATUS_ACTIVE,
            is_deleted: false,
            is_blocked: Some(false),
            flags_value: 0,
            created_date: some(),
            created_by: some(),
            updated_date: some(),
            updated_by: some(),
            pii_tokens: BTreeMap::new(),
            profile,
        }
    }

    #[test]
    fn the_typed_field_list_is_the_records_fields() {
        let typed = serde_json::to_value(full()).expect("json");
        let mut keys: Vec<&str> = typed
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        let mut listed: Vec<&str> = USER_FIELDS
            .iter()
            .copied()
            .filter(|f| !matches!(*f, "_index" | "passwordHash"))
            .collect();
        listed.sort();
        assert_eq!(keys, listed, "USER_FIELDS must name every typed field");
    }

    #[test]
    fn open_fields_round_trip_and_never_shadow_typed_ones() {
        let record = full();
        let mut doc = record.to_doc();
        assert_eq!(doc["framework"], json!({"board": ["CBSE"]}));
        assert_eq!(UserRecord::from_value(doc.clone()).expect("parses"), record);
        let mut shadowing = record.clone();
        shadowing
            .profile
            .insert("firstName".into(), json!("shadow"));
        assert_eq!(shadowing.to_doc()["firstName"], "x", "the typed field wins");
        doc["_index"] = json!({"email": "t"});
        doc.as_object_mut().expect("object").remove("piiTokens");
        let old = UserRecord::from_value(doc).expect("an old row parses");
        assert_eq!(old.pii_tokens.get("email").map(String::as_str), Some("t"));
        assert!(!old.profile.contains_key("_index"));
    }
}
