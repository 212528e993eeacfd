//! How stored user rows are shown: read responses (v1-v5, private), search hits and the search
//! index document. PII is sealed in the store and in the index; it is opened here and masked the
//! Sunbird way (email and phone keep only a few characters, usernames are shown in clear).

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use crate::actors::user_owner::open_external_id;
use crate::crypto::PiiVault;
use crate::domain::contact::{mask_email, mask_phone};
use crate::domain::role::scope_organisations;
use crate::domain::rules::is_minor;
use crate::domain::user::SealedExternalId;
use crate::search::documents::{
    PII_TOKENS_FIELD, into_fields, is_deleted_membership, membership_view, role_view,
};
use crate::services::access::Relation;

/// PII fields shown masked after opening.
pub const MASKED_PII: [&str; 6] = [
    "email",
    "phone",
    "recoveryEmail",
    "recoveryPhone",
    "prevUsedEmail",
    "prevUsedPhone",
];
/// PII fields shown in clear after opening.
pub const CLEAR_PII: [&str; 2] = ["userName", "loginId"];
/// Stored fields never shown.
pub const INTERNAL_FIELDS: [&str; 2] = ["passwordHash", PII_TOKENS_FIELD];
/// Fields Sunbird never returns from read or search (`ProjectUtil.excludes`).
pub const EXCLUDED_FIELDS: [&str; 4] = [
    "completeness",
    "missingFields",
    "profileVisibility",
    "loginId",
];
/// What a caller with no relation to a user sees of them, in search hits and by key: a name
/// card. Everything else (contacts, date of birth, address, profile details, external ids,
/// roles, memberships) is for the user, their parent and their administrators.
pub const PUBLIC_PROFILE_FIELDS: [&str; 8] = [
    "id",
    "identifier",
    "userId",
    "firstName",
    "lastName",
    "avatar",
    "rootOrgId",
    "channel",
];

/// Shows a user's view as the caller's relation allows: the user and their parent see all of
/// it; administrators see it without external ids (as read does); anyone else sees the name
/// card of [`PUBLIC_PROFILE_FIELDS`]. The address is never shown (read never shows it).
pub fn restrict_to(relation: Relation, view: &mut Map<String, Value>) {
    view.remove("address");
    match relation {
        Relation::Own => {}
        Relation::Administrator => {
            view.remove("externalIds");
        }
        Relation::Other => view.retain(|field, _| PUBLIC_PROFILE_FIELDS.contains(&field.as_str())),
    }
}

/// Keys Sunbird adds as null to v1-v3 reads when absent (`Util.getUserDefaultValue`).
const READ_DEFAULT_NULLS: [&str; 15] = [
    "avatar",
    "gender",
    "language",
    "lastLoginTime",
    "location",
    "profileSummary",
    "profileVisibility",
    "tempPassword",
    "thumbnail",
    "registryId",
    "accesscode",
    "webPages",
    "currentLoginTime",
    "password",
    "loginId",
];

/// The read routes' shape versions: v1, v2 and v3 (and private read) share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadVersion {
    V3,
    V4,
    V5,
}

/// What a read may show beyond the basic shape.
pub struct ReadContext<'a> {
    pub vault: &'a PiiVault,
    pub version: ReadVersion,
    pub private: bool,
    /// The caller is the user or their managing parent.
    pub own_profile: bool,
    pub fields: &'a [String],
    pub root_org: Option<Value>,
    pub memberships: Vec<Value>,
    pub roles: Vec<Value>,
    pub tnc_config: Option<Value>,
    pub today: NaiveDate,
}

/// The kind a sealed field's value is bound to (with the user id) when sealed; `None` for a
/// field that is not sealed PII, which is then never opened (no guessed kind).
pub fn sealed_kind(field: &str) -> Option<&'static str> {
    match field {
        "email" | "recoveryEmail" | "prevUsedEmail" => Some("email"),
        "phone" | "recoveryPhone" | "prevUsedPhone" => Some("phone"),
        "userName" | "loginId" => Some("userName"),
        _ => None,
    }
}

fn open_field(vault: &PiiVault, row: &str, field: &str, value: &Value) -> Option<String> {
    let sealed = value.as_str().filter(|s| !s.is_empty())?;
    vault.open(row, sealed_kind(field)?, sealed).ok()
}

/// Opens sealed PII in `map`: contact fields masked, usernames in clear. Empty strings (a
/// deleted user's scrubbed values) stay empty.
pub fn reveal_pii(vault: &PiiVault, map: &mut Map<String, Value>) {
    let row = map
        .get("id")
        .or_else(|| map.get("userId"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for field in MASKED_PII {
        if let Some(value) = map.get(field) {
            let shown = match open_field(vault, &row, field, value) {
                Some(plain) if sealed_kind(field) == Some("email") => json!(mask_email(&plain)),
                Some(plain) => json!(mask_phone(&plain)),
                None if value.is_string() => json!(""),
                None => Value::Null,
            };
            map.insert(field.to_string(), shown);
        }
    }
    for field in CLEAR_PII {
        if let Some(value) = map.get(field) {
            let shown = match open_field(vault, &row, field, value) {
                Some(plain) => json!(plain),
                None if value.is_string() => json!(""),
                None => Value::Null,
            };
            map.insert(field.to_string(), shown);
        }
    }
    if let Some(Value::Array(stored)) = map.get_mut("externalIds") {
        for entry in stored.iter_mut() {
            *entry = shown_external_id(vault, &row, entry);
        }
    }
}

/// A stored external id as Sunbird shows it, `{id, idType, provider}` (those of them the entry
/// has: a search may project some away), the id opened or empty when no configured key opens
/// it; the tokens are never shown.
fn shown_external_id(vault: &PiiVault, row: &str, stored: &Value) -> Value {
    let text = |key: &str| {
        stored
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let sealed = SealedExternalId {
        id: text("id"),
        id_type: text("idType"),
        provider: text("provider"),
        id_token: text("idToken"),
        claim_token: text("claimToken"),
    };
    let mut shown = Map::new();
    if stored.get("id").is_some() {
        let id = open_external_id(vault, row, &sealed).map(|external| external.id);
        shown.insert("id".into(), json!(id.unwrap_or_default()));
    }
    for key in ["idType", "provider"] {
        if let Some(value) = stored.get(key) {
            shown.insert(key.into(), value.clone());
        }
    }
    Value::Object(shown)
}

fn role_names_for(roles: &[Value], organisation_id: &str) -> Vec<String> {
    roles
        .iter()
        .filter(|role| {
            scope_organisations(role.get("scope"))
                .iter()
                .any(|org| org == organisation_id)
        })
        .filter_map(|role| role.get("role").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The user read response (`result.response`).
pub fn read_view(doc: Value, context: ReadContext<'_>) -> Map<String, Value> {
    let mut view = into_fields(doc);
    let encrypted_email = view.get("email").cloned();
    let encrypted_phone = view.get("phone").cloned();
    for field in INTERNAL_FIELDS.iter().chain(EXCLUDED_FIELDS.iter()) {
        view.remove(*field);
    }
    view.remove("address");
    reveal_pii(context.vault, &mut view);
    if context.private {
        view.insert("encEmail".into(), encrypted_email.unwrap_or(Value::Null));
        view.insert("encPhone".into(), encrypted_phone.unwrap_or(Value::Null));
    }

    let user_id = view
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    view.insert("identifier".into(), json!(user_id));

    // Organisations: active memberships, with per-organisation role names before v5.
    let organisations: Vec<Value> = context
        .memberships
        .iter()
        .filter(|m| !is_deleted_membership(m))
        .map(|membership| {
            let names = match context.version {
                ReadVersion::V5 => None,
                _ => membership
                    .get("organisationId")
                    .and_then(Value::as_str)
                    .map(|org| role_names_for(&context.roles, org)),
            };
            membership_view(membership, names)
        })
        .collect();
    view.insert("organisations".into(), Value::Array(organisations));

    match context.version {
        ReadVersion::V5 => {
            let roles: Vec<Value> = context.roles.iter().map(role_view).collect();
            view.insert("roles".into(), Value::Array(roles));
        }
        _ => {
            view.remove("roles");
        }
    }

    let has_root_org = context.root_org.is_some();
    view.insert(
        "rootOrg".into(),
        context.root_org.clone().unwrap_or_else(|| json!({})),
    );

    match context.version {
        ReadVersion::V3 => {
            for key in ["userType", "userSubType"] {
                view.entry(key.to_string()).or_insert(Value::Null);
            }
            let location_ids: Vec<Value> = view
                .get("profileLocation")
                .and_then(Value::as_array)
                .map(|locations| {
                    locations
                        .iter()
                        .filter_map(|l| l.get("id").cloned())
                        .collect()
                })
                .unwrap_or_default();
            view.insert("locationIds".into(), Value::Array(location_ids));
        }
        ReadVersion::V4 | ReadVersion::V5 => {
            for key in ["userType", "userSubType", "locationIds"] {
                view.remove(key);
            }
        }
    }

    if context.version == ReadVersion::V3 || !has_root_org {
        for key in READ_DEFAULT_NULLS {
            view.entry(key.to_string()).or_insert(Value::Null);
        }
        for key in ["emailVerified", "phoneVerified"] {
            view.entry(key.to_string()).or_insert(json!(true));
        }
    }

    add_tnc_fields(&mut view, context.tnc_config.as_ref());
    let flags = view.get("flagsValue").and_then(Value::as_i64).unwrap_or(0);
    view.insert("stateValidated".into(), json!(flags & 4 != 0));
    if let Some(dob) = view.get("dob").and_then(Value::as_str) {
        let minor = is_minor(dob, context.today);
        view.insert("isMinor".into(), json!(minor));
    }
    // Sunbird shows external ids on the user's own profile without `fields`, or when `fields`
    // asks for them; here never to anyone else (see the README).
    let asked = context
        .fields
        .iter()
        .any(|field| field.contains("externalIds"));
    if !(context.own_profile && (context.fields.is_empty() || asked)) {
        view.remove("externalIds");
    }
    if !context.fields.is_empty() {
        view.insert("lastLoginTime".into(), json!(0));
        if context.fields.iter().any(|f| f == "topic" || f == "topics") {
            view.insert("topics".into(), json!([]));
        }
    }
    view
}

/// `tncLatestVersion`, `tncLatestVersionUrl` and `promptTnC` from the `tncConfig` setting.
fn add_tnc_fields(view: &mut Map<String, Value>, tnc_config: Option<&Value>) {
    let Some(config) = tnc_config else {
        return;
    };
    let Some(latest) = config.get("latestVersion").and_then(Value::as_str) else {
        return;
    };
    let url = config
        .get(latest)
        .and_then(|v| v.get("url"))
        .cloned()
        .unwrap_or(Value::Null);
    let accepted = view.get("tncAcceptedVersion").and_then(Value::as_str);
    // The acceptance compares versions ignoring case, as Sunbird's does; so does the prompt.
    let prompt = !accepted.is_some_and(|version| version.eq_ignore_ascii_case(latest));
    view.insert("tncLatestVersion".into(), json!(latest));
    view.insert("tncLatestVersionUrl".into(), url);
    view.insert("promptTnC".into(), json!(prompt));
}

/// The versions of user search: v1 and v2 rebuild per-organisation roles, v3 keeps `roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchVersion {
    V1,
    V2,
    V3,
}

/// One search hit as returned: tokens removed, PII opened and masked.
pub fn search_hit_view(
    vault: &PiiVault,
    source: &Map<String, Value>,
    version: SearchVersion,
) -> Map<String, Value> {
    let mut view = source.clone();
    view.remove(PII_TOKENS_FIELD);
    for field in INTERNAL_FIELDS.iter().chain(EXCLUDED_FIELDS.iter()) {
        view.remove(*field);
    }
    view.remove("encEmail");
    view.remove("encPhone");
    reveal_pii(vault, &mut view);
    if version != SearchVersion::V3 {
        let roles: Vec<Value> = view
            .get("roles")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(organisations)) = view.get_mut("organisations") {
            for organisation in organisations.iter_mut() {
                let names = organisation
                    .get("organisationId")
                    .and_then(Value::as_str)
                    .map(|org| role_names_for(&roles, org))
                    .unwrap_or_default();
                if let Some(map) = organisation.as_object_mut() {
                    map.insert("roles".into(), json!(names));
                }
            }
        }
        if view.contains_key("roles") {
            view.insert("roles".into(), json!([]));
        }
    }
    if version == SearchVersion::V1 {
        for key in ["userType", "userSubType"] {
            view.entry(key.to_string()).or_insert(Value::Null);
        }
    } else {
        for key in ["userType", "userSubType", "locationIds"] {
            view.remove(key);
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{BlindIndex, PiiCipher};
    use crate::search::documents::index_document;

    fn vault() -> PiiVault {
        PiiVault::new(PiiCipher::new(&[3u8; 32]), BlindIndex::new(&[4u8; 32]))
    }

    #[test]
    fn every_sealed_field_has_its_kind_and_nothing_else_is_opened() {
        for field in MASKED_PII.iter().chain(CLEAR_PII.iter()) {
            assert!(sealed_kind(field).is_some(), "{field} has no kind");
        }
        assert_eq!(sealed_kind("recoveryEmail"), Some("email"));
        assert_eq!(sealed_kind("prevUsedPhone"), Some("phone"));
        assert_eq!(sealed_kind("loginId"), Some("userName"));
        // A field is not sealed PII because of how its name ends.
        for field in ["firstName", "address", "workEmail", "EMAIL", "externalIds"] {
            assert_eq!(sealed_kind(field), None, "{field}");
        }
        let vault = vault();
        let sealed = vault.seal("u-1", "userName", "secret").expect("seal");
        assert_eq!(
            open_field(&vault, "u-1", "userName", &json!(sealed)).as_deref(),
            Some("secret")
        );
        assert_eq!(open_field(&vault, "u-1", "firstName", &json!(sealed)), None);
    }

    #[test]
    fn pii_is_opened_and_masked() {
        let vault = vault();
        let seal = |kind: &str, value: &str| vault.seal("u1", kind, value).expect("sealed");
        let mut map = Map::new();
        map.insert("id".into(), json!("u1"));
        map.insert("email".into(), json!(seal("email", "asha.rao@example.org")));
        map.insert("phone".into(), json!(seal("phone", "9876543210")));
        map.insert("userName".into(), json!(seal("userName", "asharao_ab12")));
        // Another user's sealed phone copied into this row does not open here.
        map.insert(
            "recoveryPhone".into(),
            json!(vault.seal("u2", "phone", "9876500000").expect("sealed")),
        );
        map.insert("prevUsedEmail".into(), json!(""));
        reveal_pii(&vault, &mut map);
        assert_eq!(map["email"], "as******@example.org");
        assert_eq!(map["phone"], "******3210");
        assert_eq!(map["userName"], "asharao_ab12");
        assert_eq!(map["prevUsedEmail"], "");
        assert_eq!(map["recoveryPhone"], "");
    }

    #[test]
    fn search_hits_never_carry_tokens_or_ciphertext() {
        let vault = vault();
        let doc = json!({
            "id": "u1",
            "email": vault.seal("u1", "email", "asha.rao@example.org").expect("sealed"),
            "piiTokens": {"email": "token"},
            "passwordHash": "secret",
            "roles": [{"role": "PUBLIC", "scope": [{"organisationId": "o1"}]}],
        });
        let source = index_document(&doc, &[json!({"organisationId": "o1"})], &[], Some("Org"));
        assert_eq!(source["piiTokens"]["email"], "token");
        assert!(source.get("passwordHash").is_none());
        let hit = search_hit_view(&vault, &source, SearchVersion::V3);
        assert!(hit.get("piiTokens").is_none());
        assert_eq!(hit["email"], "as******@example.org");
        assert_eq!(hit["rootOrgName"], "Org");
    }
}
