//! Locations (reference §1.16, §8.15): create, update, delete and search over the `location`
//! table and index.
//!
//! Sunbird checks codes, parents and children against Elasticsearch, which lags behind writes;
//! here every check reads the store, and the two invariants that matter hold under concurrency:
//! - a code is unique (case-insensitively) through an atomic [`ClaimKind::LocationCode`] claim;
//! - no location is deleted while it has children. Children are listed in `LocationChildren`
//!   (`parentId␟childId`). A child create or re-parent only *checks* the parent at the version
//!   it read ([`Transaction::check`]), so any number of children of one parent can be created at
//!   once without conflicting with each other. A delete first commits a deletion mark on the
//!   row (a new version, so children that read the parent before it conflict and look again),
//!   then looks for children, then deletes at the marked version. A child that finds a fresh
//!   mark waits briefly for the delete's outcome (503 if it lasts); one that finds a mark older
//!   than [`DELETION_MARK_TTL_MS`] (a delete that died half-way) clears it by writing the
//!   parent, and a delete still running behind it then conflicts. A conflict is retried from a
//!   fresh read.
//!
//! Every write adds a `location` outbox event; the indexer copies the row into the index.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::clock::Clock;
use crate::domain::location::{LocationTypes, location_code_claim};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::search::dsl::SearchLimits;
use crate::search::{IndexName, SearchIndex, SortOrder};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, doc_str, opt_nonblank, present, required_str, success};
use crate::services::search::{self, Steps};
use crate::storage::retry::{WRITE_ATTEMPTS, read_modify_write};
use crate::storage::{
    ClaimKind, Expect, Row, Store, StoreError, Table, Topic, Transaction, compose_key, key_prefix,
};

const PARENT_ID: &str = "parentId";
/// The field of a location row that marks a delete in progress (milliseconds since the epoch).
const DELETION_MARK: &str = "deletionStartedAt";
/// How long a deletion mark holds children back; a delete takes milliseconds.
pub const DELETION_MARK_TTL_MS: i64 = 30_000;
/// Reads of a parent with a fresh deletion mark before giving up (about a second in all).
const MARK_WAITS: usize = 14;
const PARENT_CODE: &str = "parentCode";
const PARENT_EITHER: &str = "parentId or parentCode";

#[derive(Clone)]
pub struct LocationService {
    store: Arc<dyn Store>,
    search: Arc<dyn SearchIndex>,
    types: Arc<LocationTypes>,
    limits: SearchLimits,
    clock: Arc<dyn Clock>,
}

// Sunbird's location actor tells its own checks (type, parent, code, existence, children) to
// the client as they are, so they carry the bare key (`0019`), not `UOS_LOCCRT0019`; the
// controller's field checks are wrapped as usual.

fn invalid_parameter(name: &str) -> DomainError {
    DomainError::rule(ErrorCode::invalidParameter, &[name]).bare()
}

fn duplicate_code(code: &str) -> DomainError {
    DomainError::rule(ErrorCode::errorDuplicateEntry, &[code, "code"]).bare()
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
        clock: Arc<dyn Clock>,
    ) -> LocationService {
        LocationService {
            store,
            search,
            types: Arc::new(types),
            limits,
            clock,
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
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

    fn mark_is_fresh(&self, row: &Row) -> bool {
        row.doc
            .get(DELETION_MARK)
            .and_then(Value::as_i64)
            .is_some_and(|started| self.now_ms() - started < DELETION_MARK_TTL_MS)
    }

    /// The parent once no delete of it is in progress: a delete takes a few milliseconds, so a
    /// fresh deletion mark is waited out (briefly, with growing pauses) and the parent read
    /// again; it is then either gone or unmarked. A mark that outlasts the waits answers 503.
    async fn settled_parent(&self, parent: &ParentRef) -> DomainResult<Row> {
        let mut pause = std::time::Duration::from_millis(2);
        for _ in 0..MARK_WAITS {
            let row = self.resolve_parent(parent).await?;
            if !self.mark_is_fresh(&row) {
                return Ok(row);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(100));
        }
        Err(DomainError::Unavailable(
            "the parent location is being deleted".into(),
        ))
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

    /// Adds the parent's side of a new parent link: the children row, and a check of the parent
    /// at the version that was read, so a concurrent delete of the parent and this write cannot
    /// both commit. A fresh deletion mark answers 503; a stale one is cleared by writing the
    /// parent back without it.
    fn link_to_parent(
        &self,
        transaction: &mut Transaction,
        parent: &Row,
        child_id: &str,
    ) -> DomainResult<()> {
        match parent.doc.get(DELETION_MARK).and_then(Value::as_i64) {
            Some(_) if self.mark_is_fresh(parent) => {
                return Err(DomainError::Unavailable(
                    "the parent location is being deleted".into(),
                ));
            }
            Some(_) => {
                let mut doc = parent.doc.clone();
                if let Some(fields) = doc.as_object_mut() {
                    fields.remove(DELETION_MARK);
                }
                transaction.put(
                    Table::Location,
                    parent.key.clone(),
                    doc,
                    Expect::Version(parent.version),
                );
            }
            None => transaction.check(
                Table::Location,
                parent.key.clone(),
                Expect::Version(parent.version),
            ),
        }
        transaction.put(
            Table::LocationChildren,
            compose_key(&[&parent.key, child_id]),
            json!({"parentId": parent.key, "id": child_id}),
            Expect::Any,
        );
        Ok(())
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
            )
            .bare());
        };
        let parent_ref = ParentRef::from_body(body)?;
        let top_level = self.types.level(&location_type) == Some(0);
        match (&parent_ref, top_level) {
            (Some(_), true) => {
                return Err(
                    DomainError::rule(ErrorCode::parentNotAllowed, &[PARENT_EITHER]).bare(),
                );
            }
            (None, false) => return Err(DomainError::mandatory_missing(PARENT_EITHER).bare()),
            _ => {}
        }
        self.check_code_free(&code, None).await?;

        let id = uuid::Uuid::new_v4().to_string();
        let (id, code, name) = (id.as_str(), &code, &name);
        let (location_type, parent_ref) = (&location_type, &parent_ref);
        let attempt = || async move {
            let parent = match &parent_ref {
                Some(reference) => {
                    let parent = self.settled_parent(reference).await?;
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
                self.link_to_parent(&mut transaction, parent, id)?;
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
                    return Err(
                        DomainError::rule(ErrorCode::parentNotAllowed, &[PARENT_EITHER]).bare(),
                    );
                }
                Some(reference) => {
                    let parent = self.settled_parent(reference).await?;
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
                self.link_to_parent(&mut transaction, parent, id)?;
            }
            // An edit ends a deletion in progress: the delete then conflicts on the version.
            doc.remove(DELETION_MARK);
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
        let has_children = || async move {
            let children = self
                .store
                .scan(Table::LocationChildren, &key_prefix(id), None, 1)
                .await?;
            Ok::<bool, DomainError>(!children.is_empty())
        };
        let refused = || DomainError::rule(ErrorCode::invalidLocationDeleteRequest, &[]).bare();
        for _ in 0..WRITE_ATTEMPTS {
            let Some(current) = self.get_location(id).await? else {
                return Err(invalid_parameter("locationId"));
            };
            if has_children().await? {
                return Err(refused());
            }
            // The mark: children that read the row before it now conflict and read it again,
            // and those reading it after it hold back, so the second look below is final.
            let mut doc = current.doc.as_object().cloned().unwrap_or_default();
            doc.insert(DELETION_MARK.into(), json!(self.now_ms()));
            let mut mark = Transaction::default();
            mark.put(
                Table::Location,
                id,
                Value::Object(doc.clone()),
                Expect::Version(current.version),
            );
            let marked = match self.store.commit(mark).await {
                Ok(info) => info.versions.first().copied().unwrap_or_default(),
                Err(StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            };
            if has_children().await? {
                doc.remove(DELETION_MARK);
                let mut unmark = Transaction::default();
                unmark.put(
                    Table::Location,
                    id,
                    Value::Object(doc),
                    Expect::Version(marked),
                );
                // A failure leaves a mark that children clear once it is stale.
                if let Err(error) = self.store.commit(unmark).await {
                    tracing::warn!(location.id = %id, %error, "deletion mark left in place");
                }
                return Err(refused());
            }
            let mut transaction = Transaction::default();
            // A stale-mark clearer or an edit since the mark changed the version: conflict.
            transaction.delete(Table::Location, id, Expect::Version(marked));
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
            transaction.event(Topic::Location, id, marked + 1);
            match self.store.commit(transaction).await {
                Ok(_) => {
                    tracing::info!(location.id = %id, "location deleted");
                    return Ok(success());
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(DomainError::Unavailable(
            "the location changed concurrently too often".into(),
        ))
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
                // Sunbird's index adds `identifier` (the id) to every document it writes.
                present: |_, mut location| {
                    if let Some(id) = location.get("id").cloned() {
                        location.insert("identifier".into(), id);
                    }
                    Value::Object(location)
                },
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
    use crate::clock::ManualClock;
    use crate::search::tantivy_index::TantivyIndex;
    use crate::storage::redb_store::RedbStore;
    use crate::storage::testing::{FaultyStore, StoreFaults};

    struct Fixture {
        store: Arc<dyn Store>,
        faults: Arc<StoreFaults>,
        service: LocationService,
        clock: Arc<ManualClock>,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let redb = RedbStore::open(&dir.path().join("store.redb")).expect("store");
        let (store, faults) = FaultyStore::new(Arc::new(redb));
        let store: Arc<dyn Store> = Arc::new(store);
        let search = TantivyIndex::open(&dir.path().join("index")).expect("index");
        let types = LocationTypes::new(&["state", "district", "block"]).expect("types");
        let clock = Arc::new(ManualClock::at(chrono::Local::now()));
        let service = LocationService::new(
            Arc::clone(&store),
            Arc::new(search),
            types,
            SearchLimits::default(),
            Arc::clone(&clock) as Arc<dyn Clock>,
        );
        Fixture {
            store,
            faults,
            service,
            clock,
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

    #[tokio::test]
    async fn a_delete_that_commits_while_a_child_is_created_leaves_no_orphan() {
        let fixture = fixture();
        let state = create(
            &fixture.service,
            json!({"name": "S", "code": "S2", "type": "state"}),
        )
        .await
        .expect("state");
        let service = fixture.service.clone();
        let doomed = state.clone();
        // The child has just read its parent; the parent is deleted before the child commits.
        fixture.faults.after_next_read(
            Table::Location,
            Box::new(move || {
                Box::pin(async move {
                    service
                        .delete(&Caller::Internal, &doomed)
                        .await
                        .expect("the childless parent is deleted");
                })
            }),
        );
        let refused = create(
            &fixture.service,
            json!({"name": "D", "code": "D2", "type": "district", "parentId": state}),
        )
        .await
        .expect_err("the parent is gone");
        assert_eq!(
            rule_message(refused),
            ErrorCode::invalidParameter.format(&[PARENT_ID])
        );
        let children = fixture
            .store
            .scan(Table::LocationChildren, &key_prefix(&state), None, 10)
            .await
            .expect("scan");
        assert!(children.is_empty(), "no child row left behind");
        assert!(
            fixture
                .store
                .claim_owner(ClaimKind::LocationCode, &location_code_claim("D2"))
                .await
                .expect("claim")
                .is_none(),
            "the refused child's code stays free"
        );
    }

    async fn mark(fixture: &Fixture, id: &str, started_ms: i64) {
        let row = fixture
            .store
            .get(Table::Location, id)
            .await
            .expect("get")
            .expect("row");
        let mut doc = row.doc.clone();
        doc[DELETION_MARK] = json!(started_ms);
        let mut transaction = Transaction::default();
        transaction.put(Table::Location, id, doc, Expect::Version(row.version));
        fixture.store.commit(transaction).await.expect("mark");
    }

    #[tokio::test]
    async fn a_fresh_deletion_mark_holds_children_back_and_a_stale_one_is_cleared() {
        let fixture = fixture();
        let state = create(
            &fixture.service,
            json!({"name": "S", "code": "S3", "type": "state"}),
        )
        .await
        .expect("state");
        let now = fixture.service.now_ms();
        mark(&fixture, &state, now).await;
        let held = create(
            &fixture.service,
            json!({"name": "D", "code": "D3", "type": "district", "parentId": state}),
        )
        .await
        .expect_err("a delete is in progress");
        assert!(matches!(held, DomainError::Unavailable(_)), "{held}");

        // The delete died: once the mark is stale, a child clears it and is created.
        fixture
            .clock
            .advance(chrono::Duration::milliseconds(DELETION_MARK_TTL_MS));
        let before = fixture
            .store
            .get(Table::Location, &state)
            .await
            .expect("get")
            .expect("row");
        create(
            &fixture.service,
            json!({"name": "D", "code": "D3", "type": "district", "parentId": state}),
        )
        .await
        .expect("created past a stale mark");
        let after = fixture
            .store
            .get(Table::Location, &state)
            .await
            .expect("get")
            .expect("row");
        assert!(after.doc.get(DELETION_MARK).is_none(), "{}", after.doc);
        assert_eq!(
            after.version,
            before.version + 1,
            "clearing bumps the version"
        );
    }

    #[tokio::test]
    async fn children_of_one_parent_do_not_touch_the_parent_row() {
        let fixture = fixture();
        let state = create(
            &fixture.service,
            json!({"name": "S", "code": "S4", "type": "state"}),
        )
        .await
        .expect("state");
        let creates = (0..32).map(|n| {
            let service = fixture.service.clone();
            let state = state.clone();
            async move {
                create(
                    &service,
                    json!({"name": format!("D{n}"), "code": format!("S4D{n}"), "type": "district", "parentId": state}),
                )
                .await
            }
        });
        let outcomes = futures::future::join_all(creates).await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        let parent = fixture
            .store
            .get(Table::Location, &state)
            .await
            .expect("get")
            .expect("row");
        assert_eq!(parent.version, 1, "children only check their parent");
    }
}
