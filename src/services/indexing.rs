//! Builds search documents from the store: the indexer calls this for every changed entity and
//! for full rebuilds, so the index is always a function of the store.

use std::sync::Arc;

use serde_json::Value;

use crate::domain::DomainResult;
use crate::search::{IndexDoc, IndexName};
use crate::services::users::view::index_document;
use crate::storage::{Store, Table, key_prefix};

pub const USER_TOPIC: &str = "user";
pub const ORGANISATION_TOPIC: &str = "organisation";
pub const LOCATION_TOPIC: &str = "location";

/// The index and table behind an outbox topic.
pub fn topic_target(topic: &str) -> Option<(IndexName, Table)> {
    match topic {
        USER_TOPIC => Some((IndexName::User, Table::User)),
        ORGANISATION_TOPIC => Some((IndexName::Organisation, Table::Organisation)),
        LOCATION_TOPIC => Some((IndexName::Location, Table::Location)),
        _ => None,
    }
}

/// What the index should hold for one entity: a document, or nothing (the row is gone).
pub enum IndexChange {
    Upsert(IndexName, IndexDoc),
    Delete(IndexName, String),
}

/// The current document of `id` under `topic`, read from the store.
pub async fn document_for(
    store: &Arc<dyn Store>,
    topic: &str,
    id: &str,
) -> DomainResult<Option<IndexChange>> {
    let Some((index, table)) = topic_target(topic) else {
        return Ok(None);
    };
    let Some(row) = store.get(table, id).await? else {
        return Ok(Some(IndexChange::Delete(index, id.to_string())));
    };
    let source = match index {
        IndexName::User => user_source(store, &row.doc, id).await?,
        IndexName::Organisation => organisation_source(&row.doc),
        IndexName::Location => row.doc.as_object().cloned().unwrap_or_default(),
    };
    Ok(Some(IndexChange::Upsert(
        index,
        IndexDoc {
            id: id.to_string(),
            version: row.version,
            source,
        },
    )))
}

async fn user_source(
    store: &Arc<dyn Store>,
    doc: &Value,
    id: &str,
) -> DomainResult<serde_json::Map<String, Value>> {
    let prefix = key_prefix(id);
    let memberships: Vec<Value> = store
        .scan(Table::UserOrganisation, &prefix, None, 10_000)
        .await?
        .into_iter()
        .map(|row| row.doc)
        .collect();
    let roles: Vec<Value> = store
        .scan(Table::UserRoles, &prefix, None, 1_000)
        .await?
        .into_iter()
        .map(|row| row.doc)
        .collect();
    let root_org_name = match doc.get("rootOrgId").and_then(Value::as_str) {
        Some(root) => store.get(Table::Organisation, root).await?.and_then(|org| {
            org.doc
                .get("orgName")
                .and_then(Value::as_str)
                .map(str::to_string)
        }),
        None => None,
    };
    Ok(index_document(
        doc,
        &memberships,
        &roles,
        root_org_name.as_deref(),
    ))
}

/// An organisation's search document: the row with Sunbird's `hashTagId`.
pub fn organisation_source(doc: &Value) -> serde_json::Map<String, Value> {
    let mut source = doc.as_object().cloned().unwrap_or_default();
    if let Some(id) = source.get("id").cloned() {
        source.entry("hashTagId").or_insert(id);
    }
    source
}
