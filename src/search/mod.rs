//! Search: the Sunbird filter DSL as a typed query, the `SearchIndex` trait and its engines.
//!
//! The index is a derived view of the store (DESIGN.md "Search is a derived view"): documents are
//! JSON objects written by the indexer actor with the entity version, and queries come from the
//! Sunbird request body (`filters`, `query`, `fields`, `limit`, `offset`, `sort_by`, `facets`,
//! `exists`, `not_exists`) parsed once by [`dsl::parse_search_request`].
//!
//! Engines: [`tantivy_index::TantivyIndex`] (embedded, default) and
//! [`elasticsearch::ElasticsearchIndex`] (shared by several instances); [`conformance`] is the
//! suite every engine must pass.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod documents;
pub mod dsl;
pub mod elasticsearch;
pub mod tantivy_index;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};

/// The logical indices, named as Sunbird's aliases so an Elasticsearch deployment keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexName {
    User,
    Organisation,
    Location,
    /// Sunbird's legacy user notes (`usernotes`).
    Note,
}

impl IndexName {
    pub const ALL: [IndexName; 4] = [
        IndexName::User,
        IndexName::Organisation,
        IndexName::Location,
        IndexName::Note,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IndexName::User => "user_alias",
            IndexName::Organisation => "org_alias",
            IndexName::Location => "location",
            IndexName::Note => "usernotes",
        }
    }
}

/// One document: `source` is what search returns (`_source` in Elasticsearch terms) and also what
/// is filtered on. `version` is the entity version from the store: an upsert carrying a version
/// lower than the stored one is ignored, so a replayed or stale event never overwrites a newer
/// document.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexDoc {
    pub id: String,
    pub version: u64,
    pub source: Map<String, Value>,
}

/// A scalar filter value as it came in the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

/// One filter clause; a query's clauses are AND-ed.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Exact, case-insensitive for strings (Sunbird's `term` on `<field>.raw`, value lower-cased).
    Term { field: String, value: Scalar },
    /// Any of the values (Sunbird's `terms`).
    Terms { field: String, values: Vec<Scalar> },
    /// Range on the field; strings compare lexicographically (lower-cased), numbers numerically.
    Range {
        field: String,
        gte: Option<Scalar>,
        gt: Option<Scalar>,
        lte: Option<Scalar>,
        lt: Option<Scalar>,
    },
    /// Case-insensitive prefix (`{"startsWith": "..."}`).
    Prefix { field: String, prefix: String },
    /// Case-insensitive suffix (`{"endsWith": "..."}`).
    Suffix { field: String, suffix: String },
    /// At least one of the clauses (`filters.$or`).
    Or(Vec<Filter>),
    /// The field is present and not null.
    Exists(String),
    /// The field is absent or null.
    NotExists(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FacetKind {
    Terms,
    DateHistogram,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetRequest {
    pub field: String,
    pub kind: FacetKind,
}

/// A parsed search request. Field names are dotted JSON paths into `source`
/// (`organisations.organisationId`, `roles.role`); arrays of objects match when any element does.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub filters: Vec<Filter>,
    /// Free text (Sunbird `query`), matched word by word, case-insensitively.
    pub query: Option<String>,
    /// Fields the free text applies to; empty means every text field.
    pub query_fields: Vec<String>,
    /// Sunbird's `fuzzy` (`{"firstName": "asha"}`, its first entry only): the field matches
    /// when any word of the value is within Elasticsearch's `AUTO` edit distance of a word of
    /// the field (0 edits up to 2 characters, 1 up to 5, else 2; a transposition is one).
    pub fuzzy: Option<(String, String)>,
    /// Source fields to return; empty means the whole source.
    pub fields: Vec<String>,
    /// Source fields never returned.
    pub exclude_fields: Vec<String>,
    pub limit: usize,
    pub offset: usize,
    pub sort_by: Vec<(String, SortOrder)>,
    pub facets: Vec<FacetRequest>,
}

impl SearchQuery {
    /// Everything, in index order: used by tests and admin tools.
    pub fn match_all(limit: usize) -> Self {
        SearchQuery {
            filters: Vec::new(),
            query: None,
            query_fields: Vec::new(),
            fuzzy: None,
            fields: Vec::new(),
            exclude_fields: Vec::new(),
            limit,
            offset: 0,
            sort_by: Vec::new(),
            facets: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FacetValue {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facet {
    pub name: String,
    pub values: Vec<FacetValue>,
}

/// `{count, content, facets}` as Sunbird returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    pub count: u64,
    pub content: Vec<Map<String, Value>>,
    pub facets: Vec<Facet>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The engine cannot be reached or refused the request for a reason of its own: retry later.
    #[error("search engine unavailable: {0}")]
    Unavailable(String),
    /// A bug or a corrupt index.
    #[error("search engine failure: {0}")]
    Internal(String),
}

/// An unreachable engine is 503; anything else is an internal error logged at the edge.
impl From<SearchError> for crate::domain::DomainError {
    fn from(error: SearchError) -> Self {
        use crate::domain::DomainError;
        match error {
            SearchError::Unavailable(what) => DomainError::Unavailable(what),
            SearchError::Internal(what) => DomainError::internal(anyhow::anyhow!(what)),
        }
    }
}

#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// Insert or replace documents (by id), skipping any whose version is lower than the stored
    /// document's. Durable and visible to `search` when this returns.
    async fn upsert(&self, index: IndexName, docs: Vec<IndexDoc>) -> Result<(), SearchError>;
    /// Remove documents by id; unknown ids are ignored.
    async fn delete(&self, index: IndexName, ids: Vec<String>) -> Result<(), SearchError>;
    /// Fetch one document by id.
    async fn get(&self, index: IndexName, id: &str) -> Result<Option<IndexDoc>, SearchError>;
    async fn search(
        &self,
        index: IndexName,
        query: &SearchQuery,
    ) -> Result<SearchResult, SearchError>;
    /// Remove every document of one index.
    async fn clear(&self, index: IndexName) -> Result<(), SearchError>;
    /// Starts a full rebuild of `index`: from now until [`SearchIndex::finish_rebuild`], what
    /// is written goes into a fresh copy (and still into the live one), while searches keep
    /// reading the live one. An engine without copies (tantivy, on one instance) clears the
    /// index instead, which is this default.
    async fn begin_rebuild(&self, index: IndexName) -> Result<(), SearchError> {
        self.clear(index).await
    }
    /// The copy becomes the live index at once (an alias swap) and the old one goes: after a
    /// rebuild the index holds exactly what was written since it began.
    async fn finish_rebuild(&self, _index: IndexName) -> Result<(), SearchError> {
        Ok(())
    }
    /// Cheap liveness check for `/health`.
    async fn healthy(&self) -> bool;
    /// True when several instances write this one index (Elasticsearch): their indexers then
    /// compete for the outbox stream; an instance-local index (tantivy) is fed by each instance.
    fn shared_across_instances(&self) -> bool {
        false
    }
}
