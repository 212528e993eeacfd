//! Locations (reference §1.16, §8.15): create, update, delete and search over the `location`
//! table and index.
//!
//! Sunbird checks codes, parents and children against Elasticsearch, which lags behind writes;
//! here every check reads the store, and the two invariants that matter hold under concurrency:
//! - a code is unique (case-insensitively) through an atomic [`ClaimKind::LocationCode`] claim;
//! - no location is deleted while it has children. Children are listed in `LocationChildren`
//!   (`parentId␟childId`); a child create or re-parent writes the parent row back unchanged with
//!   `Expect::Version(read version)`, and a delete expects the version it read, so a delete that
//!   raced a new child conflicts instead of orphaning it. A conflict is retried from a fresh read.
//!
//! Every write adds a `location` outbox event; the indexer copies the row into the index.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::domain::location::{LocationTypes, location_code_claim};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::search::dsl::SearchLimits;
use crate::search::{IndexName, SearchIndex, SortOrder};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, doc_str, opt_nonblank, present, required_str, success};
use crate::services::search::{self, Steps};
use crate::storage::retry::{no_claims, read_modify_write};
use crate::storage::{
    ClaimKind, Expect, Row, Store, Table, Topic, Transaction, compose_key, key_prefix,
};

const PARENT_ID: &str = "parentId";
const PARENT_CODE: &str = "parentCode";
const PARENT_EITHER: &str = "parentId or parentCode";

#[derive(Clone)]
pub struct LocationService {
    store: Arc<dyn Store>,
    search: Arc<dyn SearchIndex>,
    types: Arc<LocationTypes>,
    limits: SearchLimits,
}

fn invalid_parameter(name: &str) -> DomainError {
    DomainError::rule(ErrorCode::invalidParameter, &[name])
}

fn duplicate_code(code: &str) -> DomainError {
    DomainError::rule(ErrorCode::errorDuplicateEntry, &[code, "code"])
}

fn invalid_request() -> DomainError {
    DomainError::rule(ErrorCode::invalidRequestData, &[])
}

/// A location's parent as the request names it. When both are given Sunbird resolves the code
/// and lets it win, so this does too.
enum ParentRef {
    Id(String),
    Code(String),
}

impl ParentRef {
    fn from_body(body: &Body) -> DomainResult<Option<ParentRef>> {
        let id = opt_nonblank(body, PARENT_ID)?;
        let code = opt_nonblank(body, PARENT_CODE)?;
        Ok(match (code, id) {
            (Some(code), _) => Some(ParentRef::Code(code)),
            (None, Some(id)) => Some(ParentRef::Id(id)),
            (None, None) => None,
        })
    }
}

impl LocationService {
    pub fn new(
        store: Arc<dyn Store>,
        search: Arc<dyn SearchIndex>,
        types: LocationTypes,
        limits: SearchLimits,
    ) -> LocationService {
        LocationService {
            store,
            search,
            types: Arc::new(types),
            limits,
        }
    }

    /// Sunbird leaves location writes open and relies on its API gateway to keep them away from
    /// the public; this service has no gateway in front of it, so writes need a system
    /// administrator (a user with ADMIN, or a caller on the internal listener).
    async fn require_admin(&self, caller: &Caller) -> DomainResult<()> {
        let authority = Authority::of(caller).await?;
        authority.require(authority.is_admin())
    }

    async fn get_location(&self, id: &str) -> DomainResult<Option<Row>> {
        self.store
            .get(Table::Location, id)
            .await
            .map_err(DomainError::from)
    }

    /// The parent row a request names, or the Sunbird error for a dangling reference.
    async fn resolve_parent(&self, parent: &ParentRef) -> DomainResult<Row> {
        let (id, named) = match parent {
            ParentRef::Id(id) => (Some(id.clone()), PARENT_ID),
            ParentRef::Code(code) => (
                self.store
                    .claim_owner(ClaimKind::LocationCode, &location_code_claim(code))
                    .await?,
                PARENT_CODE,
            ),
        };
        let Some(id) = id else {
            return Err(invalid_parameter(named));
        };
        self.get_location(&id)
            .await?
            .ok_or_else(|| invalid_parameter(named))
    }

    fn check_parent_level(&self, child_type: &str, parent: &Row) -> DomainResult<()> {
        let parent_type = doc_str(&parent.doc, "type").unwrap_or_default();
        if self.types.parent_allowed(child_type, parent_type) {
            Ok(())
        } else {
            Err(invalid_parameter(PARENT_EITHER))
        }
    }

    /// Fails when `code` is claimed by a location other than `owner`.
    async fn check_code_free(&self, code: &str, owner: Option<&str>) -> DomainResult<()> {
        let holder = self
            .store
            .claim_owner(ClaimKind::LocationCode, &location_code_claim(code))
            .await?;
        match holder {
            Some(holder) if Some(holder.as_str()) != owner => Err(duplicate_code(code)),
            _ => Ok(()),
        }
    }

    /// Adds the parent's side of a new parent link: the children row, and the parent row written
    /// back unchanged at the version that was read, so a concurrent delete of the parent and
    /// this write cannot both commit.
    fn link_to_parent(transaction: &mut Transaction, parent: &Row, child_id: &str) {
        transaction.put(
            Table::Location,
            parent.key.clone(),
            parent.doc.clone(),
            Expect::Version(parent.version),
        );
        transaction.put(
            Table::LocationChildren,
            compose_key(&[&parent.key, child_id]),
            json!({"parentId": parent.key, "id": child_id}),
            Expect::Any,
        );
    }

    /// POST /v1/location/create: `{"response": "SUCCESS", "id": <uuid>}`.
    pub async fn create(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        self.require_admin(caller).await?;
        if body.is_empty() {
            return Err(invalid_request());
        }
        let name = required_str(body, "name")?;
        let code = required_str(body, "code")?;
        let requested_type = required_str(body, "type")?;
        let Some(location_type) = self.types.canonical(&requested_type).map(str::to_string) else {
            return Err(DomainError::rule(
                ErrorCode::invalidValue,
                &["type", &requested_type, &self.types.listed()],
            ));
        };
        let parent_ref = ParentRef::from_body(body)?;
        let top_level = self.types.level(&location_type) == Some(0);
        match (&parent_ref, top_level) {
            (Some(_), true) => {
                return Err(DomainError::rule(
                    ErrorCode::parentNotAllowed,
                    &[PARENT_EITHER],
                ));
            }
            (None, false) => return Err(DomainError::mandatory_missing(PARENT_EITHER)),
            _ => {}
        }
        self.check_code_free(&code, None).await?;

        let id = uuid::Uuid::new_v4().to_string();
        let (id, code, name) = (id.as_str(), &code, &name);
        let (location_type, parent_ref) = (&location_type, &parent_ref);
        let attempt = || async move {
            let parent = match &parent_ref {
                Some(reference) => {
                    let parent = self.resolve_parent(reference).await?;
                    self.check_parent_level(location_type, &parent)?;
                    Some(parent)
                }
                None => None,
            };
            let mut doc = Map::new();
            doc.insert("id".into(), json!(id));
            doc.insert("code".into(), json!(code));
            doc.insert("name".into(), json!(name));
            doc.insert("type".into(), json!(location_type));
            if let Some(parent) = &parent {
                doc.insert("parentId".into(), json!(parent.key));
            }
            let mut transaction = Transaction::default();
            transaction.claim(ClaimKind::LocationCode, location_code_claim(code), id);
            transaction.put(Table::Location, id, Value::Object(doc), Expect::Absent);
            if let Some(parent) = &parent {
                Self::link_to_parent(&mut transaction, parent, id);
            }
            transaction.event(Topic::Location, id, 1);
            Ok((transaction, ()))
        };
        // A conflict means the parent changed (a child added, an edit) or went away: look again.
        read_modify_write(&*self.store, |_| duplicate_code(code), attempt).await?;
        tracing::info!(location.id = %id, location.kind = %location_type, "location created");
        let mut result = success();
        result.insert("id".into(), json!(id));
        Ok(result)
    }

    /// PATCH /v1/location/update: name, code and parent may change; type may not.
    pub async fn update(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        self.require_admin(caller).await?;
        let id = required_str(body, "id")?;
        if present(body, "type") {
            return Err(DomainError::rule(ErrorCode::unupdatableField, &["type"]));
        }
        let name = opt_nonblank(body, "name")?;
        let code = opt_nonblank(body, "code")?;
        let parent_ref = ParentRef::from_body(body)?;

        let (id, code, name, parent_ref) = (id.as_str(), &code, &name, &parent_ref);
        let attempt = || async move {
            let Some(current) = self.get_location(id).await? else {
                return Err(invalid_parameter("locationId"));
            };
            let location_type = doc_str(&current.doc, "type")
                .unwrap_or_default()
                .to_string();
            let current_code = doc_str(&current.doc, "code")
                .unwrap_or_default()
                .to_string();
            let current_parent = doc_str(&current.doc, "parentId").map(str::to_string);
            if let Some(code) = &code {
                self.check_code_free(code, Some(id)).await?;
            }
            let parent = match &parent_ref {
                Some(_) if self.types.level(&location_type) == Some(0) => {
                    return Err(DomainError::rule(
                        ErrorCode::parentNotAllowed,
                        &[PARENT_EITHER],
                    ));
                }
                Some(reference) => {
                    let parent = self.resolve_parent(reference).await?;
                    self.check_parent_level(&location_type, &parent)?;
                    Some(parent)
                }
                None => None,
            };

            let mut doc = current.doc.as_object().cloned().unwrap_or_default();
            let mut transaction = Transaction::default();
            if let Some(name) = &name {
                doc.insert("name".into(), json!(name));
            }
            if let Some(code) = &code {
                doc.insert("code".into(), json!(code));
                let (old_claim, new_claim) = (
                    location_code_claim(&current_code),
                    location_code_claim(code),
                );
                if old_claim != new_claim {
                    transaction.claim(ClaimKind::LocationCode, new_claim, id);
                    transaction.release(ClaimKind::LocationCode, old_claim, id);
                }
            }
            if let Some(parent) = &parent
                && current_parent.as_deref() != Some(parent.key.as_str())
            {
                doc.insert("parentId".into(), json!(parent.key));
                if let Some(old_parent) = &current_parent {
                    transaction.delete(
                        Table::LocationChildren,
                        compose_key(&[old_parent, id]),
                        Expect::Any,
                    );
                }
                Self::link_to_parent(&mut transaction, parent, id);
            }
            transaction.put(
                Table::Location,
                id,
                Value::Object(doc),
                Expect::Version(current.version),
            );
            transaction.event(Topic::Location, id, current.version + 1);
            Ok((transaction, ()))
        };
        let on_claim = |_| duplicate_code(code.as_deref().unwrap_or_default());
        read_modify_write(&*self.store, on_claim, attempt).await?;
        tracing::info!(location.id = %id, "location updated");
        Ok(success())
    }

    /// DELETE /v1/location/delete/{locationId}: refused while any location names it as parent.
    pub async fn delete(
        &self,
        caller: &Caller,
        location_id: &str,
    ) -> DomainResult<Map<String, Value>> {
        self.require_admin(caller).await?;
        let id = location_id.trim();
        if id.is_empty() {
            return Err(DomainError::mandatory_missing("locationId"));
        }
        let attempt = || async move {
            let Some(current) = self.get_location(id).await? else {
                return Err(invalid_parameter("locationId"));
            };
            let children = self
                .store
                .scan(Table::LocationChildren, &key_prefix(id), None, 1)
                .await?;
            if !children.is_empty() {
                return Err(DomainError::rule(
                    ErrorCode::invalidLocationDeleteRequest,
                    &[],
                ));
            }
            let mut transaction = Transaction::default();
            // A child created after the scan bumped this version: the delete then conflicts.
            transaction.delete(Table::Location, id, Expect::Version(current.version));
            if let Some(code) = doc_str(&current.doc, "code") {
                transaction.release(ClaimKind::LocationCode, location_code_claim(code), id);
            }
            if let Some(parent) = doc_str(&current.doc, "parentId") {
                transaction.delete(
                    Table::LocationChildren,
                    compose_key(&[parent, id]),
                    Expect::Any,
                );
            }
            transaction.event(Topic::Location, id, current.version + 1);
            Ok((transaction, ()))
        };
        read_modify_write(&*self.store, no_claims, attempt).await?;
        tracing::info!(location.id = %id, "location deleted");
        Ok(success())
    }

    /// POST /v1/location/search: `{"count": n, "response": [locations]}`, sorted by name when
    /// the filters name a type and no sort is given (Sunbird `LocationDaoImpl.search`).
    pub async fn search(&self, body: &Body) -> DomainResult<Map<String, Value>> {
        if body.is_empty() {
            return Err(invalid_request());
        }
        let mut request = body.clone();
        let filters_have_type = match request.get("filters") {
            // Unlike user and organisation search, no filters means every location.
            None | Some(Value::Null) => {
                request.insert("filters".into(), Value::Object(Map::new()));
                false
            }
            Some(Value::Object(filters)) => filters.contains_key("type"),
            Some(_) => return Err(invalid_request()),
        };
        let page = search::run(
            &*self.search,
            IndexName::Location,
            &request,
            &self.limits,
            Steps {
                rewrite: Some,
                adjust: |query| {
                    if filters_have_type && query.sort_by.is_empty() {
                        query.sort_by = vec![("name".to_string(), SortOrder::Asc)];
                    }
                },
                present: |_, location| Value::Object(location),
            },
        )
        .await?;
        // Location search answers `{count, response}`, not `{response: {count, content}}`.
        let mut result = Map::new();
        result.insert("count".into(), json!(page.count));
        result.insert("response".into(), Value::Array(page.content));
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    //! The interleavings the API tests can only hope to hit, forced: a store decorator runs a
    //! competing operation right after one chosen read of the operation under test.

    use std::sync::Mutex;

    use super::*;
    use crate::search::tantivy_index::TantivyIndex;
    use crate::storage::redb_store::RedbStore;
    use crate::storage::testing::{FaultyStore, StoreFaults};

    struct Fixture {
        store: Arc<dyn Store>,
        faults: Arc<StoreFaults>,
        service: LocationService,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let redb = RedbStore::open(&dir.path().join("store.redb")).expect("store");
        let (store, faults) = FaultyStore::new(Arc::new(redb));
        let store: Arc<dyn Store> = Arc::new(store);
        let search = TantivyIndex::open(&dir.path().join("index")).expect("index");
        let types = LocationTypes::new(&["state", "district", "block"]).expect("types");
        let service = LocationService::new(
            Arc::clone(&store),
            Arc::new(search),
            types,
            SearchLimits::default(),
        );
        Fixture {
            store,
            faults,
            service,
            _dir: dir,
        }
    }

    fn body(value: Value) -> Body {
        value.as_object().cloned().expect("object")
    }

    async fn create(service: &LocationService, request: Value) -> DomainResult<String> {
        let result = service.create(&Caller::Internal, &body(request)).await?;
        Ok(result["id"].as_str().expect("id").to_string())
    }

    fn rule_message(error: DomainError) -> String {
        match error {
            DomainError::Rule(rule) => rule.message,
            other => panic!("not a rule: {other}"),
        }
    }

    #[tokio::test]
    async fn a_child_created_after_the_delete_checked_for_children_stops_the_delete() {
        let fixture = fixture();
        let state = create(
            &fixture.service,
            json!({"name": "S", "code": "S1", "type": "state"}),
        )
        .await
        .expect("state");
        let service = fixture.service.clone();
        let parent = state.clone();
        let child = Arc::new(Mutex::new(None));
        let child_slot = Arc::clone(&child);
        // The delete has just seen no children; a child commits before the delete does.
        fixture.faults.after_next_read(
            Table::LocationChildren,
            Box::new(move || {
                Box::pin(async move {
                    let id = create(
                        &service,
                        json!({"name": "D", "code": "D1", "type": "district", "parentId": parent}),
                    )
                    .await
                    .expect("child created");
                    *child_slot.lock().expect("lock") = Some(id);
                })
            }),
        );
        let refused = fixture
            .service
            .delete(&Caller::Internal, &state)
            .await
            .expect_err("the delete must see the child");
        assert_eq!(
            rule_message(refused),
            ErrorCode::invalidLocationDeleteRequest.template()
        );
        let child = child.lock().expect("lock").clone().expect("child ran");
        let row = fixture
            .store
            .get(Table::Location, &child)
            .await
            .expect("get")
            .expect("child row");
        assert_eq!(row.doc["parentId"], state.as_str());
        assert!(
            fixture
                .store
                .get(Table::Location, &state)
                .await
                .expect("get")
                .is_some(),
            "parent kept"
        );
    }

    #[tokio::test]
    async fn a_parent_deleted_after_the_create_read_it_fails_the_create() {
        let fixture = fixture();
        let state = create(
            &fixture.service,
            json!({"name": "S", "code": "S1", "type": "state"}),
        )
        .await
        .expect("state");
        let service = fixture.service.clone();
        let parent = state.clone();
        // The create has just read its parent; the parent is deleted before the create commits.
        fixture.faults.after_next_read(
            Table::Location,
            Box::new(move || {
                Box::pin(async move {
                    service
                        .delete(&Caller::Internal, &parent)
                        .await
                        .expect("parent deleted");
                })
            }),
        );
        let refused = create(
            &fixture.service,
            json!({"name": "D", "code": "D1", "type": "district", "parentId": state}),
        )
        .await
        .expect_err("no orphan");
        assert_eq!(rule_message(refused), "Please provide valid parentId.");
        let children = fixture
            .store
            .scan(Table::LocationChildren, &key_prefix(&state), None, 10)
            .await
            .expect("scan");
        assert!(children.is_empty());
        // The code of the refused child was never claimed.
        assert_eq!(
            fixture
                .store
                .claim_owner(ClaimKind::LocationCode, "d1")
                .await
                .expect("owner"),
            None
        );
    }
}
