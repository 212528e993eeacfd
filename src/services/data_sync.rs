//! POST /v1/data/sync (reference §1.10, §8.15): re-index given users, organisations or
//! locations from the store, or rebuild a whole index when no ids are given.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::actors::indexer::IndexerClient;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::search::IndexName;
use crate::services::access::{Authority, Caller};
use crate::services::audit::AuditTrail;
use crate::services::json::{Body, success};
use crate::storage::Topic;

/// Ids handed to the indexer per call, so one call stays well inside the actor timeout.
const SYNC_CHUNK: usize = 500;

#[derive(Clone)]
pub struct DataSyncService {
    indexer: IndexerClient,
    rebuild_timeout: Duration,
    audit: AuditTrail,
}

/// What to sync.
struct SyncRequest {
    topic: Topic,
    index: IndexName,
    ids: Vec<String>,
    /// `operationType: "sync"`: answer with `esSyncResponse`.
    report: bool,
}

fn parse(body: &Body) -> DomainResult<SyncRequest> {
    let (topic, index) = match body.get("objectType") {
        None | Some(Value::Null) => {
            // Sunbird throws this template unformatted.
            return Err(DomainError::unfilled(ErrorCode::dataTypeError));
        }
        Some(Value::String(kind)) => match Topic::from_name(kind) {
            Some(Topic::User) => (Topic::User, IndexName::User),
            Some(Topic::Organisation) => (Topic::Organisation, IndexName::Organisation),
            Some(Topic::Location) => (Topic::Location, IndexName::Location),
            Some(Topic::Note) => (Topic::Note, IndexName::Note),
            Some(Topic::Notification | Topic::Bulk) | None => {
                return Err(DomainError::rule(ErrorCode::invalidObjectType, &[]));
            }
        },
        Some(_) => return Err(DomainError::rule(ErrorCode::invalidObjectType, &[])),
    };
    let ids = match body.get("objectIds") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut ids: Vec<String> = Vec::with_capacity(items.len());
            let mut seen = std::collections::HashSet::new();
            for item in items {
                match item {
                    Value::String(id) if !id.trim().is_empty() => {
                        let id = id.trim().to_string();
                        if seen.insert(id.clone()) {
                            ids.push(id);
                        }
                    }
                    Value::String(_) => {}
                    _ => return Err(DomainError::data_type("objectIds", "List of String")),
                }
            }
            ids
        }
        Some(_) => return Err(DomainError::data_type("objectIds", "List")),
    };
    let report = match body.get("operationType") {
        None | Some(Value::Null) => false,
        Some(Value::String(kind)) if kind.trim().is_empty() => false,
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("sync") => true,
        // Sunbird waits ten seconds for an answer that never comes and fails with a 500.
        Some(other) => {
            let shown = other
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| other.to_string());
            return Err(DomainError::rule(
                ErrorCode::invalidValue,
                &["operationType", &shown, "[sync]"],
            ));
        }
    };
    Ok(SyncRequest {
        topic,
        index,
        ids,
        report,
    })
}

impl DataSyncService {
    pub fn new(
        indexer: IndexerClient,
        rebuild_timeout: Duration,
        audit: AuditTrail,
    ) -> DataSyncService {
        DataSyncService {
            indexer,
            rebuild_timeout,
            audit,
        }
    }

    /// Sunbird leaves sync open; it rewrites whole indexes, so here it needs a system
    /// administrator.
    pub async fn sync(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        authority.require(authority.is_admin())?;
        let request = parse(body)?;
        self.audit
            .record_or_log(
                caller,
                "data.sync",
                request.topic.name(),
                json!({"ids": request.ids.len()}),
            )
            .await;
        if request.ids.is_empty() {
            return self.rebuild(request).await;
        }
        let mut indexed: Vec<String> = Vec::new();
        for chunk in request.ids.chunks(SYNC_CHUNK) {
            indexed.extend(self.indexer.sync(request.topic, chunk.to_vec()).await?);
        }
        tracing::info!(
            sync.topic = request.topic.name(),
            sync.requested = request.ids.len(),
            sync.indexed = indexed.len(),
            "data sync done"
        );
        let mut result = Map::new();
        if request.report {
            let report: Map<String, Value> =
                indexed.into_iter().map(|id| (id, json!(true))).collect();
            result.insert("esSyncResponse".into(), Value::Object(report));
        }
        result.extend(success());
        Ok(result)
    }

    /// No ids: rebuild the whole index from the store. With `operationType: "sync"` the answer
    /// waits for the rebuild; otherwise it runs in the background, as Sunbird's sync does.
    async fn rebuild(&self, request: SyncRequest) -> DomainResult<Map<String, Value>> {
        if request.report {
            let count = self
                .indexer
                .rebuild(Some(request.index), self.rebuild_timeout)
                .await?;
            tracing::info!(
                sync.topic = request.topic.name(),
                sync.indexed = count,
                "index rebuilt"
            );
            return Ok(success());
        }
        let indexer = self.indexer.clone();
        let timeout = self.rebuild_timeout;
        let topic = request.topic;
        tokio::spawn(async move {
            match indexer.rebuild(Some(request.index), timeout).await {
                Ok(count) => {
                    tracing::info!(
                        sync.topic = topic.name(),
                        sync.indexed = count,
                        "index rebuilt"
                    )
                }
                Err(error) => {
                    tracing::error!(sync.topic = topic.name(), error = %error, "index rebuild failed")
                }
            }
        });
        Ok(success())
    }
}
