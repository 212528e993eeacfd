//! Legacy user notes (reference §1.14): `user_notes` rows by note id, indexed in `usernotes`
//! for search. A note belongs to its user: the user (or their managing parent) and ADMINs read,
//! update and delete it; search answers only the caller's own notes, as Sunbird's does. A
//! delete is soft (`isDeleted`), as in Sunbird.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::rules::new_timestamp_id;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::search::dsl::SearchLimits;
use crate::search::{Filter, IndexName, Scalar, SearchIndex};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, opt_nonblank, required_str, response};
use crate::services::search::{self, Steps};
use crate::storage::records::user;
use crate::storage::{Expect, Row, Store, Table, Topic, Transaction};

#[derive(Clone)]
pub struct NoteService {
    store: Arc<dyn Store>,
    search: Arc<dyn SearchIndex>,
    clock: Arc<dyn Clock>,
    limits: SearchLimits,
}

/// `tags`, when given: a non-empty list of strings.
fn tags_of(body: &Body) -> DomainResult<Option<Value>> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Ok(Some(Value::Array(items.clone())))
        }
        Some(_) => Err(DomainError::rule(ErrorCode::invalidParameter, &["tags"])),
    }
}

/// Sunbird answers a note id it cannot find with its parameter-value template unfilled, 404.
fn unknown_note() -> DomainError {
    DomainError::unfilled(ErrorCode::invalidParameterValue).with_status(404)
}

/// `{response: {count, note, content}}`: Sunbird's read and search answers list the notes
/// twice.
fn listing(notes: Vec<Value>, count: u64) -> Map<String, Value> {
    response(json!({"count": count, "note": notes, "content": notes}))
}

fn view(mut doc: Value) -> Value {
    if let Some(map) = doc.as_object_mut() {
        map.remove("isDeleted");
    }
    doc
}

impl NoteService {
    pub fn new(
        store: Arc<dyn Store>,
        search: Arc<dyn SearchIndex>,
        clock: Arc<dyn Clock>,
        limits: SearchLimits,
    ) -> Self {
        NoteService {
            store,
            search,
            clock,
            limits,
        }
    }

    /// `POST /v1/note/create`: `{userId, title, note, courseId | contentId, tags?}` → `{id}`.
    pub async fn create(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let user_id = required_str(body, "userId")?;
        let title = required_str(body, "title")?;
        let note = required_str(body, "note")?;
        let course_id = opt_nonblank(body, "courseId")?;
        let content_id = opt_nonblank(body, "contentId")?;
        if course_id.is_none() && content_id.is_none() {
            return Err(DomainError::rule(
                ErrorCode::invalidParameter,
                &["contentId or courseId"],
            ));
        }
        let tags = tags_of(body)?;
        self.authorise(caller, &user_id).await?;
        if user(&self.store, &user_id)
            .await?
            .is_none_or(|found| found.record.is_deleted())
        {
            return Err(DomainError::rule(ErrorCode::invalidParameter, &["userId"]));
        }
        let id = new_timestamp_id();
        let now = sunbird_timestamp(self.clock.now());
        let by = caller.audit_id();
        let mut transaction = Transaction::default();
        transaction.put(
            Table::UserNotes,
            &id,
            json!({
                "id": id,
                "userId": user_id,
                "title": title,
                "note": note,
                "courseId": course_id,
                "contentId": content_id,
                "tags": tags.unwrap_or(json!([])),
                "createdBy": by,
                "createdDate": now,
                "updatedBy": by,
                "updatedDate": now,
                "isDeleted": false,
            }),
            Expect::Absent,
        );
        transaction.event(Topic::Note, &id, 1);
        self.store.commit(transaction).await?;
        let mut result = Map::new();
        result.insert("id".into(), json!(id));
        Ok(result)
    }

    /// The note's user (or their parent) and ADMINs may touch a note.
    async fn authorise(&self, caller: &Caller, user_id: &str) -> DomainResult<()> {
        let authority = Authority::of(caller).await?;
        let managed_by = user(&self.store, user_id)
            .await?
            .and_then(|found| found.record.managed_by);
        authority.require(
            authority.is_self_or_manager(user_id, managed_by.as_deref()) || authority.is_admin(),
        )
    }

    /// A live note the caller may touch.
    async fn note(&self, caller: &Caller, id: &str) -> DomainResult<Row> {
        let row = self
            .store
            .get(Table::UserNotes, id.trim())
            .await?
            .ok_or_else(unknown_note)?;
        let owner = row.doc["userId"].as_str().unwrap_or_default().to_string();
        self.authorise(caller, &owner).await?;
        Ok(row)
    }

    fn is_deleted(row: &Row) -> bool {
        row.doc["isDeleted"].as_bool().unwrap_or(false)
    }

    /// `GET /v1/note/read/{noteId}`.
    pub async fn read(&self, caller: &Caller, id: &str) -> DomainResult<Map<String, Value>> {
        let row = self.note(caller, id).await?;
        if Self::is_deleted(&row) {
            return Err(DomainError::not_found("note"));
        }
        Ok(listing(vec![view(row.doc)], 1))
    }

    /// `PATCH /v1/note/update/{noteId}`: title, note and tags change; the owner, course and
    /// content stay. → `{id}`.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let row = self.note(caller, id).await?;
        if Self::is_deleted(&row) {
            return Err(DomainError::rule(ErrorCode::invalidParameter, &["noteId"]));
        }
        let tags = tags_of(body)?;
        let mut doc = row.doc.clone();
        for field in ["title", "note"] {
            if let Some(value) = opt_nonblank(body, field)? {
                doc[field] = json!(value);
            }
        }
        if let Some(tags) = tags {
            doc["tags"] = tags;
        }
        doc["updatedBy"] = json!(caller.audit_id());
        doc["updatedDate"] = json!(sunbird_timestamp(self.clock.now()));
        self.write(&row, doc).await?;
        let mut result = Map::new();
        result.insert("id".into(), json!(row.key));
        Ok(result)
    }

    /// `DELETE /v1/note/delete/{noteId}`: a soft delete; the answer's result is empty.
    pub async fn delete(&self, caller: &Caller, id: &str) -> DomainResult<Map<String, Value>> {
        let row = self.note(caller, id).await?;
        if Self::is_deleted(&row) {
            return Err(DomainError::rule(ErrorCode::invalidParameter, &["noteId"]));
        }
        let mut doc = row.doc.clone();
        doc["isDeleted"] = json!(true);
        doc["updatedBy"] = json!(caller.audit_id());
        doc["updatedDate"] = json!(sunbird_timestamp(self.clock.now()));
        self.write(&row, doc).await?;
        Ok(Map::new())
    }

    async fn write(&self, row: &Row, doc: Value) -> DomainResult<()> {
        let mut transaction = Transaction::default();
        transaction.put(
            Table::UserNotes,
            &row.key,
            doc,
            Expect::Version(row.version),
        );
        transaction.event(Topic::Note, &row.key, row.version + 1);
        self.store.commit(transaction).await?;
        Ok(())
    }

    /// `POST /v1/note/search`: the Sunbird search DSL over the caller's own live notes (every
    /// live note for another service).
    pub async fn search(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let owner = match caller {
            Caller::User(principal) => Some(principal.id.clone()),
            Caller::Internal | Caller::Consumer(_) => None,
            Caller::Anonymous => return Err(DomainError::unauthorized()),
        };
        let mut request = body.clone();
        if !matches!(request.get("filters"), Some(Value::Object(_))) {
            request.insert("filters".into(), json!({}));
        }
        let page = search::run(
            &*self.search,
            IndexName::Note,
            &request,
            &self.limits,
            Steps {
                // The owner and the deleted flag are this service's to set.
                rewrite: |filter| match &filter {
                    Filter::Term { field, .. } | Filter::Terms { field, .. }
                        if (owner.is_some() && field == "userId") || field == "isDeleted" =>
                    {
                        None
                    }
                    _ => Some(filter),
                },
                adjust: |query| {
                    if let Some(owner) = &owner {
                        query.filters.push(Filter::Term {
                            field: "userId".into(),
                            value: Scalar::Str(owner.clone()),
                        });
                    }
                    query.filters.push(Filter::Term {
                        field: "isDeleted".into(),
                        value: Scalar::Bool(false),
                    });
                },
                present: |_, note| view(Value::Object(note)),
            },
        )
        .await?;
        Ok(listing(page.content, page.count))
    }
}
