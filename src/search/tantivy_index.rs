//! The embedded search engine: one tantivy index per [`IndexName`].
//!
//! # Schema
//!
//! Documents are schemaless JSON, so every index has the same generic schema:
//!
//! | field | kind | used for |
//! |---|---|---|
//! | `id` | raw string, indexed + stored | replace/delete by id, `get` |
//! | `version` | u64, fast + stored | skipping stale upserts |
//! | `source` | bytes, stored | the document returned, exactly as upserted |
//! | `keyword` | JSON, lower-cased whole values under 1 KiB, indexed + fast | exact filters, ranges, prefixes, exists, sorting (Sunbird's `<field>.raw`) |
//! | `exact` | JSON, original values under 1 KiB, fast only | facet value names in their original case |
//! | `text` | JSON, lower-cased words with frequencies | free text limited to `queryFields` |
//! | `all_text` | every string value as words | free text over the whole document |
//!
//! JSON fields flatten arrays, so `organisations.organisationId` matches when any element of
//! `organisations` does, as in Elasticsearch's object (non-nested) mapping. String values are
//! never turned into dates (tantivy would do that for RFC 3339 strings from `serde_json`): a date
//! stays a string so ranges compare it the way Sunbird's keyword fields do.
//!
//! # Writes
//!
//! Each index has one `IndexWriter` (tantivy holds a lock file for it) behind a mutex: an upsert
//! reads the stored versions, writes, commits and reloads the reader while holding it, so the
//! version check cannot race with another write and the change is visible to the next search when
//! the call returns. All tantivy work runs on `spawn_blocking`.
//!
//! # Searches
//!
//! A search collects the matching doc ids of every segment (a few bytes per hit), then computes
//! the page from fast fields (sort keys, or scores for free text) and loads only the page's stored
//! documents. Facets are counted from fast fields over all hits.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Value};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, DynamicColumn, DynamicColumnHandle, StrColumn};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BitSetDocSet, BooleanQuery, BoostQuery, ConstScoreQuery, ConstScorer, EmptyQuery,
    EnableScoring, ExistsQuery, Explanation, FuzzyTermQuery, Occur, Query, RangeQuery, Scorer,
    TermQuery, TermSetQuery, Weight,
};
use tantivy::schema::{
    FAST, Field, IndexRecordOption, JsonObjectOptions, OwnedValue, STORED, STRING, Schema,
    TantivyDocument, TextFieldIndexing, TextOptions, Value as _,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
    TokenizerManager,
};
use tantivy::{
    BitSet, Directory, DocAddress, DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy,
    Score, Searcher, SegmentOrdinal, SegmentReader, TERMINATED, TantivyError, Term,
};

use super::{
    Facet, FacetKind, FacetRequest, FacetValue, Filter, IndexDoc, IndexName, Scalar, SearchError,
    SearchIndex, SearchQuery, SearchResult, SortOrder,
};

/// Whole value, lower-cased: the `keylower` normaliser of Sunbird's `.raw` fields.
const KEYWORD_TOKENIZER: &str = "userorg_keyword";
/// Whole value as is (facet names).
const EXACT_TOKENIZER: &str = "userorg_exact";
/// Words, lower-cased and ASCII-folded, for free text.
const TEXT_TOKENIZER: &str = "userorg_text";

/// String values of this many bytes or more are kept in the source and in free text but are not
/// filterable, sortable or facetable (Elasticsearch's `ignore_above`). Sunbird documents carry
/// serialised blobs (profile details, framework JSON) that would otherwise bloat the dictionaries
/// and fast fields.
const MAX_KEYWORD_BYTES: usize = 1024;

/// Indexing memory per writer. tantivy needs at least 15 MB per indexing thread; a larger budget
/// means fewer, larger segments during a full reindex.
const WRITER_MEMORY_BUDGET: usize = 50_000_000;

/// Query words shorter than this match whole words only; longer ones also match as a prefix
/// ("ash" finds "Asha"). Sunbird's index analyser emits n-grams of 3 characters and more, so a
/// shorter fragment never matched part of a word there either.
const MIN_PREFIX_WORD_CHARS: usize = 3;

/// Score of a prefix-only match relative to a whole-word match (which is BM25-scored).
const PREFIX_MATCH_BOOST: Score = 0.5;

/// The embedded [`SearchIndex`]: tantivy indices in sub-directories of one data directory, or in
/// memory for tests.
pub struct TantivyIndex {
    engines: [Arc<Engine>; 4],
}

impl TantivyIndex {
    /// Opens (creating if missing) one index per [`IndexName`] in `dir/<IndexName::as_str()>`.
    ///
    /// Fails with [`SearchError::Unavailable`] when a directory cannot be created or another
    /// process holds an index's writer lock, and with [`SearchError::Internal`] when an existing
    /// index has a different schema (remove the directory and reindex).
    pub fn open(dir: &Path) -> Result<Self, SearchError> {
        Self::build(|name| {
            let path = dir.join(name.as_str());
            std::fs::create_dir_all(&path).map_err(|err| {
                SearchError::Unavailable(format!(
                    "cannot create search index directory {}: {err}",
                    path.display()
                ))
            })?;
            let directory = MmapDirectory::open(&path).map_err(|err| {
                SearchError::Unavailable(format!(
                    "cannot open search index directory {}: {err}",
                    path.display()
                ))
            })?;
            let index = Index::builder()
                .schema(IndexFields::schema())
                .open_or_create(directory)
                .map_err(|err| match err {
                    TantivyError::SchemaError(_) => SearchError::Internal(format!(
                        "search index {} was written with another schema: remove the directory \
                         and reindex ({err})",
                        path.display()
                    )),
                    err => {
                        engine_error(&format!("cannot open search index {}", path.display()), err)
                    }
                })?;
            Ok(index)
        })
    }

    /// Fresh, empty indices in memory (tests, throw-away tools).
    pub fn in_memory() -> Result<Self, SearchError> {
        Self::build(|name| {
            Index::builder()
                .schema(IndexFields::schema())
                .create_in_ram()
                .map_err(|err| engine_error(&format!("cannot create index {}", name.as_str()), err))
        })
    }

    fn build(
        mut open_index: impl FnMut(IndexName) -> Result<Index, SearchError>,
    ) -> Result<Self, SearchError> {
        let [user, organisation, location, note] = IndexName::ALL;
        Ok(TantivyIndex {
            engines: [
                Arc::new(Engine::new(user, open_index(user)?)?),
                Arc::new(Engine::new(organisation, open_index(organisation)?)?),
                Arc::new(Engine::new(location, open_index(location)?)?),
                Arc::new(Engine::new(note, open_index(note)?)?),
            ],
        })
    }

    fn engine(&self, index: IndexName) -> Arc<Engine> {
        let slot = match index {
            IndexName::User => 0,
            IndexName::Organisation => 1,
            IndexName::Location => 2,
            IndexName::Note => 3,
        };
        Arc::clone(&self.engines[slot])
    }

    /// Runs blocking tantivy work off the async executor.
    async fn run<T, F>(&self, index: IndexName, work: F) -> Result<T, SearchError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, SearchError> + Send + 'static,
    {
        let engine = self.engine(index);
        tokio::task::spawn_blocking(move || work(&engine))
            .await
            .map_err(|err| SearchError::Internal(format!("search task failed: {err}")))?
    }
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn upsert(&self, index: IndexName, docs: Vec<IndexDoc>) -> Result<(), SearchError> {
        if docs.is_empty() {
            return Ok(());
        }
        self.run(index, move |engine| engine.upsert(docs)).await
    }

    async fn delete(&self, index: IndexName, ids: Vec<String>) -> Result<(), SearchError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.run(index, move |engine| engine.delete(&ids)).await
    }

    async fn get(&self, index: IndexName, id: &str) -> Result<Option<IndexDoc>, SearchError> {
        let id = id.to_owned();
        self.run(index, move |engine| engine.get(&id)).await
    }

    async fn search(
        &self,
        index: IndexName,
        query: &SearchQuery,
    ) -> Result<SearchResult, SearchError> {
        let query = query.clone();
        self.run(index, move |engine| engine.search(&query)).await
    }

    async fn clear(&self, index: IndexName) -> Result<(), SearchError> {
        self.run(index, |engine| engine.clear()).await
    }

    async fn healthy(&self) -> bool {
        let engines = self.engines.clone();
        tokio::task::spawn_blocking(move || engines.iter().all(|engine| engine.healthy()))
            .await
            .unwrap_or(false)
    }
}

/// The fields of the generic schema (see the module docs).
#[derive(Clone, Copy)]
struct IndexFields {
    id: Field,
    version: Field,
    source: Field,
    keyword: Field,
    exact: Field,
    text: Field,
    all_text: Field,
}

impl IndexFields {
    fn schema() -> Schema {
        let mut builder = Schema::builder();
        builder.add_text_field("id", STRING | STORED);
        builder.add_u64_field("version", FAST | STORED);
        builder.add_bytes_field("source", STORED);
        let keyword_indexing = TextFieldIndexing::default()
            .set_tokenizer(KEYWORD_TOKENIZER)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false);
        builder.add_json_field(
            "keyword",
            JsonObjectOptions::default()
                .set_indexing_options(keyword_indexing)
                .set_fast(KEYWORD_TOKENIZER)
                .set_expand_dots_enabled(),
        );
        builder.add_json_field(
            "exact",
            JsonObjectOptions::default()
                .set_fast(EXACT_TOKENIZER)
                .set_expand_dots_enabled(),
        );
        let text_indexing = TextFieldIndexing::default()
            .set_tokenizer(TEXT_TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs);
        builder.add_json_field(
            "text",
            JsonObjectOptions::default()
                .set_indexing_options(text_indexing.clone())
                .set_expand_dots_enabled(),
        );
        builder.add_text_field(
            "all_text",
            TextOptions::default().set_indexing_options(text_indexing),
        );
        builder.build()
    }

    fn resolve(schema: &Schema) -> Result<Self, SearchError> {
        let field = |name: &str| {
            schema
                .get_field(name)
                .map_err(|err| SearchError::Internal(format!("search schema: {err}")))
        };
        Ok(IndexFields {
            id: field("id")?,
            version: field("version")?,
            source: field("source")?,
            keyword: field("keyword")?,
            exact: field("exact")?,
            text: field("text")?,
            all_text: field("all_text")?,
        })
    }
}

/// Index side of `keyword`: whole values up to [`MAX_KEYWORD_BYTES`], lower-cased.
fn keyword_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_KEYWORD_BYTES))
        .filter(LowerCaser)
        .build()
}

/// Query side of `keyword`: the same normalisation without the length cap, so an over-long
/// filter value matches nothing instead of matching the empty string.
fn keyword_query_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(LowerCaser)
        .build()
}

/// `exact`: whole values up to [`MAX_KEYWORD_BYTES`], as they are.
fn exact_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_KEYWORD_BYTES))
        .build()
}

fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

fn register_tokenizers(manager: &TokenizerManager) {
    manager.register(KEYWORD_TOKENIZER, keyword_analyzer());
    manager.register(EXACT_TOKENIZER, exact_analyzer());
    manager.register(TEXT_TOKENIZER, text_analyzer());
}

/// One logical index.
struct Engine {
    name: IndexName,
    index: Index,
    fields: IndexFields,
    reader: IndexReader,
    /// Set when a commit succeeded but the reader could not be reloaded: the reader must not be
    /// trusted for versions (a stale version would let an older document overwrite a newer one).
    reader_stale: AtomicBool,
    /// Serialises writes: see the module docs.
    writer: Mutex<IndexWriter>,
}

impl Engine {
    fn new(name: IndexName, index: Index) -> Result<Self, SearchError> {
        // Tokenizers are not persisted with the index: register them on every open, for the
        // inverted index and for the fast-field normaliser alike.
        register_tokenizers(index.tokenizers());
        register_tokenizers(index.fast_field_tokenizer());
        let fields = IndexFields::resolve(&index.schema())?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|err| {
                engine_error(
                    &format!("cannot open reader of index {}", name.as_str()),
                    err,
                )
            })?;
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY_BUDGET)
            .map_err(|err| {
                engine_error(
                    &format!("cannot open writer of index {}", name.as_str()),
                    err,
                )
            })?;
        Ok(Engine {
            name,
            index,
            fields,
            reader,
            reader_stale: AtomicBool::new(false),
            writer: Mutex::new(writer),
        })
    }

    /// A searcher that sees every successful commit.
    fn searcher(&self) -> Result<Searcher, SearchError> {
        if self.reader_stale.load(AtomicOrdering::Acquire) {
            self.reader
                .reload()
                .map_err(|err| engine_error(&self.context("reload"), err))?;
            self.reader_stale.store(false, AtomicOrdering::Release);
        }
        Ok(self.reader.searcher())
    }

    fn context(&self, what: &str) -> String {
        format!("{what} on index {}", self.name.as_str())
    }

    /// The writer, recovering from a panic in an earlier write: uncommitted operations of the
    /// failed call are rolled back so they can never be committed by the next one.
    fn lock_writer(&self) -> Result<MutexGuard<'_, IndexWriter>, SearchError> {
        match self.writer.lock() {
            Ok(writer) => Ok(writer),
            Err(poisoned) => {
                let mut writer = poisoned.into_inner();
                writer
                    .rollback()
                    .map_err(|err| engine_error(&self.context("rollback"), err))?;
                self.writer.clear_poison();
                Ok(writer)
            }
        }
    }

    /// Commits and makes the commit visible to searches; on failure the pending operations are
    /// discarded so a later commit cannot publish half of this call.
    fn commit(&self, writer: &mut IndexWriter) -> Result<(), SearchError> {
        if let Err(err) = writer.commit() {
            let _ = writer.rollback();
            return Err(engine_error(&self.context("commit"), err));
        }
        if let Err(err) = self.reader.reload() {
            self.reader_stale.store(true, AtomicOrdering::Release);
            return Err(engine_error(&self.context("reload"), err));
        }
        Ok(())
    }

    fn id_term(&self, id: &str) -> Term {
        Term::from_field_text(self.fields.id, id)
    }

    fn upsert(&self, docs: Vec<IndexDoc>) -> Result<(), SearchError> {
        let mut writer = self.lock_writer()?;
        // Under the writer lock the reader reflects every committed write (each write reloads it
        // before releasing the lock), so stored versions read here are current.
        let searcher = self.searcher()?;
        // Versions written earlier in this batch, not yet visible to the searcher.
        let mut batch_versions: HashMap<String, u64> = HashMap::new();
        let write_batch = || -> Result<bool, SearchError> {
            let mut changed = false;
            for doc in docs {
                let current = match batch_versions.get(&doc.id) {
                    Some(version) => Some(*version),
                    None => self.stored_version(&searcher, &doc.id)?,
                };
                if current.is_some_and(|current| doc.version < current) {
                    continue;
                }
                let document = self.to_document(&doc)?;
                writer.delete_term(self.id_term(&doc.id));
                writer
                    .add_document(document)
                    .map_err(|err| engine_error(&self.context("add document"), err))?;
                batch_versions.insert(doc.id, doc.version);
                changed = true;
            }
            Ok(changed)
        };
        match write_batch() {
            Ok(true) => self.commit(&mut writer),
            Ok(false) => Ok(()),
            Err(err) => {
                // Nothing of a failed batch may reach a later commit.
                let _ = writer.rollback();
                Err(err)
            }
        }
    }

    fn delete(&self, ids: &[String]) -> Result<(), SearchError> {
        let mut writer = self.lock_writer()?;
        for id in ids {
            writer.delete_term(self.id_term(id));
        }
        self.commit(&mut writer)
    }

    fn clear(&self) -> Result<(), SearchError> {
        let mut writer = self.lock_writer()?;
        writer
            .delete_all_documents()
            .map_err(|err| engine_error(&self.context("clear"), err))?;
        self.commit(&mut writer)
    }

    fn healthy(&self) -> bool {
        !self.writer.is_poisoned()
            && self
                .index
                .directory()
                .exists(Path::new("meta.json"))
                .unwrap_or(false)
    }

    /// The live document with this id, if any.
    fn find_by_id(&self, searcher: &Searcher, id: &str) -> Result<Option<DocAddress>, SearchError> {
        let term = self.id_term(id);
        for (segment_ord, segment) in searcher.segment_readers().iter().enumerate() {
            let inverted_index = segment
                .inverted_index(self.fields.id)
                .map_err(|err| engine_error(&self.context("lookup"), err))?;
            let Some(mut postings) = inverted_index
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(|err| io_error(&self.context("lookup"), err))?
            else {
                continue;
            };
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if !segment.is_deleted(doc) {
                    return Ok(Some(DocAddress::new(segment_ord as SegmentOrdinal, doc)));
                }
                doc = postings.advance();
            }
        }
        Ok(None)
    }

    fn version_of(&self, searcher: &Searcher, address: DocAddress) -> Result<u64, SearchError> {
        let column = searcher
            .segment_reader(address.segment_ord)
            .fast_fields()
            .u64("version")
            .map_err(|err| engine_error(&self.context("read version"), err))?;
        Ok(column.first(address.doc_id).unwrap_or(0))
    }

    fn stored_version(&self, searcher: &Searcher, id: &str) -> Result<Option<u64>, SearchError> {
        match self.find_by_id(searcher, id)? {
            Some(address) => Ok(Some(self.version_of(searcher, address)?)),
            None => Ok(None),
        }
    }

    fn get(&self, id: &str) -> Result<Option<IndexDoc>, SearchError> {
        let searcher = self.searcher()?;
        let Some(address) = self.find_by_id(&searcher, id)? else {
            return Ok(None);
        };
        Ok(Some(IndexDoc {
            id: id.to_owned(),
            version: self.version_of(&searcher, address)?,
            source: self.load_source(&searcher, address)?,
        }))
    }

    fn load_source(
        &self,
        searcher: &Searcher,
        address: DocAddress,
    ) -> Result<Map<String, Value>, SearchError> {
        let document: TantivyDocument = searcher
            .doc(address)
            .map_err(|err| engine_error(&self.context("load document"), err))?;
        let bytes = document
            .get_first(self.fields.source)
            .and_then(|value| value.as_bytes())
            .ok_or_else(|| SearchError::Internal(self.context("document without source")))?;
        serde_json::from_slice(bytes)
            .map_err(|err| SearchError::Internal(format!("{}: {err}", self.context("bad source"))))
    }

    fn to_document(&self, doc: &IndexDoc) -> Result<TantivyDocument, SearchError> {
        let fields = &self.fields;
        let source_bytes = serde_json::to_vec(&doc.source).map_err(|err| {
            SearchError::Internal(format!("{}: {err}", self.context("encode source")))
        })?;
        let value = owned_object(&doc.source);
        let mut document = TantivyDocument::new();
        document.add_text(fields.id, &doc.id);
        document.add_u64(fields.version, doc.version);
        document.add_bytes(fields.source, &source_bytes);
        document.add_field_value(fields.keyword, &value);
        document.add_field_value(fields.exact, &value);
        document.add_field_value(fields.text, &value);
        let mut strings = Vec::new();
        collect_strings(&doc.source, &mut strings);
        for text in strings {
            document.add_text(fields.all_text, text);
        }
        Ok(document)
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchResult, SearchError> {
        let searcher = self.searcher()?;
        let tantivy_query = QueryBuilder::new(&self.fields).build(query);
        // Relevance order only when there is free text and no explicit sort (as in Sunbird, an
        // explicit sort replaces the score).
        let scoring = query.query.is_some() && query.sort_by.is_empty();
        let hits = searcher
            .search(tantivy_query.as_ref(), &HitCollector { scoring })
            .map_err(|err| engine_error(&self.context("search"), err))?;
        let count = hits.iter().map(|segment| segment.docs.len() as u64).sum();

        let page = if query.limit == 0 {
            Vec::new()
        } else if !query.sort_by.is_empty() {
            sorted_page(&searcher, &hits, query)?
        } else if scoring {
            scored_page(&hits, query.offset, query.limit)
        } else {
            index_order_page(&hits, query.offset, query.limit)
        };

        let projection = Projection::new(&query.fields, &query.exclude_fields);
        let content = page
            .into_iter()
            .map(|address| {
                self.load_source(&searcher, address)
                    .map(|source| projection.apply(source))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let facets = query
            .facets
            .iter()
            .map(|facet| count_facet(&searcher, &hits, facet))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(SearchResult {
            count,
            content,
            facets,
        })
    }
}

fn engine_error(context: &str, err: TantivyError) -> SearchError {
    match err {
        TantivyError::IoError(_)
        | TantivyError::LockFailure(..)
        | TantivyError::OpenDirectoryError(_)
        | TantivyError::OpenReadError(_)
        | TantivyError::OpenWriteError(_) => SearchError::Unavailable(format!("{context}: {err}")),
        _ => SearchError::Internal(format!("{context}: {err}")),
    }
}

fn io_error(context: &str, err: std::io::Error) -> SearchError {
    SearchError::Unavailable(format!("{context}: {err}"))
}

/// `serde_json` to tantivy without tantivy's date inference: every JSON string stays a string.
fn owned_value(value: &Value) -> OwnedValue {
    match value {
        Value::Null => OwnedValue::Null,
        Value::Bool(flag) => OwnedValue::Bool(*flag),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                OwnedValue::I64(int)
            } else if let Some(unsigned) = number.as_u64() {
                OwnedValue::U64(unsigned)
            } else {
                number.as_f64().map_or(OwnedValue::Null, OwnedValue::F64)
            }
        }
        Value::String(text) => OwnedValue::Str(text.clone()),
        Value::Array(items) => OwnedValue::Array(items.iter().map(owned_value).collect()),
        Value::Object(object) => owned_object(object),
    }
}

fn owned_object(object: &Map<String, Value>) -> OwnedValue {
    OwnedValue::Object(
        object
            .iter()
            .map(|(key, value)| (key.clone(), owned_value(value)))
            .collect(),
    )
}

fn collect_strings<'a>(object: &'a Map<String, Value>, out: &mut Vec<&'a str>) {
    fn visit<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::String(text) => out.push(text),
            Value::Array(items) => items.iter().for_each(|item| visit(item, out)),
            Value::Object(object) => object.values().for_each(|item| visit(item, out)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    object.values().for_each(|value| visit(value, out));
}

// ---------------------------------------------------------------------------------------------
// Query translation

/// Translates a [`SearchQuery`] into a tantivy query.
struct QueryBuilder<'a> {
    fields: &'a IndexFields,
    keyword: TextAnalyzer,
    text: TextAnalyzer,
}

impl<'a> QueryBuilder<'a> {
    fn new(fields: &'a IndexFields) -> Self {
        QueryBuilder {
            fields,
            keyword: keyword_query_analyzer(),
            text: text_analyzer(),
        }
    }

    fn build(mut self, query: &SearchQuery) -> Box<dyn Query> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for filter in &query.filters {
            // Filters decide membership only; a zero constant score keeps them out of relevance.
            let filter = self.filter(filter);
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))));
        }
        if let Some(text) = &query.query {
            clauses.push((Occur::Must, self.free_text(text, &query.query_fields)));
        }
        if let Some((field, text)) = &query.fuzzy {
            clauses.push((Occur::Must, self.fuzzy(field, text)));
        }
        if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        }
    }

    /// The value as indexed in `keyword`: the whole string, lower-cased.
    fn normalize(&mut self, value: &str) -> String {
        let mut stream = self.keyword.token_stream(value);
        let mut normalized = String::with_capacity(value.len());
        while stream.advance() {
            normalized.push_str(&stream.token().text);
        }
        normalized
    }

    fn words(&mut self, text: &str) -> Vec<String> {
        let mut stream = self.text.token_stream(text);
        let mut words: Vec<String> = Vec::new();
        while stream.advance() {
            let word = &stream.token().text;
            if !words.contains(word) {
                words.push(word.clone());
            }
        }
        words
    }

    fn keyword_path(&self, path: &str) -> Term {
        Term::from_field_json_path(self.fields.keyword, path, true)
    }

    fn filter(&mut self, filter: &Filter) -> Box<dyn Query> {
        match filter {
            Filter::Term { field, value } => self.any_value(field, std::slice::from_ref(value)),
            Filter::Terms { field, values } => self.any_value(field, values),
            Filter::Range {
                field,
                gte,
                gt,
                lte,
                lt,
            } => self.range(field, [gte, gt, lte, lt]),
            Filter::Prefix { field, prefix } => {
                let header = json_str_header(self.keyword_path(field));
                let mut lower = header.clone();
                lower.extend_from_slice(self.normalize(prefix).as_bytes());
                Box::new(TermScanQuery::prefix(
                    self.fields.keyword,
                    lower,
                    header.len(),
                ))
            }
            Filter::Suffix { field, suffix } => {
                let header = json_str_header(self.keyword_path(field));
                let suffix = self.normalize(suffix).into_bytes();
                Box::new(TermScanQuery::suffix(self.fields.keyword, header, suffix))
            }
            Filter::Or(alternatives) => {
                if alternatives.is_empty() {
                    return Box::new(EmptyQuery);
                }
                let clauses = alternatives
                    .iter()
                    .map(|alternative| (Occur::Should, self.filter(alternative)))
                    .collect();
                Box::new(BooleanQuery::new(clauses))
            }
            Filter::Exists(field) => self.exists(field),
            Filter::NotExists(field) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
                (Occur::MustNot, self.exists(field)),
            ])),
        }
    }

    fn exists(&self, field: &str) -> Box<dyn Query> {
        // `json_subpaths`: an object or an array of objects exists when any of its leaves does.
        Box::new(ExistsQuery::new(format!("keyword.{field}"), true))
    }

    /// Documents whose `field` equals any of `values`. An empty list matches nothing, as an
    /// Elasticsearch `terms` query does.
    fn any_value(&mut self, field: &str, values: &[Scalar]) -> Box<dyn Query> {
        let mut terms = Vec::new();
        for value in values {
            self.value_terms(field, value, &mut terms);
        }
        match terms.len() {
            0 => Box::new(EmptyQuery),
            // A term set builds an automaton and a document bitset per segment on every query;
            // for the usual one or few values, plain term queries are far cheaper. Filters never
            // weigh in the relevance of free text, hence the constant score.
            1..=SMALL_TERM_SET => {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = terms
                    .into_iter()
                    .map(|term| {
                        let query: Box<dyn Query> = Box::new(ConstScoreQuery::new(
                            Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                            1.0,
                        ));
                        (Occur::Should, query)
                    })
                    .collect();
                if clauses.len() == 1 {
                    return clauses.remove(0).1;
                }
                Box::new(BooleanQuery::new(clauses))
            }
            _ => Box::new(TermSetQuery::new(terms)),
        }
    }

    /// Every indexed form the value may have: the lower-cased string, and the number or boolean
    /// it spells, so `"1"` finds `1` and `1` finds `"1"` (Elasticsearch coerces the same way).
    fn value_terms(&mut self, field: &str, value: &Scalar, out: &mut Vec<Term>) {
        let path = self.keyword_path(field);
        let mut push_str = |text: &str, this: &mut Self| {
            let mut term = path.clone();
            term.append_type_and_str(&this.normalize(text));
            out.push(term);
        };
        match value {
            Scalar::Str(text) => {
                push_str(text, self);
                let trimmed = text.trim();
                if let Some(number) = parse_number(trimmed) {
                    out.push(numeric_term(&path, number));
                } else if trimmed.eq_ignore_ascii_case("true")
                    || trimmed.eq_ignore_ascii_case("false")
                {
                    let mut term = path.clone();
                    term.append_type_and_fast_value(trimmed.eq_ignore_ascii_case("true"));
                    out.push(term);
                }
            }
            Scalar::Int(int) => {
                push_str(&int.to_string(), self);
                out.push(numeric_term(&path, Number::Int(*int)));
            }
            Scalar::Float(float) => {
                push_str(&float.to_string(), self);
                out.push(numeric_term(&path, Number::Float(*float)));
            }
            Scalar::Bool(flag) => {
                push_str(if *flag { "true" } else { "false" }, self);
                let mut term = path.clone();
                term.append_type_and_fast_value(*flag);
                out.push(term);
            }
        }
    }

    /// One range query per bound, intersected: `[gte, gt, lte, lt]`.
    fn range(&mut self, field: &str, bounds: [&Option<Scalar>; 4]) -> Box<dyn Query> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (position, bound) in bounds.into_iter().enumerate() {
            let Some(bound) = bound else { continue };
            let kind = match position {
                0 => BoundKind::Gte,
                1 => BoundKind::Gt,
                2 => BoundKind::Lte,
                _ => BoundKind::Lt,
            };
            clauses.push((Occur::Must, self.one_bound(field, bound, kind)));
        }
        if clauses.is_empty() {
            // A range without bounds matches every value: the field exists.
            return self.exists(field);
        }
        Box::new(BooleanQuery::new(clauses))
    }

    fn one_bound(&mut self, field: &str, bound: &Scalar, kind: BoundKind) -> Box<dyn Query> {
        let path = self.keyword_path(field);
        let numeric = |number: Number| -> Box<dyn Query> {
            Box::new(kind.query(numeric_term(&path, number)))
        };
        match bound {
            Scalar::Int(int) => numeric(Number::Int(*int)),
            Scalar::Float(float) => numeric(Number::Float(*float)),
            Scalar::Str(_) | Scalar::Bool(_) => {
                let text = match bound {
                    Scalar::Str(text) => text.clone(),
                    _ => scalar_text(bound),
                };
                let mut term = path.clone();
                term.append_type_and_str(&self.normalize(&text));
                let string_range: Box<dyn Query> = Box::new(kind.query(term));
                // A numeric string bound also compares numerically against numbers.
                match parse_number(text.trim()) {
                    Some(number) => Box::new(BooleanQuery::new(vec![
                        (Occur::Should, string_range),
                        (Occur::Should, numeric(number)),
                    ])),
                    None => string_range,
                }
            }
        }
    }

    /// Sunbird's `fuzzy`: a match query on one field with `fuzziness: AUTO` and transpositions,
    /// any word of the value being enough.
    fn fuzzy(&mut self, field: &str, text: &str) -> Box<dyn Query> {
        let words = self.words(text);
        if words.is_empty() {
            return Box::new(EmptyQuery);
        }
        let mut per_word: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in &words {
            let distance = match word.chars().count() {
                0..=2 => 0,
                3..=5 => 1,
                _ => 2,
            };
            let mut term = Term::from_field_json_path(self.fields.text, field, true);
            term.append_type_and_str(word);
            per_word.push((
                Occur::Should,
                Box::new(FuzzyTermQuery::new(term, distance, true)),
            ));
        }
        Box::new(BooleanQuery::new(per_word))
    }

    /// Sunbird's `simple_query_string` with the default OR operator: a document matches when any
    /// word does. Whole words are BM25-scored; words of 3+ characters also match as a prefix.
    fn free_text(&mut self, text: &str, query_fields: &[String]) -> Box<dyn Query> {
        let words = self.words(text);
        if words.is_empty() {
            // Nothing searchable (only punctuation): Elasticsearch matches no document.
            return Box::new(EmptyQuery);
        }
        let mut per_word: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in &words {
            let allow_prefix = word.chars().count() >= MIN_PREFIX_WORD_CHARS;
            let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            if query_fields.is_empty() {
                let term = Term::from_field_text(self.fields.all_text, word);
                alternatives.push((
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                ));
                if allow_prefix {
                    let scan =
                        TermScanQuery::prefix(self.fields.all_text, word.clone().into_bytes(), 0);
                    alternatives.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(scan), PREFIX_MATCH_BOOST)),
                    ));
                }
            } else {
                for field in query_fields {
                    let path = Term::from_field_json_path(self.fields.text, field, true);
                    let header = json_str_header(path.clone());
                    let mut term = path;
                    term.append_type_and_str(word);
                    alternatives.push((
                        Occur::Should,
                        Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                    ));
                    if allow_prefix {
                        let mut lower = header.clone();
                        lower.extend_from_slice(word.as_bytes());
                        let scan = TermScanQuery::prefix(self.fields.text, lower, header.len());
                        alternatives.push((
                            Occur::Should,
                            Box::new(BoostQuery::new(Box::new(scan), PREFIX_MATCH_BOOST)),
                        ));
                    }
                }
            }
            per_word.push((Occur::Should, Box::new(BooleanQuery::new(alternatives))));
        }
        Box::new(BooleanQuery::new(per_word))
    }
}

#[derive(Clone, Copy)]
enum BoundKind {
    Gte,
    Gt,
    Lte,
    Lt,
}

impl BoundKind {
    fn query(self, term: Term) -> RangeQuery {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        match self {
            BoundKind::Gte => RangeQuery::new(Included(term), Unbounded),
            BoundKind::Gt => RangeQuery::new(Excluded(term), Unbounded),
            BoundKind::Lte => RangeQuery::new(Unbounded, Included(term)),
            BoundKind::Lt => RangeQuery::new(Unbounded, Excluded(term)),
        }
    }
}

#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
}

fn parse_number(text: &str) -> Option<Number> {
    if let Ok(int) = text.parse::<i64>() {
        return Some(Number::Int(int));
    }
    match text.parse::<f64>() {
        Ok(float) if float.is_finite() => Some(Number::Float(float)),
        _ => None,
    }
}

/// The term tantivy indexes for a JSON number: integral values as i64 (u64 above i64::MAX),
/// others as f64, the same normalisation tantivy applies when indexing.
fn numeric_term(path: &Term, number: Number) -> Term {
    let mut term = path.clone();
    match number {
        Number::Int(int) => term.append_type_and_fast_value(int),
        Number::Float(float) => {
            // 2^63 and 2^64 are exact in f64; the casts below are exact inside these bounds.
            const I64_END: f64 = 9_223_372_036_854_775_808.0;
            const U64_END: f64 = 18_446_744_073_709_551_616.0;
            if float.fract() == 0.0 && (-I64_END..I64_END).contains(&float) {
                term.append_type_and_fast_value(float as i64);
            } else if float.fract() == 0.0 && (0.0..U64_END).contains(&float) {
                term.append_type_and_fast_value(float as u64);
            } else {
                term.append_type_and_fast_value(float);
            }
        }
    }
    term
}

fn scalar_text(value: &Scalar) -> String {
    match value {
        Scalar::Str(text) => text.clone(),
        Scalar::Int(int) => int.to_string(),
        Scalar::Float(float) => float.to_string(),
        Scalar::Bool(flag) => flag.to_string(),
    }
}

/// The dictionary key prefix of string values at a JSON path: `path \0 's'`.
fn json_str_header(mut path: Term) -> Vec<u8> {
    path.append_type_and_str("");
    path.serialized_value_bytes().to_vec()
}

/// The smallest key greater than every key starting with `prefix`; `None` when there is none.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Matches documents holding a term of `field` whose dictionary key lies in `[lower, upper)` and,
/// optionally, ends with a suffix. It serves prefixes (a key range), suffixes (a scan of one JSON
/// path's strings, like Sunbird's `regexp` on `.raw`) and free-text prefixes.
/// Up to this many values, an "any of" filter is a union of term queries rather than a term set.
const SMALL_TERM_SET: usize = 16;

#[derive(Clone, Debug)]
struct TermScanQuery {
    field: Field,
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    /// Where the value starts in the key (after a JSON path header).
    value_offset: usize,
    suffix: Option<Vec<u8>>,
}

impl TermScanQuery {
    fn prefix(field: Field, key_prefix: Vec<u8>, value_offset: usize) -> Self {
        TermScanQuery {
            field,
            upper: prefix_end(&key_prefix),
            lower: key_prefix,
            value_offset,
            suffix: None,
        }
    }

    fn suffix(field: Field, header: Vec<u8>, suffix: Vec<u8>) -> Self {
        TermScanQuery {
            field,
            upper: prefix_end(&header),
            value_offset: header.len(),
            lower: header,
            suffix: Some(suffix),
        }
    }

    fn key_matches(&self, key: &[u8]) -> bool {
        match &self.suffix {
            None => true,
            Some(suffix) => key.len() >= self.value_offset + suffix.len() && key.ends_with(suffix),
        }
    }
}

impl Query for TermScanQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for TermScanQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let inverted_index = reader.inverted_index(self.field)?;
        let mut range = inverted_index.terms().range().ge(&self.lower);
        if let Some(upper) = &self.upper {
            range = range.lt(upper);
        }
        let mut terms = range.into_stream()?;
        let mut docs = BitSet::with_max_value(reader.max_doc());
        while terms.advance() {
            if !self.key_matches(terms.key()) {
                continue;
            }
            let mut postings = inverted_index
                .read_block_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)?;
            loop {
                let block = postings.docs();
                if block.is_empty() {
                    break;
                }
                for &doc in block {
                    docs.insert(doc);
                }
                postings.advance();
            }
        }
        Ok(Box::new(ConstScorer::new(BitSetDocSet::from(docs), boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("TermScanQuery", scorer.score()))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Collection and paging

/// The matching documents of one segment, in doc id order.
struct SegmentHits {
    segment_ord: SegmentOrdinal,
    docs: Vec<DocId>,
    /// Parallel to `docs` when scoring, empty otherwise.
    scores: Vec<Score>,
}

/// Collects every hit (4 bytes each, 8 with scores): count, facets and sorting all need them.
struct HitCollector {
    scoring: bool,
}

struct HitSegmentCollector {
    hits: SegmentHits,
    scoring: bool,
}

impl Collector for HitCollector {
    type Fruit = Vec<SegmentHits>;
    type Child = HitSegmentCollector;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        _segment: &SegmentReader,
    ) -> tantivy::Result<HitSegmentCollector> {
        Ok(HitSegmentCollector {
            hits: SegmentHits {
                segment_ord,
                docs: Vec::new(),
                scores: Vec::new(),
            },
            scoring: self.scoring,
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn merge_fruits(&self, segments: Vec<SegmentHits>) -> tantivy::Result<Vec<SegmentHits>> {
        Ok(segments)
    }
}

impl SegmentCollector for HitSegmentCollector {
    type Fruit = SegmentHits;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.hits.docs.push(doc);
        if self.scoring {
            self.hits.scores.push(score);
        }
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        self.hits.docs.extend_from_slice(docs);
    }

    fn harvest(self) -> SegmentHits {
        self.hits
    }
}

/// The number of hits a page needs ranked: everything before it and the page itself.
fn ranked_window(offset: usize, limit: usize) -> usize {
    offset.saturating_add(limit)
}

fn index_order_page(hits: &[SegmentHits], offset: usize, limit: usize) -> Vec<DocAddress> {
    hits.iter()
        .flat_map(|segment| {
            segment
                .docs
                .iter()
                .map(move |&doc| DocAddress::new(segment.segment_ord, doc))
        })
        .skip(offset)
        .take(limit)
        .collect()
}

fn scored_page(hits: &[SegmentHits], offset: usize, limit: usize) -> Vec<DocAddress> {
    let mut ranked: Vec<(Score, DocAddress)> = hits
        .iter()
        .flat_map(|segment| {
            segment
                .docs
                .iter()
                .zip(&segment.scores)
                .map(move |(&doc, &score)| (score, DocAddress::new(segment.segment_ord, doc)))
        })
        .collect();
    // Best score first; ties in index order so paging is stable.
    let by_score = |a: &(Score, DocAddress), b: &(Score, DocAddress)| {
        b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1))
    };
    top_k(&mut ranked, ranked_window(offset, limit), by_score);
    ranked
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, address)| address)
        .collect()
}

/// Keeps the `k` smallest elements of `items` under `order`, sorted.
fn top_k<T>(items: &mut Vec<T>, k: usize, mut order: impl FnMut(&T, &T) -> Ordering) {
    if k == 0 {
        items.clear();
        return;
    }
    if items.len() > k {
        items.select_nth_unstable_by(k - 1, &mut order);
        items.truncate(k);
    }
    items.sort_unstable_by(order);
}

/// A sort value inside one segment: strings are dictionary ordinals, comparable only within the
/// segment.
#[derive(Clone, Copy, Debug)]
enum SegmentSortValue {
    Number(f64),
    Ordinal(u64),
    Missing,
}

/// A sort value comparable across segments.
#[derive(Clone, Debug)]
enum SortValue {
    Number(f64),
    Text(String),
    Missing,
}

/// Numbers before strings (Elasticsearch rejects mixed types; this keeps the order total).
fn compare_present(a: &SortValue, b: &SortValue) -> Ordering {
    match (a, b) {
        (SortValue::Number(x), SortValue::Number(y)) => x.total_cmp(y),
        (SortValue::Text(x), SortValue::Text(y)) => x.cmp(y),
        (SortValue::Number(_), _) => Ordering::Less,
        (_, SortValue::Number(_)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Missing values sort last in both directions, as Elasticsearch's default `missing: _last`.
fn compare_sort_values(a: &SortValue, b: &SortValue, order: SortOrder) -> Ordering {
    match (a, b) {
        (SortValue::Missing, SortValue::Missing) => Ordering::Equal,
        (SortValue::Missing, _) => Ordering::Greater,
        (_, SortValue::Missing) => Ordering::Less,
        _ => {
            let ordering = compare_present(a, b);
            match order {
                SortOrder::Asc => ordering,
                SortOrder::Desc => ordering.reverse(),
            }
        }
    }
}

fn compare_segment_values(a: SegmentSortValue, b: SegmentSortValue, order: SortOrder) -> Ordering {
    let ordering = match (a, b) {
        (SegmentSortValue::Missing, SegmentSortValue::Missing) => return Ordering::Equal,
        (SegmentSortValue::Missing, _) => return Ordering::Greater,
        (_, SegmentSortValue::Missing) => return Ordering::Less,
        (SegmentSortValue::Number(x), SegmentSortValue::Number(y)) => x.total_cmp(&y),
        (SegmentSortValue::Ordinal(x), SegmentSortValue::Ordinal(y)) => x.cmp(&y),
        (SegmentSortValue::Number(_), _) => Ordering::Less,
        (_, SegmentSortValue::Number(_)) => Ordering::Greater,
    };
    match order {
        SortOrder::Asc => ordering,
        SortOrder::Desc => ordering.reverse(),
    }
}

/// The fast-field columns of one JSON path in one segment.
struct PathColumns {
    numbers: Vec<NumberColumn>,
    strings: Option<StrColumn>,
}

enum NumberColumn {
    I64(Column<i64>),
    U64(Column<u64>),
    F64(Column<f64>),
    Bool(Column<bool>),
}

impl NumberColumn {
    fn for_each_value(&self, doc: DocId, mut visit: impl FnMut(f64)) {
        match self {
            NumberColumn::I64(column) => column.values_for_doc(doc).for_each(|v| visit(v as f64)),
            NumberColumn::U64(column) => column.values_for_doc(doc).for_each(|v| visit(v as f64)),
            NumberColumn::F64(column) => column.values_for_doc(doc).for_each(visit),
            NumberColumn::Bool(column) => column
                .values_for_doc(doc)
                .for_each(|v| visit(if v { 1.0 } else { 0.0 })),
        }
    }
}

impl PathColumns {
    fn open(segment: &SegmentReader, column_name: &str) -> Result<Self, SearchError> {
        let handles = segment
            .fast_fields()
            .dynamic_column_handles(column_name)
            .map_err(|err| engine_error("open fast field", err))?;
        let mut columns = PathColumns {
            numbers: Vec::new(),
            strings: None,
        };
        for handle in handles {
            match open_column(&handle)? {
                DynamicColumn::I64(column) => columns.numbers.push(NumberColumn::I64(column)),
                DynamicColumn::U64(column) => columns.numbers.push(NumberColumn::U64(column)),
                DynamicColumn::F64(column) => columns.numbers.push(NumberColumn::F64(column)),
                DynamicColumn::Bool(column) => columns.numbers.push(NumberColumn::Bool(column)),
                DynamicColumn::Str(column) => columns.strings = Some(column),
                // Dates, IPs and bytes are never written: JSON strings stay strings.
                _ => {}
            }
        }
        Ok(columns)
    }

    /// The doc's sort value: for arrays the smallest value ascending and the largest descending
    /// (Elasticsearch's default sort mode).
    fn sort_value(&self, doc: DocId, order: SortOrder) -> SegmentSortValue {
        let pick = |best: Option<f64>, value: f64| match (best, order) {
            (None, _) => Some(value),
            (Some(best), SortOrder::Asc) => Some(best.min(value)),
            (Some(best), SortOrder::Desc) => Some(best.max(value)),
        };
        let mut number = None;
        for column in &self.numbers {
            column.for_each_value(doc, |value| number = pick(number, value));
        }
        let mut ordinal: Option<u64> = None;
        if let Some(strings) = &self.strings {
            for ord in strings.term_ords(doc) {
                ordinal = Some(match (ordinal, order) {
                    (None, _) => ord,
                    (Some(best), SortOrder::Asc) => best.min(ord),
                    (Some(best), SortOrder::Desc) => best.max(ord),
                });
            }
        }
        match (number, ordinal, order) {
            (Some(number), None, _) | (Some(number), Some(_), SortOrder::Asc) => {
                SegmentSortValue::Number(number)
            }
            (_, Some(ordinal), _) => SegmentSortValue::Ordinal(ordinal),
            (None, None, _) => SegmentSortValue::Missing,
        }
    }
}

fn open_column(handle: &DynamicColumnHandle) -> Result<DynamicColumn, SearchError> {
    handle
        .open()
        .map_err(|err| io_error("open fast field column", err))
}

/// The strings of sorted, distinct dictionary ordinals, read in one pass over the dictionary
/// (`ord_to_str` would decode a dictionary block per ordinal: seconds for a deep page).
fn ordinal_texts(strings: &StrColumn, sorted_ordinals: &[u64]) -> Result<Vec<String>, SearchError> {
    let mut texts = Vec::with_capacity(sorted_ordinals.len());
    let complete = strings
        .dictionary()
        .sorted_ords_to_term_cb(sorted_ordinals, |bytes| {
            texts.push(String::from_utf8_lossy(bytes).into_owned());
        })
        .map_err(|err| io_error("read fast field dictionary", err))?;
    if !complete || texts.len() != sorted_ordinals.len() {
        return Err(SearchError::Internal(
            "fast field dictionary lacks an ordinal its column uses".to_owned(),
        ));
    }
    Ok(texts)
}

/// The strings of the ordinals with a non-zero count, with their counts.
fn counted_texts(
    strings: &StrColumn,
    per_ordinal: &[u64],
) -> Result<Vec<(String, u64)>, SearchError> {
    let (ordinals, counts): (Vec<u64>, Vec<u64>) = per_ordinal
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
        .map(|(ordinal, count)| (ordinal as u64, *count))
        .unzip();
    Ok(ordinal_texts(strings, &ordinals)?
        .into_iter()
        .zip(counts)
        .collect())
}

/// One candidate for the page: its global sort key and address.
struct SortCandidate {
    key: Vec<SortValue>,
    address: DocAddress,
}

fn sorted_page(
    searcher: &Searcher,
    hits: &[SegmentHits],
    query: &SearchQuery,
) -> Result<Vec<DocAddress>, SearchError> {
    let window = ranked_window(query.offset, query.limit);
    let orders: Vec<SortOrder> = query.sort_by.iter().map(|(_, order)| *order).collect();
    let mut candidates: Vec<SortCandidate> = Vec::new();
    for segment in hits.iter().filter(|segment| !segment.docs.is_empty()) {
        let reader = searcher.segment_reader(segment.segment_ord);
        let columns = query
            .sort_by
            .iter()
            .map(|(field, _)| PathColumns::open(reader, &format!("keyword.{field}")))
            .collect::<Result<Vec<_>, _>>()?;
        // Rank inside the segment on ordinals (cheap), then turn only the segment's best
        // `window` hits into comparable strings.
        let width = columns.len();
        let mut keys: Vec<SegmentSortValue> = Vec::with_capacity(segment.docs.len() * width);
        for &doc in &segment.docs {
            for (column, order) in columns.iter().zip(&orders) {
                keys.push(column.sort_value(doc, *order));
            }
        }
        let mut positions: Vec<usize> = (0..segment.docs.len()).collect();
        top_k(&mut positions, window, |&a, &b| {
            let key_a = &keys[a * width..(a + 1) * width];
            let key_b = &keys[b * width..(b + 1) * width];
            key_a
                .iter()
                .zip(key_b)
                .zip(&orders)
                .map(|((x, y), order)| compare_segment_values(*x, *y, *order))
                .find(|ordering| ordering.is_ne())
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.cmp(&b))
        });
        // Per sort field: the distinct ordinals the kept hits use, and their strings.
        let mut resolved: Vec<(Vec<u64>, Vec<String>)> = Vec::with_capacity(width);
        for (field, column) in columns.iter().enumerate() {
            let mut ordinals: Vec<u64> = positions
                .iter()
                .filter_map(|&position| match keys[position * width + field] {
                    SegmentSortValue::Ordinal(ordinal) => Some(ordinal),
                    _ => None,
                })
                .collect();
            ordinals.sort_unstable();
            ordinals.dedup();
            let texts = match &column.strings {
                Some(strings) => ordinal_texts(strings, &ordinals)?,
                None => Vec::new(),
            };
            resolved.push((ordinals, texts));
        }
        for position in positions {
            let key = keys[position * width..(position + 1) * width]
                .iter()
                .zip(&resolved)
                .map(|(value, (ordinals, texts))| match *value {
                    SegmentSortValue::Number(number) => SortValue::Number(number),
                    SegmentSortValue::Missing => SortValue::Missing,
                    SegmentSortValue::Ordinal(ordinal) => ordinals
                        .binary_search(&ordinal)
                        .ok()
                        .and_then(|index| texts.get(index))
                        .map_or(SortValue::Missing, |text| SortValue::Text(text.clone())),
                })
                .collect();
            candidates.push(SortCandidate {
                key,
                address: DocAddress::new(segment.segment_ord, segment.docs[position]),
            });
        }
    }
    top_k(&mut candidates, window, |a, b| {
        a.key
            .iter()
            .zip(&b.key)
            .zip(&orders)
            .map(|((x, y), order)| compare_sort_values(x, y, *order))
            .find(|ordering| ordering.is_ne())
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.address.cmp(&b.address))
    });
    Ok(candidates
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|candidate| candidate.address)
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Facets

fn count_facet(
    searcher: &Searcher,
    hits: &[SegmentHits],
    request: &FacetRequest,
) -> Result<Facet, SearchError> {
    let column_name = format!("exact.{}", request.field);
    let mut counts: HashMap<String, u64> = HashMap::new();
    for segment in hits.iter().filter(|segment| !segment.docs.is_empty()) {
        let reader = searcher.segment_reader(segment.segment_ord);
        let columns = PathColumns::open(reader, &column_name)?;
        match request.kind {
            FacetKind::Terms => count_terms(&columns, &segment.docs, &mut counts)?,
            FacetKind::DateHistogram => count_days(&columns, &segment.docs, &mut counts)?,
        }
    }
    let mut values: Vec<FacetValue> = counts
        .into_iter()
        .map(|(name, count)| FacetValue { name, count })
        .collect();
    match request.kind {
        // Elasticsearch's terms order: most frequent first, then by value.
        FacetKind::Terms => values.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name))),
        // Histogram buckets in date order; "yyyy-MM-dd" sorts chronologically as text.
        FacetKind::DateHistogram => values.sort_by(|a, b| a.name.cmp(&b.name)),
    }
    Ok(Facet {
        name: request.field.clone(),
        values,
    })
}

/// Counts per string ordinal, each document once per distinct value.
fn count_ordinals(strings: &StrColumn, docs: &[DocId]) -> Vec<u64> {
    let mut per_ordinal = vec![0u64; strings.num_terms()];
    let mut doc_ordinals: Vec<u64> = Vec::new();
    for &doc in docs {
        doc_ordinals.clear();
        doc_ordinals.extend(strings.term_ords(doc));
        if doc_ordinals.len() > 1 {
            doc_ordinals.sort_unstable();
            doc_ordinals.dedup();
        }
        for &ordinal in &doc_ordinals {
            if let Some(count) = per_ordinal.get_mut(ordinal as usize) {
                *count += 1;
            }
        }
    }
    per_ordinal
}

/// Counts per distinct number (by bit pattern), each document once per distinct value.
fn count_numbers(columns: &[NumberColumn], docs: &[DocId]) -> HashMap<u64, u64> {
    let mut per_value: HashMap<u64, u64> = HashMap::new();
    let mut doc_values: Vec<u64> = Vec::new();
    for &doc in docs {
        doc_values.clear();
        for column in columns {
            column.for_each_value(doc, |value| doc_values.push(value.to_bits()));
        }
        if doc_values.len() > 1 {
            doc_values.sort_unstable();
            doc_values.dedup();
        }
        for &bits in &doc_values {
            *per_value.entry(bits).or_default() += 1;
        }
    }
    per_value
}

fn count_terms(
    columns: &PathColumns,
    docs: &[DocId],
    counts: &mut HashMap<String, u64>,
) -> Result<(), SearchError> {
    if let Some(strings) = &columns.strings {
        for (text, count) in counted_texts(strings, &count_ordinals(strings, docs))? {
            *counts.entry(text).or_default() += count;
        }
    }
    // A JSON path holds one numeric column per segment, or a boolean one.
    let booleans = columns
        .numbers
        .iter()
        .all(|column| matches!(column, NumberColumn::Bool(_)));
    for (bits, count) in count_numbers(&columns.numbers, docs) {
        let value = f64::from_bits(bits);
        let name = if booleans {
            (value != 0.0).to_string()
        } else {
            number_name(value)
        };
        *counts.entry(name).or_default() += count;
    }
    Ok(())
}

/// A number as JSON would print it: integers without a fraction.
fn number_name(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        value.to_string()
    }
}

fn count_days(
    columns: &PathColumns,
    docs: &[DocId],
    counts: &mut HashMap<String, u64>,
) -> Result<(), SearchError> {
    if let Some(strings) = &columns.strings {
        for (text, count) in counted_texts(strings, &count_ordinals(strings, docs))? {
            if let Some(day) = day_of(&text) {
                *counts
                    .entry(day.format("%Y-%m-%d").to_string())
                    .or_default() += count;
            }
        }
    }
    for (bits, count) in count_numbers(&columns.numbers, docs) {
        // Numbers are epoch milliseconds, Elasticsearch's `epoch_millis`.
        let millis = f64::from_bits(bits) as i64;
        if let Some(moment) = DateTime::from_timestamp_millis(millis) {
            *counts
                .entry(moment.date_naive().format("%Y-%m-%d").to_string())
                .or_default() += count;
        }
    }
    Ok(())
}

/// The UTC day of a date string, as Elasticsearch buckets it: Sunbird's
/// `yyyy-MM-dd HH:mm:ss:SSSZ`, RFC 3339, or a date that starts with `yyyy-MM-dd` (taken as is).
fn day_of(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    if let Ok(moment) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S:%3f%z") {
        return Some(moment.naive_utc().date());
    }
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        return Some(moment.naive_utc().date());
    }
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

// ---------------------------------------------------------------------------------------------
// Source filtering

/// `_source` includes and excludes as dotted paths. A path reaching into an array of objects
/// applies to every element.
struct Projection {
    include: Option<PathTree>,
    exclude: Option<PathTree>,
}

#[derive(Default)]
struct PathTree {
    /// The whole value at this path is selected.
    whole: bool,
    children: BTreeMap<String, PathTree>,
}

impl PathTree {
    fn from_paths(paths: &[String]) -> Option<Self> {
        if paths.is_empty() {
            return None;
        }
        let mut root = PathTree::default();
        for path in paths {
            let mut node = &mut root;
            for segment in path.split('.') {
                node = node.children.entry(segment.to_owned()).or_default();
            }
            node.whole = true;
        }
        Some(root)
    }
}

impl Projection {
    fn new(include: &[String], exclude: &[String]) -> Self {
        Projection {
            include: PathTree::from_paths(include),
            exclude: PathTree::from_paths(exclude),
        }
    }

    fn apply(&self, mut source: Map<String, Value>) -> Map<String, Value> {
        if let Some(include) = &self.include {
            source = include_object(source, include);
        }
        if let Some(exclude) = &self.exclude {
            exclude_object(&mut source, exclude);
        }
        source
    }
}

fn include_object(object: Map<String, Value>, tree: &PathTree) -> Map<String, Value> {
    let mut kept = Map::new();
    for (key, value) in object {
        let Some(node) = tree.children.get(&key) else {
            continue;
        };
        if node.whole {
            kept.insert(key, value);
        } else if let Some(value) = include_value(value, node) {
            kept.insert(key, value);
        }
    }
    kept
}

fn include_value(value: Value, tree: &PathTree) -> Option<Value> {
    match value {
        Value::Object(object) => {
            let kept = include_object(object, tree);
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .into_iter()
                .filter_map(|item| include_value(item, tree))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        // A path below a scalar selects nothing.
        _ => None,
    }
}

fn exclude_object(object: &mut Map<String, Value>, tree: &PathTree) {
    for (key, node) in &tree.children {
        if node.whole {
            object.remove(key);
        } else if let Some(value) = object.get_mut(key) {
            exclude_value(value, node);
        }
    }
}

fn exclude_value(value: &mut Value, tree: &PathTree) {
    match value {
        Value::Object(object) => exclude_object(object, tree),
        Value::Array(items) => items.iter_mut().for_each(|item| exclude_value(item, tree)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::search::conformance::run_search_conformance;

    #[tokio::test]
    async fn conformance_in_memory() {
        let index = TantivyIndex::in_memory().expect("in-memory index");
        run_search_conformance(Arc::new(index)).await;
    }

    #[tokio::test]
    async fn conformance_on_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = TantivyIndex::open(dir.path()).expect("on-disk index");
        run_search_conformance(Arc::new(index)).await;
    }

    fn doc(id: &str, version: u64, source: Value) -> IndexDoc {
        let Value::Object(source) = source else {
            panic!("source must be an object");
        };
        IndexDoc {
            id: id.to_owned(),
            version,
            source,
        }
    }

    #[tokio::test]
    async fn writes_survive_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let index = TantivyIndex::open(dir.path()).expect("open");
            index
                .upsert(
                    IndexName::User,
                    vec![
                        doc("u1", 3, json!({ "firstName": "Asha", "status": 1 })),
                        doc("u2", 1, json!({ "firstName": "Bala" })),
                    ],
                )
                .await
                .expect("upsert");
            index
                .upsert(
                    IndexName::Organisation,
                    vec![doc("o1", 1, json!({ "orgName": "Org" }))],
                )
                .await
                .expect("upsert org");
            index
                .delete(IndexName::User, vec!["u2".to_owned()])
                .await
                .expect("delete");
        }
        let index = TantivyIndex::open(dir.path()).expect("reopen");
        assert!(index.healthy().await);
        let stored = index.get(IndexName::User, "u1").await.expect("get");
        assert_eq!(
            stored,
            Some(doc("u1", 3, json!({ "firstName": "Asha", "status": 1 })))
        );
        assert_eq!(index.get(IndexName::User, "u2").await.expect("get"), None);
        // The version survives too: a stale replay after restart is still ignored.
        index
            .upsert(
                IndexName::User,
                vec![doc("u1", 2, json!({ "firstName": "Old" }))],
            )
            .await
            .expect("stale upsert");
        let mut query = SearchQuery::match_all(10);
        query.filters.push(Filter::Term {
            field: "firstName".into(),
            value: Scalar::Str("asha".into()),
        });
        assert_eq!(
            index
                .search(IndexName::User, &query)
                .await
                .expect("search")
                .count,
            1
        );
        let orgs = index
            .search(IndexName::Organisation, &SearchQuery::match_all(10))
            .await
            .expect("search orgs");
        assert_eq!(orgs.count, 1);
        // Each index lives in its own directory named after the Sunbird alias.
        for name in IndexName::ALL {
            assert!(dir.path().join(name.as_str()).join("meta.json").exists());
        }
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _first = TantivyIndex::open(dir.path()).expect("open");
        match TantivyIndex::open(dir.path()) {
            Err(SearchError::Unavailable(message)) => assert!(message.contains("user_alias")),
            Err(other) => panic!("expected unavailable, got {other:?}"),
            Ok(_) => panic!("two writers on one index"),
        }
    }

    #[tokio::test]
    async fn over_long_values_are_kept_but_not_filterable() {
        let index = TantivyIndex::in_memory().expect("index");
        let blob = "X".repeat(MAX_KEYWORD_BYTES);
        let source = json!({ "id": "u1", "profileDetails": blob, "firstName": "Asha" });
        index
            .upsert(IndexName::User, vec![doc("u1", 1, source.clone())])
            .await
            .expect("upsert");
        let search = |filter: Filter| {
            let mut query = SearchQuery::match_all(10);
            query.filters.push(filter);
            let index = &index;
            async move { index.search(IndexName::User, &query).await.expect("search") }
        };
        let exact = Filter::Term {
            field: "profileDetails".into(),
            value: Scalar::Str(blob.clone()),
        };
        assert_eq!(
            search(exact).await.count,
            0,
            "an over-long value is not a term"
        );
        let empty = Filter::Term {
            field: "profileDetails".into(),
            value: Scalar::Str(String::new()),
        };
        assert_eq!(search(empty).await.count, 0, "nor an empty string");
        assert_eq!(
            search(Filter::Exists("profileDetails".into())).await.count,
            0
        );
        let result = search(Filter::Exists("firstName".into())).await;
        assert_eq!(
            result.content,
            vec![doc("u1", 1, source).source],
            "source kept whole"
        );
    }

    /// Timings at the embedded engine's target size. Run it in release mode:
    /// `cargo test --release --lib search_at_100k_users -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "performance smoke test, slow in debug builds"]
    async fn search_at_100k_users() {
        use std::time::Instant;
        const USERS: usize = 100_000;
        let dir = tempfile::tempdir().expect("temp dir");
        let index = TantivyIndex::open(dir.path()).expect("open");
        let names = [
            "Asha", "Bala", "Chitra", "Devi", "Esha", "Farhan", "Gita", "Hari",
        ];
        let started = Instant::now();
        for batch in 0..USERS / 1000 {
            let docs = (0..1000)
                .map(|i| {
                    let n = batch * 1000 + i;
                    let id = format!("user-{n:06}");
                    let source = json!({
                        "id": id, "userId": id,
                        "firstName": format!("{}{}", names[n % names.len()], n % 977),
                        "lastName": format!("Surname{}", n % 3001),
                        "email": format!("enc-{n:040x}"), "phone": format!("enc-{n:032x}"),
                        "status": (n % 3) as i64, "isDeleted": n % 50 == 0,
                        "rootOrgId": format!("ORG-{}", n % 40), "channel": format!("state-{}", n % 40),
                        "createdDate": format!("2024-{:02}-{:02} 10:00:00:000+0530", 1 + n % 12, 1 + n % 28),
                        "roles": [{ "role": "PUBLIC" }, { "role": if n % 10 == 0 { "ORG_ADMIN" } else { "BOOK_REVIEWER" } }],
                        "organisations": [{ "organisationId": format!("ORG-{}", n % 40), "orgName": "School", "isDeleted": false }],
                        "profileUserTypes": [{ "type": "teacher" }],
                        "framework": { "board": ["CBSE"], "medium": ["English"], "gradeLevel": ["Class 1"] },
                        "profileDetails": format!("{{\"bio\": \"{}\"}}", "x".repeat(300)),
                    });
                    doc(&id, 1, source)
                })
                .collect();
            index.upsert(IndexName::User, docs).await.expect("upsert");
        }
        println!("indexed {USERS} users in {:?}", started.elapsed());

        let mut cases: Vec<(&str, SearchQuery)> = Vec::new();
        cases.push(("match all, 20", SearchQuery::match_all(20)));
        let mut q = SearchQuery::match_all(20);
        q.filters.push(Filter::Term {
            field: "status".into(),
            value: Scalar::Int(1),
        });
        q.sort_by = vec![("createdDate".into(), SortOrder::Desc)];
        cases.push(("status=1 sorted by createdDate", q));
        let mut q = SearchQuery::match_all(20);
        q.sort_by = vec![("firstName".into(), SortOrder::Asc)];
        q.offset = 10_000;
        cases.push(("all sorted by firstName, offset 10000", q));
        let mut q = SearchQuery::match_all(20);
        q.facets = vec![
            FacetRequest {
                field: "rootOrgId".into(),
                kind: FacetKind::Terms,
            },
            FacetRequest {
                field: "roles.role".into(),
                kind: FacetKind::Terms,
            },
            FacetRequest {
                field: "createdDate".into(),
                kind: FacetKind::DateHistogram,
            },
        ];
        cases.push(("3 facets over all", q));
        let mut q = SearchQuery::match_all(20);
        q.query = Some("asha".into());
        cases.push(("free text asha", q));
        let mut q = SearchQuery::match_all(20);
        q.filters.push(Filter::Prefix {
            field: "firstName".into(),
            prefix: "as".into(),
        });
        q.filters.push(Filter::Terms {
            field: "organisations.organisationId".into(),
            values: vec![Scalar::Str("org-8".into()), Scalar::Str("org-16".into())],
        });
        cases.push(("prefix and terms", q));
        let mut q = SearchQuery::match_all(20);
        q.filters.push(Filter::Term {
            field: "userId".into(),
            value: Scalar::Str("user-054321".into()),
        });
        cases.push(("by id", q));
        for (name, query) in &cases {
            let started = Instant::now();
            let result = index.search(IndexName::User, query).await.expect("search");
            println!("{name}: {} hits in {:?}", result.count, started.elapsed());
        }
        let started = Instant::now();
        index
            .upsert(
                IndexName::User,
                vec![doc("user-000001", 2, json!({ "id": "user-000001" }))],
            )
            .await
            .expect("single upsert");
        println!("single upsert + commit: {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn whole_words_outrank_prefixes_and_punctuation_finds_nothing() {
        let index = TantivyIndex::in_memory().expect("index");
        index
            .upsert(
                IndexName::User,
                vec![
                    doc("long", 1, json!({ "id": "long", "firstName": "Ashalatha" })),
                    doc("exact", 1, json!({ "id": "exact", "firstName": "Asha" })),
                    doc("other", 1, json!({ "id": "other", "firstName": "Bala" })),
                ],
            )
            .await
            .expect("upsert");
        let text_query = |text: &str| {
            let mut query = SearchQuery::match_all(10);
            query.query = Some(text.to_owned());
            query
        };
        let result = index
            .search(IndexName::User, &text_query("asha"))
            .await
            .expect("search");
        let ids: Vec<_> = result
            .content
            .iter()
            .map(|source| source["id"].clone())
            .collect();
        assert_eq!(ids, vec![json!("exact"), json!("long")]);
        // Shorter than three characters: whole words only.
        let result = index
            .search(IndexName::User, &text_query("as"))
            .await
            .expect("search");
        assert_eq!(result.count, 0);
        let result = index
            .search(IndexName::User, &text_query("!!"))
            .await
            .expect("search");
        assert_eq!(result.count, 0);
    }

    #[test]
    fn dates_bucket_by_utc_day() {
        let day = |text: &str| day_of(text).map(|day| day.to_string());
        assert_eq!(
            day("2024-07-01 12:47:05:123+0530").as_deref(),
            Some("2024-07-01")
        );
        // 00:10 in India is the previous day in UTC, where Elasticsearch buckets it.
        assert_eq!(
            day("2024-07-01 00:10:05:123+0530").as_deref(),
            Some("2024-06-30")
        );
        assert_eq!(
            day("2024-07-01T23:30:00-02:00").as_deref(),
            Some("2024-07-02")
        );
        assert_eq!(day("2024-07-01").as_deref(), Some("2024-07-01"));
        assert_eq!(day("2024-07-01 10:00:00").as_deref(), Some("2024-07-01"));
        assert_eq!(day("not a date"), None);
        assert_eq!(day("2024"), None);
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn numbers_print_like_json() {
        assert_eq!(number_name(1.0), "1");
        assert_eq!(number_name(-3.0), "-3");
        assert_eq!(number_name(1.5), "1.5");
    }

    #[test]
    fn projection_includes_and_excludes_dotted_paths() {
        let Value::Object(source) = json!({
            "firstName": "Asha",
            "email": "a@x.org",
            "organisations": [
                { "organisationId": "o1", "orgName": "One" },
                { "organisationId": "o2" },
                "scalar"
            ],
            "profile": { "board": "CBSE", "medium": "English" },
        }) else {
            unreachable!()
        };
        let fields = |paths: &[&str]| paths.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let projection = Projection::new(&fields(&["firstName", "organisations.orgName"]), &[]);
        assert_eq!(
            Value::Object(projection.apply(source.clone())),
            json!({ "firstName": "Asha", "organisations": [{ "orgName": "One" }] })
        );
        let projection = Projection::new(&[], &fields(&["email", "profile.board"]));
        assert_eq!(
            Value::Object(projection.apply(source.clone())),
            json!({
                "firstName": "Asha",
                "organisations": [
                    { "organisationId": "o1", "orgName": "One" },
                    { "organisationId": "o2" },
                    "scalar"
                ],
                "profile": { "medium": "English" },
            })
        );
        // A parent path wins over its children.
        let projection = Projection::new(&fields(&["profile", "profile.board"]), &[]);
        assert_eq!(
            Value::Object(projection.apply(source)),
            json!({ "profile": { "board": "CBSE", "medium": "English" } })
        );
    }
}
