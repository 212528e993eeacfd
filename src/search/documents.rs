//! The search documents, in one place: what the indexer writes for a user, an organisation and
//! a location, built from the store's rows. Read views (services) reuse the membership and role
//! shapes so a search hit and a read agree.

use serde_json::{Map, Value, json};

/// The index document keeps blind-index tokens of PII here, for exact filters.
pub const PII_TOKENS_FIELD: &str = "piiTokens";

pub fn membership_view(membership: &Value, role_names: Option<Vec<String>>) -> Value {
    let mut view = membership.as_object().cloned().unwrap_or_default();
    view.remove("roles");
    if let Some(association) = view.get("associationType").and_then(Value::as_i64) {
        view.insert("isSSO".into(), json!(association & 1 != 0));
        view.insert("isSelfDeclaration".into(), json!(association & 2 != 0));
        view.insert("isSystemUpload".into(), json!(association & 4 != 0));
    }
    if let Some(names) = role_names.filter(|names| !names.is_empty()) {
        view.insert("roles".into(), json!(names));
    }
    Value::Object(view)
}

/// A role row as v5 read and search show it.
pub fn role_view(role: &Value) -> Value {
    let mut view = Map::new();
    for key in [
        "role",
        "scope",
        "createdBy",
        "createdDate",
        "updatedBy",
        "updatedDate",
    ] {
        view.insert(
            key.to_string(),
            role.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(view)
}

pub fn is_deleted_membership(membership: &Value) -> bool {
    membership
        .get("isDeleted")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The search document of a user: the stored row (PII still sealed, as Sunbird's index holds
/// ciphertext), its active memberships, its roles, the root organisation's name, and the blind
/// tokens under [`PII_TOKENS_FIELD`] so exact PII filters work without plaintext in the index.
pub fn index_document(
    doc: &Value,
    memberships: &[Value],
    roles: &[Value],
    root_org_name: Option<&str>,
) -> Map<String, Value> {
    let mut source = doc.as_object().cloned().unwrap_or_default();
    // The blind-index tokens keep their name: the store's field is the index's.
    source.entry(PII_TOKENS_FIELD).or_insert_with(|| json!({}));
    source.remove("passwordHash");
    let organisations: Vec<Value> = memberships
        .iter()
        .filter(|m| !is_deleted_membership(m))
        .map(|m| membership_view(m, None))
        .collect();
    source.insert("organisations".into(), Value::Array(organisations));
    source.insert(
        "roles".into(),
        Value::Array(roles.iter().map(role_view).collect()),
    );
    if let Some(name) = root_org_name {
        source.insert("rootOrgName".into(), json!(name));
    }
    if let Some(id) = source.get("id").cloned() {
        source.insert("identifier".into(), id);
    }
    source
}

/// The fields of a stored document, taken by value (a document is always an object; anything
/// else has none).
pub fn into_fields(doc: Value) -> serde_json::Map<String, Value> {
    match doc {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// An organisation's search document: the row with Sunbird's `hashTagId`.
pub fn organisation_document(doc: Value) -> serde_json::Map<String, Value> {
    let mut source = into_fields(doc);
    if let Some(id) = source.get("id").cloned() {
        source.entry("hashTagId").or_insert(id);
    }
    source
}
