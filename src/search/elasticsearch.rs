//! The search index on Elasticsearch (7.10+ / 8.x REST API), shared by every instance: its
//! indexers compete for the outbox stream ([`SearchIndex::shared_across_instances`]).
//!
//! It speaks the REST API through reqwest: the official `elasticsearch` crate has never had a
//! stable release (crates.md), and the engine needs five endpoints (`_bulk`, `_search`,
//! `_doc`, `_delete_by_query`, index creation).
//!
//! Sunbird's conventions are kept so a Sunbird deployment's clients and dashboards find what they
//! expect: the aliases `user_alias`, `org_alias` and `location` (each over a concrete index
//! `<alias>_v1`), and a `.raw` sub-field on every field, which every exact filter, range, sort
//! and facet uses. Strings are text (Sunbird's ngram `cs_index_analyzer`) with a `.raw` keyword
//! lower-cased by the `keylower` normalizer, so `.raw` matches case-insensitively as Sunbird's
//! `keylower` analyzer does and can be sorted and aggregated; numbers and booleans carry a
//! `.raw` of their own type, so one rule (`<field>.raw`) serves every value. Fields named like
//! Sunbird's dates (`createdDate`, `tncAcceptedOn`, `dob`, ...) are dates in Sunbird's format,
//! for the day histogram facet.
//!
//! Writes are bulk requests with `version_type=external_gte` and the store's entity version: a
//! late or replayed event never overwrites a newer document (Elasticsearch answers 409 for it,
//! which is the "skipped" of the trait). They are retried a bounded number of times on
//! connection failures, 429 and 5xx. Searches are sent once with a short connect timeout, so an
//! unreachable cluster is a fast 503, never a hung request.
//!
//! Nothing here has run against a real cluster on the development machines (none can be had);
//! the request bodies are pinned by golden tests, the HTTP exchanges by a recording server, and
//! the conformance suite runs when `USERORG_TEST_ELASTICSEARCH` names a cluster.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::{
    Facet, FacetKind, FacetValue, Filter, IndexDoc, IndexName, Scalar, SearchError, SearchIndex,
    SearchQuery, SearchResult, SortOrder,
};

/// Most values a terms facet returns (Sunbird asks Elasticsearch's default of 10; the embedded
/// engine returns every value, so this is the larger bound both agree on in practice).
pub const FACET_SIZE: usize = 1000;

/// Elasticsearch's default `index.max_result_window`: `from + size` may not exceed it.
pub const MAX_RESULT_WINDOW: usize = 10_000;

/// Where the engine finds the cluster and how patient it is.
#[derive(Clone)]
pub struct ElasticsearchOptions {
    /// `http://host:9200`, optionally with `user:password@` (sent as basic auth, never logged).
    pub url: String,
    /// Prepended to every index and alias name, so deployments can share a cluster.
    pub index_prefix: String,
    /// Longest wait for one request.
    pub timeout: Duration,
    /// Longest wait to connect: what an unreachable cluster costs a search.
    pub connect_timeout: Duration,
    /// Attempts of a write before it fails (the indexer then retries the batch later).
    pub write_attempts: u32,
    /// Pause before the second attempt, doubled after each.
    pub retry_pause: Duration,
}

impl std::fmt::Debug for ElasticsearchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchOptions")
            .field("url", &"<redacted>")
            .field("index_prefix", &self.index_prefix)
            .finish_non_exhaustive()
    }
}

pub struct ElasticsearchIndex {
    client: reqwest::Client,
    base: String,
    credentials: Option<(String, String)>,
    prefix: String,
    write_attempts: u32,
    retry_pause: Duration,
    /// Rebuilds under way: (live index, its copy being filled) by index.
    rebuilding: std::sync::Mutex<std::collections::HashMap<IndexName, (String, String)>>,
}

/// The alias clients know and the concrete index behind it.
pub fn alias_of(prefix: &str, index: IndexName) -> String {
    format!("{prefix}{}", index.as_str())
}

pub fn concrete_index_of(prefix: &str, index: IndexName) -> String {
    format!("{}_v1", alias_of(prefix, index))
}

/// The index a rebuild fills after `live`: `<alias>_v<n+1>` after `<alias>_v<n>`.
pub fn next_generation(alias: &str, live: &str) -> String {
    let generation = live
        .strip_prefix(alias)
        .and_then(|rest| rest.strip_prefix("_v"))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1);
    format!("{alias}_v{}", generation + 1)
}

/// What `_aliases` is sent to point `alias` from `live` to `next` in one step.
pub fn alias_swap_body(alias: &str, live: &str, next: &str) -> Value {
    json!({"actions": [
        {"remove": {"index": live, "alias": alias}},
        {"add": {"index": next, "alias": alias, "is_write_index": true}}
    ]})
}

/// The text-and-`.raw` layout of a string field.
fn string_mapping() -> Value {
    json!({
        "type": "text",
        "analyzer": "cs_index_analyzer",
        "search_analyzer": "cs_search_analyzer",
        "fields": {"raw": {"type": "keyword", "normalizer": "keylower", "ignore_above": 8191}}
    })
}

/// Settings and mappings of one index, with its alias: what index creation sends.
pub fn index_body(prefix: &str, index: IndexName) -> Value {
    let ngram_max = match index {
        IndexName::Location => 20,
        IndexName::User | IndexName::Organisation | IndexName::Note => 10,
    };
    let ngram_min = match index {
        IndexName::Location => 1,
        IndexName::User | IndexName::Organisation | IndexName::Note => 3,
    };
    json!({
        "settings": {
            "index": {"max_ngram_diff": ngram_max - ngram_min},
            "analysis": {
                "analyzer": {
                    "cs_index_analyzer": {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": ["lowercase", "mynGram"]
                    },
                    "cs_search_analyzer": {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": ["lowercase"]
                    }
                },
                "normalizer": {
                    "keylower": {"type": "custom", "filter": ["lowercase"]}
                },
                "filter": {
                    "mynGram": {"type": "ngram", "min_gram": ngram_min, "max_gram": ngram_max}
                }
            }
        },
        "mappings": {
            "dynamic": true,
            "date_detection": false,
            "dynamic_templates": [
                {"dates": {
                    "match_mapping_type": "string",
                    "match_pattern": "regex",
                    "match": "^(.*Date|.*On|dob|lastLoginTime)$",
                    "mapping": {
                        "type": "date",
                        "format": "yyyy-MM-dd HH:mm:ss:SSSZ||yyyy-MM-dd||strict_date_optional_time||epoch_millis",
                        "ignore_malformed": true,
                        "fields": {"raw": {"type": "keyword", "normalizer": "keylower", "ignore_above": 8191}}
                    }
                }},
                {"strings": {"match_mapping_type": "string", "mapping": string_mapping()}},
                {"longs": {
                    "match_mapping_type": "long",
                    "mapping": {"type": "long", "fields": {"raw": {"type": "long"}}}
                }},
                {"doubles": {
                    "match_mapping_type": "double",
                    "mapping": {"type": "double", "fields": {"raw": {"type": "double"}}}
                }},
                {"booleans": {
                    "match_mapping_type": "boolean",
                    "mapping": {"type": "boolean", "fields": {"raw": {"type": "boolean"}}}
                }}
            ]
        },
        "aliases": {alias_of(prefix, index): {"is_write_index": true}}
    })
}

/// The index template every generation of an index (`<alias>_v1`, `_v2`, ...) is made from:
/// Sunbird's settings and mappings, so a rebuild's new generation gets them from the cluster,
/// and a mapping changed here reaches the next generation without touching the live one.
pub fn index_template_body(prefix: &str, index: IndexName) -> Value {
    let body = index_body(prefix, index);
    json!({
        "index_patterns": [format!("{}_v*", alias_of(prefix, index))],
        "priority": 200,
        "template": {"settings": body["settings"], "mappings": body["mappings"]}
    })
}

/// What creating the first generation sends: only the alias (the template brings the rest).
pub fn first_generation_body(prefix: &str, index: IndexName) -> Value {
    json!({"aliases": index_body(prefix, index)["aliases"]})
}

fn raw(field: &str) -> String {
    format!("{field}.raw")
}

/// A filter value as `.raw` holds it: strings lower-cased (the `keylower` normalizer would do
/// the same; Sunbird's query builder lower-cases them too).
fn raw_value(value: &Scalar) -> Value {
    match value {
        Scalar::Str(text) => Value::String(text.to_lowercase()),
        Scalar::Int(number) => json!(number),
        Scalar::Float(number) => json!(number),
        Scalar::Bool(flag) => json!(flag),
    }
}

/// Escapes the wildcard pattern characters of a literal.
fn wildcard_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// One filter clause as an Elasticsearch query clause.
pub fn filter_clause(filter: &Filter) -> Value {
    match filter {
        Filter::Term { field, value } => json!({"term": {raw(field): raw_value(value)}}),
        Filter::Terms { field, values } => {
            let values: Vec<Value> = values.iter().map(raw_value).collect();
            json!({"terms": {raw(field): values}})
        }
        Filter::Range {
            field,
            gte,
            gt,
            lte,
            lt,
        } => {
            let mut bounds = Map::new();
            for (name, bound) in [("gte", gte), ("gt", gt), ("lte", lte), ("lt", lt)] {
                if let Some(bound) = bound {
                    bounds.insert(name.to_string(), raw_value(bound));
                }
            }
            json!({"range": {raw(field): bounds}})
        }
        Filter::Prefix { field, prefix } => {
            json!({"prefix": {raw(field): prefix.to_lowercase()}})
        }
        Filter::Suffix { field, suffix } => json!({"wildcard": {raw(field): {
            "value": format!("*{}", wildcard_literal(&suffix.to_lowercase()))
        }}}),
        Filter::Or(alternatives) => json!({"bool": {
            "should": alternatives.iter().map(filter_clause).collect::<Vec<_>>(),
            "minimum_should_match": 1
        }}),
        Filter::Exists(field) => json!({"exists": {"field": field}}),
        Filter::NotExists(field) => {
            json!({"bool": {"must_not": [{"exists": {"field": field}}]}})
        }
    }
}

/// The `_search` body of a query: filters in filter context (no scoring), the free text and
/// the fuzzy match scored, `_source` includes and excludes, paging, sort and facets.
pub fn search_body(query: &SearchQuery) -> Value {
    let mut bool_query = Map::new();
    if !query.filters.is_empty() {
        bool_query.insert(
            "filter".into(),
            Value::Array(query.filters.iter().map(filter_clause).collect()),
        );
    }
    let mut must = Vec::new();
    if let Some(text) = &query.query {
        let mut simple = Map::new();
        simple.insert("query".into(), json!(text));
        simple.insert("default_operator".into(), json!("or"));
        simple.insert("lenient".into(), json!(true));
        if !query.query_fields.is_empty() {
            simple.insert("fields".into(), json!(query.query_fields));
        }
        must.push(json!({ "simple_query_string": simple }));
    }
    if let Some((field, text)) = &query.fuzzy {
        must.push(json!({"match": {field: {"query": text, "fuzziness": "AUTO"}}}));
    }
    if !must.is_empty() {
        bool_query.insert("must".into(), Value::Array(must));
    }
    let mut body = Map::new();
    body.insert(
        "query".into(),
        if bool_query.is_empty() {
            json!({"match_all": {}})
        } else {
            json!({ "bool": bool_query })
        },
    );
    // Elasticsearch refuses a page reaching past `index.max_result_window`: such a page is
    // shortened to what the window holds.
    body.insert("from".into(), json!(query.offset.min(MAX_RESULT_WINDOW)));
    body.insert(
        "size".into(),
        json!(
            query
                .limit
                .min(MAX_RESULT_WINDOW.saturating_sub(query.offset))
        ),
    );
    body.insert("track_total_hits".into(), json!(true));
    if !query.fields.is_empty() || !query.exclude_fields.is_empty() {
        let mut source = Map::new();
        if !query.fields.is_empty() {
            source.insert("includes".into(), json!(query.fields));
        }
        if !query.exclude_fields.is_empty() {
            source.insert("excludes".into(), json!(query.exclude_fields));
        }
        body.insert("_source".into(), Value::Object(source));
    }
    if !query.sort_by.is_empty() {
        let sort: Vec<Value> = query
            .sort_by
            .iter()
            .map(|(field, order)| {
                let order = match order {
                    SortOrder::Asc => "asc",
                    SortOrder::Desc => "desc",
                };
                // A field no document has yet sorts as absent instead of failing the search.
                json!({raw(field): {"order": order, "unmapped_type": "keyword"}})
            })
            .collect();
        body.insert("sort".into(), Value::Array(sort));
    }
    if !query.facets.is_empty() {
        let mut aggs = Map::new();
        for facet in &query.facets {
            let agg = match facet.kind {
                FacetKind::Terms => {
                    json!({"terms": {"field": raw(&facet.field), "size": FACET_SIZE}})
                }
                FacetKind::DateHistogram => json!({"date_histogram": {
                    "field": facet.field,
                    "calendar_interval": "1d",
                    "format": "yyyy-MM-dd",
                    "min_doc_count": 1
                }}),
            };
            aggs.insert(facet.field.clone(), agg);
        }
        body.insert("aggs".into(), Value::Object(aggs));
    }
    Value::Object(body)
}

/// `{count, content, facets}` from a `_search` answer.
pub fn search_result(query: &SearchQuery, answer: &Value) -> Result<SearchResult, SearchError> {
    let hits = &answer["hits"];
    let count = hits["total"]["value"]
        .as_u64()
        .or_else(|| hits["total"].as_u64())
        .ok_or_else(|| SearchError::Internal("a search answer without hits.total".into()))?;
    let content = hits["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .filter_map(|hit| hit["_source"].as_object().cloned())
                .collect()
        })
        .unwrap_or_default();
    let facets = query
        .facets
        .iter()
        .map(|facet| Facet {
            name: facet.field.clone(),
            values: answer["aggregations"][&facet.field]["buckets"]
                .as_array()
                .map(|buckets| {
                    buckets
                        .iter()
                        .map(|bucket| FacetValue {
                            name: bucket["key_as_string"]
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| match &bucket["key"] {
                                    Value::String(key) => key.clone(),
                                    other => other.to_string(),
                                }),
                            count: bucket["doc_count"].as_u64().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    Ok(SearchResult {
        count,
        content,
        facets,
    })
}

/// The `_bulk` body (NDJSON) indexing `docs` at their entity versions.
pub fn bulk_upsert_body(index_name: &str, docs: &[IndexDoc]) -> String {
    let mut body = String::new();
    for doc in docs {
        let action = json!({"index": {
            "_index": index_name,
            "_id": doc.id,
            "version": doc.version,
            "version_type": "external_gte"
        }});
        body.push_str(&action.to_string());
        body.push('\n');
        body.push_str(&Value::Object(doc.source.clone()).to_string());
        body.push('\n');
    }
    body
}

/// The `_bulk` body (NDJSON) deleting `ids`.
pub fn bulk_delete_body(index_name: &str, ids: &[String]) -> String {
    let mut body = String::new();
    for id in ids {
        body.push_str(&json!({"delete": {"_index": index_name, "_id": id}}).to_string());
        body.push('\n');
    }
    body
}

/// Reads a `_bulk` answer: a version conflict (a newer document is there) is the skip the trait
/// asks for, a missing document on delete is fine; throttling and server errors are worth a
/// retry; anything else is a failure of its own.
pub fn bulk_outcome(answer: &Value) -> Result<(), SearchError> {
    if answer["errors"] != json!(true) {
        return Ok(());
    }
    let items = answer["items"].as_array().cloned().unwrap_or_default();
    for item in &items {
        let Some((_, result)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let status = result["status"].as_u64().unwrap_or(0);
        match status {
            200..=299 | 404 | 409 => {}
            429 | 500..=599 => {
                return Err(SearchError::Unavailable(format!(
                    "bulk item answered {status}: {}",
                    result["error"]["type"].as_str().unwrap_or("error")
                )));
            }
            _ => {
                return Err(SearchError::Internal(format!(
                    "bulk item answered {status}: {} {}",
                    result["error"]["type"].as_str().unwrap_or("error"),
                    result["error"]["reason"].as_str().unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// Whether an answer (or its absence) is worth another attempt.
fn retryable(status: Option<StatusCode>) -> bool {
    match status {
        None => true,
        Some(status) => status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
    }
}

/// The URL without its credentials, and the credentials.
fn split_credentials(url: &str) -> Result<(String, Option<(String, String)>), SearchError> {
    let mut parsed = reqwest::Url::parse(url).map_err(|e| {
        SearchError::Internal(format!("`search.elasticsearch.url` is not a URL: {e}"))
    })?;
    let credentials = (!parsed.username().is_empty()).then(|| {
        (
            parsed.username().to_string(),
            parsed.password().unwrap_or_default().to_string(),
        )
    });
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((
        parsed.as_str().trim_end_matches('/').to_string(),
        credentials,
    ))
}

/// A request that got no answer, with its causes ("error sending request: ... Connection
/// refused"), without the URL (reqwest prints it; it carries no credentials here, but paths
/// carry ids).
fn transport(error: reqwest::Error) -> SearchError {
    SearchError::Unavailable(crate::domain::error::with_causes(&error.without_url()))
}

impl ElasticsearchIndex {
    /// Connects and makes the three indices with their aliases when they are missing (several
    /// instances may do this at once: the loser's "already exists" is fine).
    pub async fn open(options: &ElasticsearchOptions) -> Result<ElasticsearchIndex, SearchError> {
        let (base, credentials) = split_credentials(&options.url)?;
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .build()
            .map_err(|e| SearchError::Internal(e.to_string()))?;
        let engine = ElasticsearchIndex {
            client,
            base,
            credentials,
            prefix: options.index_prefix.clone(),
            write_attempts: options.write_attempts.max(1),
            retry_pause: options.retry_pause,
            rebuilding: Default::default(),
        };
        for index in IndexName::ALL {
            engine.put_template(index).await?;
            engine.ensure_index(index).await?;
        }
        Ok(engine)
    }

    /// Puts the index's template (idempotent: the same body replaces the same template).
    async fn put_template(&self, index: IndexName) -> Result<(), SearchError> {
        let path = format!("/_index_template/{}", alias_of(&self.prefix, index));
        let body = index_template_body(&self.prefix, index).to_string();
        let (status, answer) = self
            .send_retrying(Method::PUT, &path, Some((body, "application/json")))
            .await?;
        if !status.is_success() {
            return Err(Self::failure(&path, status, &answer));
        }
        Ok(())
    }

    async fn ensure_index(&self, index: IndexName) -> Result<(), SearchError> {
        let alias = alias_of(&self.prefix, index);
        let (status, _) = self
            .send_once(Method::HEAD, &format!("/_alias/{alias}"), None)
            .await?;
        if status.is_success() {
            return Ok(());
        }
        let path = format!("/{}", concrete_index_of(&self.prefix, index));
        let body = first_generation_body(&self.prefix, index).to_string();
        let (status, answer) = self
            .send_retrying(Method::PUT, &path, Some((body, "application/json")))
            .await?;
        if status.is_success()
            || answer["error"]["type"] == json!("resource_already_exists_exception")
        {
            return Ok(());
        }
        Err(SearchError::Internal(format!(
            "creating {path} answered {status}: {}",
            answer["error"]["reason"].as_str().unwrap_or_default()
        )))
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// One request; the answer's status and JSON body (`null` when it has none).
    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<(String, &'static str)>,
    ) -> Result<(StatusCode, Value), SearchError> {
        let mut request = self.request(method, path);
        if let Some((body, content_type)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        let answer = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, answer))
    }

    /// A write: retried on connection failures, 429 and 5xx, pausing between attempts.
    async fn send_retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<(String, &'static str)>,
    ) -> Result<(StatusCode, Value), SearchError> {
        let mut pause = self.retry_pause;
        let mut attempt = 1;
        loop {
            let outcome = self.send_once(method.clone(), path, body.clone()).await;
            let status = match &outcome {
                Ok((status, _)) => Some(*status),
                Err(_) => None,
            };
            if !retryable(status) || attempt >= self.write_attempts {
                return match outcome {
                    Ok((status, answer)) if retryable(Some(status)) => {
                        Err(Self::failure(path, status, &answer))
                    }
                    other => other,
                };
            }
            tracing::debug!(path, attempt, "elasticsearch write retried");
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }

    /// A `_bulk` request, visible to searches when it returns, retried as writes are.
    async fn bulk(&self, body: String) -> Result<(), SearchError> {
        let path = "/_bulk?refresh=wait_for";
        let (status, answer) = self
            .send_retrying(Method::POST, path, Some((body, "application/x-ndjson")))
            .await?;
        if !status.is_success() {
            return Err(Self::failure(path, status, &answer));
        }
        bulk_outcome(&answer)
    }

    /// The concrete index the alias points at now.
    async fn live_index(&self, alias: &str) -> Result<String, SearchError> {
        let path = format!("/_alias/{alias}");
        let (status, answer) = self.send_once(Method::GET, &path, None).await?;
        if !status.is_success() {
            return Err(Self::failure(&path, status, &answer));
        }
        answer
            .as_object()
            .and_then(|indices| indices.keys().next().cloned())
            .ok_or_else(|| SearchError::Internal(format!("{path} names no index")))
    }

    /// The copy a rebuild of `index` is filling, if one is under way.
    fn copy_of(&self, index: IndexName) -> Option<String> {
        self.rebuilding
            .lock()
            .expect("rebuilding")
            .get(&index)
            .map(|(_, next)| next.clone())
    }

    async fn delete_index(&self, name: &str) -> Result<(), SearchError> {
        let path = format!("/{name}");
        let (status, answer) = self.send_retrying(Method::DELETE, &path, None).await?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            return Err(Self::failure(&path, status, &answer));
        }
        Ok(())
    }

    fn failure(path: &str, status: StatusCode, answer: &Value) -> SearchError {
        let reason = answer["error"]["reason"]
            .as_str()
            .or_else(|| answer["error"]["type"].as_str())
            .unwrap_or_default()
            .to_string();
        // A missing index (between a rebuild's drop and its new index) is worth a retry too.
        if retryable(Some(status)) || answer["error"]["type"] == json!("index_not_found_exception")
        {
            SearchError::Unavailable(format!("{path} answered {status}: {reason}"))
        } else {
            SearchError::Internal(format!("{path} answered {status}: {reason}"))
        }
    }
}

#[async_trait]
impl SearchIndex for ElasticsearchIndex {
    async fn upsert(&self, index: IndexName, docs: Vec<IndexDoc>) -> Result<(), SearchError> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut body = bulk_upsert_body(&alias_of(&self.prefix, index), &docs);
        if let Some(copy) = self.copy_of(index) {
            body.push_str(&bulk_upsert_body(&copy, &docs));
        }
        self.bulk(body).await
    }

    async fn delete(&self, index: IndexName, ids: Vec<String>) -> Result<(), SearchError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut body = bulk_delete_body(&alias_of(&self.prefix, index), &ids);
        if let Some(copy) = self.copy_of(index) {
            body.push_str(&bulk_delete_body(&copy, &ids));
        }
        self.bulk(body).await
    }

    async fn get(&self, index: IndexName, id: &str) -> Result<Option<IndexDoc>, SearchError> {
        let mut url = reqwest::Url::parse("http://x/").expect("static url");
        url.path_segments_mut()
            .expect("a base url")
            .push(&alias_of(&self.prefix, index))
            .push("_doc")
            .push(id);
        let path = url.path().to_string();
        let (status, answer) = self.send_once(Method::GET, &path, None).await?;
        if status == StatusCode::NOT_FOUND || answer["found"] == json!(false) {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Self::failure(&path, status, &answer));
        }
        Ok(Some(IndexDoc {
            id: id.to_string(),
            version: answer["_version"].as_u64().unwrap_or(0),
            source: answer["_source"].as_object().cloned().unwrap_or_default(),
        }))
    }

    async fn search(
        &self,
        index: IndexName,
        query: &SearchQuery,
    ) -> Result<SearchResult, SearchError> {
        let path = format!("/{}/_search", alias_of(&self.prefix, index));
        let body = search_body(query).to_string();
        let (status, answer) = self
            .send_once(Method::POST, &path, Some((body, "application/json")))
            .await?;
        if !status.is_success() {
            return Err(Self::failure(&path, status, &answer));
        }
        search_result(query, &answer)
    }

    /// Drops the concrete index and makes it again. (A `_delete_by_query` would leave each
    /// document's deletion marker at its version for `index.gc_deletes`, and the rebuild's
    /// writes at the same versions would then be refused as older.)
    async fn clear(&self, index: IndexName) -> Result<(), SearchError> {
        let live = match self.live_index(&alias_of(&self.prefix, index)).await {
            Ok(live) => live,
            Err(SearchError::Unavailable(what)) => return Err(SearchError::Unavailable(what)),
            Err(SearchError::Internal(_)) => concrete_index_of(&self.prefix, index),
        };
        self.delete_index(&live).await?;
        self.ensure_index(index).await
    }

    /// Makes the next generation of the index, empty and without the alias, and writes every
    /// document to it as well as to the live one until the rebuild finishes. A copy left by an
    /// abandoned rebuild is dropped first.
    async fn begin_rebuild(&self, index: IndexName) -> Result<(), SearchError> {
        let alias = alias_of(&self.prefix, index);
        let live = self.live_index(&alias).await?;
        let next = next_generation(&alias, &live);
        self.delete_index(&next).await?;
        // Empty: the template gives it Sunbird's settings and mappings, and no alias yet.
        let path = format!("/{next}");
        let (status, answer) = self
            .send_retrying(
                Method::PUT,
                &path,
                Some(("{}".to_string(), "application/json")),
            )
            .await?;
        if !status.is_success() {
            return Err(Self::failure(&path, status, &answer));
        }
        tracing::info!(alias, live, next, "rebuilding an index beside the live one");
        self.rebuilding
            .lock()
            .expect("rebuilding")
            .insert(index, (live, next));
        Ok(())
    }

    /// Points the alias at the new generation in one `_aliases` request (searches never see
    /// the alias missing or on both), then drops the old generation.
    async fn finish_rebuild(&self, index: IndexName) -> Result<(), SearchError> {
        let Some((live, next)) = self.rebuilding.lock().expect("rebuilding").remove(&index) else {
            return Ok(());
        };
        let alias = alias_of(&self.prefix, index);
        let body = alias_swap_body(&alias, &live, &next).to_string();
        let (status, answer) = self
            .send_retrying(Method::POST, "/_aliases", Some((body, "application/json")))
            .await?;
        if !status.is_success() {
            return Err(Self::failure("/_aliases", status, &answer));
        }
        tracing::info!(alias, live, next, "the rebuilt index is live");
        self.delete_index(&live).await
    }

    async fn healthy(&self) -> bool {
        match self.send_once(Method::GET, "/_cluster/health", None).await {
            Ok((status, answer)) => status.is_success() && answer["status"] != json!("red"),
            Err(_) => false,
        }
    }

    fn shared_across_instances(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::search::FacetRequest;

    fn query() -> SearchQuery {
        SearchQuery::match_all(20)
    }

    fn with_filter(filter: Filter) -> Value {
        let mut q = query();
        q.filters.push(filter);
        search_body(&q)
    }

    /// The body of a search with only `clause` as its filter.
    fn filtered(clause: Value) -> Value {
        json!({
            "query": {"bool": {"filter": [clause]}},
            "from": 0, "size": 20, "track_total_hits": true
        })
    }

    #[test]
    fn an_empty_query_matches_all_with_paging() {
        let mut q = query();
        q.offset = 40;
        q.limit = 10;
        assert_eq!(
            search_body(&q),
            json!({"query": {"match_all": {}}, "from": 40, "size": 10, "track_total_hits": true})
        );
    }

    #[test]
    fn pages_past_the_result_window_are_shortened_to_it() {
        let mut q = query();
        q.offset = 9_990;
        q.limit = 1_000;
        let body = search_body(&q);
        assert_eq!(
            (body["from"].clone(), body["size"].clone()),
            (json!(9_990), json!(10))
        );
        q.offset = 12_000;
        let body = search_body(&q);
        assert_eq!(
            (body["from"].clone(), body["size"].clone()),
            (json!(10_000), json!(0))
        );
    }

    #[tokio::test]
    async fn clearing_drops_and_recreates_the_index() {
        let cluster = fake_cluster().await;
        let index = cluster.opened().await;
        cluster.answer(
            200,
            json!({"user_alias_v3": {"aliases": {"user_alias": {}}}}),
        );
        cluster.answer(200, json!({"acknowledged": true}));
        cluster.answer(404, json!({}));
        cluster.answer(200, json!({"acknowledged": true}));
        index.clear(IndexName::User).await.expect("cleared");
        let calls = calls_of(&cluster.seen());
        assert_eq!(
            calls,
            [
                ("GET", "/_alias/user_alias"),
                ("DELETE", "/user_alias_v3"),
                ("HEAD", "/_alias/user_alias"),
                ("PUT", "/user_alias_v1"),
            ]
            .map(|(m, p)| (m.to_string(), p.to_string()))
        );
    }

    #[tokio::test]
    async fn a_rebuild_fills_the_next_generation_and_swaps_the_alias_in_one_request() {
        let cluster = fake_cluster().await;
        let index = cluster.opened().await;
        cluster.answer(
            200,
            json!({"user_alias_v1": {"aliases": {"user_alias": {}}}}),
        );
        cluster.answer(404, json!({"error": {"type": "index_not_found_exception"}}));
        cluster.answer(200, json!({"acknowledged": true}));
        index.begin_rebuild(IndexName::User).await.expect("begun");
        let doc = IndexDoc {
            id: "u1".into(),
            version: 4,
            source: json!({"id": "u1"}).as_object().cloned().expect("object"),
        };
        cluster.answer(200, json!({"errors": false, "items": []}));
        index
            .upsert(IndexName::User, vec![doc.clone()])
            .await
            .expect("written");
        cluster.answer(200, json!({"acknowledged": true}));
        cluster.answer(200, json!({"acknowledged": true}));
        index
            .finish_rebuild(IndexName::User)
            .await
            .expect("swapped");
        cluster.answer(200, json!({"errors": false, "items": []}));
        index
            .upsert(IndexName::User, vec![doc.clone()])
            .await
            .expect("written");
        let seen = cluster.seen();
        let calls = calls_of(&seen);
        assert_eq!(
            calls,
            [
                ("GET", "/_alias/user_alias"),
                ("DELETE", "/user_alias_v2"),
                ("PUT", "/user_alias_v2"),
                ("POST", "/_bulk?refresh=wait_for"),
                ("POST", "/_aliases"),
                ("DELETE", "/user_alias_v1"),
                ("POST", "/_bulk?refresh=wait_for"),
            ]
            .map(|(m, p)| (m.to_string(), p.to_string()))
        );
        assert_eq!(
            seen[2].body, "{}",
            "the copy is made from the template, without the alias until the swap"
        );
        assert_eq!(
            seen[3].body,
            format!(
                "{}{}",
                bulk_upsert_body("user_alias", std::slice::from_ref(&doc)),
                bulk_upsert_body("user_alias_v2", std::slice::from_ref(&doc))
            ),
            "while it rebuilds, writes reach the live index and the copy"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&seen[4].body).expect("json"),
            json!({"actions": [
                {"remove": {"index": "user_alias_v1", "alias": "user_alias"}},
                {"add": {"index": "user_alias_v2", "alias": "user_alias", "is_write_index": true}}
            ]})
        );
        assert_eq!(
            seen[6].body,
            bulk_upsert_body("user_alias", std::slice::from_ref(&doc)),
            "after the swap, writes go to the alias only"
        );
        assert_eq!(
            next_generation("user_alias", "user_alias_v9"),
            "user_alias_v10"
        );
        assert_eq!(
            next_generation("user_alias", "something_else"),
            "user_alias_v2"
        );
    }

    #[test]
    fn exact_filters_go_to_raw_with_strings_lower_cased() {
        let term = |value| Filter::Term {
            field: "firstName".into(),
            value,
        };
        assert_eq!(
            with_filter(term(Scalar::Str("Asha".into()))),
            filtered(json!({"term": {"firstName.raw": "asha"}}))
        );
        assert_eq!(
            with_filter(Filter::Term {
                field: "status".into(),
                value: Scalar::Int(1)
            }),
            filtered(json!({"term": {"status.raw": 1}}))
        );
        assert_eq!(
            with_filter(Filter::Term {
                field: "isDeleted".into(),
                value: Scalar::Bool(false)
            }),
            filtered(json!({"term": {"isDeleted.raw": false}}))
        );
        assert_eq!(
            with_filter(Filter::Term {
                field: "score".into(),
                value: Scalar::Float(2.5)
            }),
            filtered(json!({"term": {"score.raw": 2.5}}))
        );
        assert_eq!(
            with_filter(Filter::Terms {
                field: "organisations.organisationId".into(),
                values: vec![Scalar::Str("O1".into()), Scalar::Str("o2".into())]
            }),
            filtered(json!({"terms": {"organisations.organisationId.raw": ["o1", "o2"]}}))
        );
    }

    #[test]
    fn ranges_prefixes_and_suffixes() {
        assert_eq!(
            with_filter(Filter::Range {
                field: "createdDate".into(),
                gte: Some(Scalar::Str("2026-01-01".into())),
                gt: None,
                lte: None,
                lt: Some(Scalar::Str("2026-02-01".into())),
            }),
            filtered(
                json!({"range": {"createdDate.raw": {"gte": "2026-01-01", "lt": "2026-02-01"}}})
            )
        );
        assert_eq!(
            with_filter(Filter::Range {
                field: "organisationType".into(),
                gte: None,
                gt: Some(Scalar::Int(2)),
                lte: Some(Scalar::Int(5)),
                lt: None,
            }),
            filtered(json!({"range": {"organisationType.raw": {"gt": 2, "lte": 5}}}))
        );
        assert_eq!(
            with_filter(Filter::Prefix {
                field: "firstName".into(),
                prefix: "AS".into()
            }),
            filtered(json!({"prefix": {"firstName.raw": "as"}}))
        );
        assert_eq!(
            with_filter(Filter::Suffix {
                field: "orgName".into(),
                suffix: "School*?".into()
            }),
            filtered(json!({"wildcard": {"orgName.raw": {"value": "*school\\*\\?"}}}))
        );
    }

    #[test]
    fn or_exists_and_not_exists() {
        assert_eq!(
            with_filter(Filter::Or(vec![
                Filter::Term {
                    field: "email".into(),
                    value: Scalar::Str("T1".into())
                },
                Filter::Term {
                    field: "phone".into(),
                    value: Scalar::Str("t2".into())
                },
            ])),
            filtered(json!({"bool": {"should": [
                {"term": {"email.raw": "t1"}},
                {"term": {"phone.raw": "t2"}}
            ], "minimum_should_match": 1}}))
        );
        assert_eq!(
            with_filter(Filter::Exists("managedBy".into())),
            filtered(json!({"exists": {"field": "managedBy"}}))
        );
        assert_eq!(
            with_filter(Filter::NotExists("managedBy".into())),
            filtered(json!({"bool": {"must_not": [{"exists": {"field": "managedBy"}}]}}))
        );
    }

    #[test]
    fn free_text_and_fuzzy_are_scored_beside_the_filters() {
        let mut q = query();
        q.query = Some("asha rao".into());
        q.filters.push(Filter::Term {
            field: "status".into(),
            value: Scalar::Int(1),
        });
        assert_eq!(
            search_body(&q)["query"],
            json!({"bool": {
                "filter": [{"term": {"status.raw": 1}}],
                "must": [{"simple_query_string": {"query": "asha rao", "default_operator": "or", "lenient": true}}]
            }})
        );
        q.query_fields = vec!["firstName".into(), "lastName".into()];
        q.fuzzy = Some(("firstName".into(), "asah".into()));
        assert_eq!(
            search_body(&q)["query"]["bool"]["must"],
            json!([
                {"simple_query_string": {"query": "asha rao", "default_operator": "or", "lenient": true,
                    "fields": ["firstName", "lastName"]}},
                {"match": {"firstName": {"query": "asah", "fuzziness": "AUTO"}}}
            ])
        );
    }

    #[test]
    fn fields_sort_and_facets() {
        let mut q = query();
        q.fields = vec!["id".into(), "firstName".into()];
        q.exclude_fields = vec!["loginId".into()];
        q.sort_by = vec![
            ("createdDate".into(), SortOrder::Desc),
            ("firstName".into(), SortOrder::Asc),
        ];
        q.facets = vec![
            FacetRequest {
                field: "channel".into(),
                kind: FacetKind::Terms,
            },
            FacetRequest {
                field: "createdDate".into(),
                kind: FacetKind::DateHistogram,
            },
        ];
        assert_eq!(
            search_body(&q),
            json!({
                "query": {"match_all": {}},
                "from": 0, "size": 20, "track_total_hits": true,
                "_source": {"includes": ["id", "firstName"], "excludes": ["loginId"]},
                "sort": [
                    {"createdDate.raw": {"order": "desc", "unmapped_type": "keyword"}},
                    {"firstName.raw": {"order": "asc", "unmapped_type": "keyword"}}
                ],
                "aggs": {
                    "channel": {"terms": {"field": "channel.raw", "size": FACET_SIZE}},
                    "createdDate": {"date_histogram": {"field": "createdDate",
                        "calendar_interval": "1d", "format": "yyyy-MM-dd", "min_doc_count": 1}}
                }
            })
        );
    }

    #[test]
    fn answers_become_sunbird_results() {
        let mut q = query();
        q.facets = vec![
            FacetRequest {
                field: "channel".into(),
                kind: FacetKind::Terms,
            },
            FacetRequest {
                field: "status".into(),
                kind: FacetKind::Terms,
            },
        ];
        let answer = json!({
            "hits": {"total": {"value": 2, "relation": "eq"}, "hits": [
                {"_id": "a", "_source": {"id": "a"}},
                {"_id": "b", "_source": {"id": "b"}}
            ]},
            "aggregations": {
                "channel": {"buckets": [{"key": "sunbird", "doc_count": 2}]},
                "status": {"buckets": [{"key": 1, "doc_count": 2}]}
            }
        });
        let result = search_result(&q, &answer).expect("parsed");
        assert_eq!(result.count, 2);
        assert_eq!(
            result.content,
            vec![
                json!({"id": "a"}).as_object().cloned().expect("object"),
                json!({"id": "b"}).as_object().cloned().expect("object")
            ]
        );
        assert_eq!(
            result.facets,
            vec![
                Facet {
                    name: "channel".into(),
                    values: vec![FacetValue {
                        name: "sunbird".into(),
                        count: 2
                    }]
                },
                Facet {
                    name: "status".into(),
                    values: vec![FacetValue {
                        name: "1".into(),
                        count: 2
                    }]
                }
            ]
        );
        assert!(matches!(
            search_result(&q, &json!({})),
            Err(SearchError::Internal(_))
        ));
    }

    #[test]
    fn bulk_bodies_carry_external_versions() {
        let docs = vec![IndexDoc {
            id: "u1".into(),
            version: 7,
            source: json!({"id": "u1", "firstName": "Asha"})
                .as_object()
                .cloned()
                .expect("object"),
        }];
        assert_eq!(
            bulk_upsert_body("user_alias", &docs),
            "{\"index\":{\"_index\":\"user_alias\",\"_id\":\"u1\",\"version\":7,\"version_type\":\"external_gte\"}}\n\
             {\"id\":\"u1\",\"firstName\":\"Asha\"}\n"
        );
        assert_eq!(
            bulk_delete_body("org_alias", &["o1".into(), "o2".into()]),
            "{\"delete\":{\"_index\":\"org_alias\",\"_id\":\"o1\"}}\n\
             {\"delete\":{\"_index\":\"org_alias\",\"_id\":\"o2\"}}\n"
        );
    }

    #[test]
    fn bulk_answers_skip_older_versions_and_classify_failures() {
        let item = |status: u64, kind: &str| json!({"index": {"status": status, "error": {"type": kind, "reason": "r"}}});
        let answer = |items: Vec<Value>| json!({"errors": true, "items": items});
        assert!(bulk_outcome(&json!({"errors": false, "items": []})).is_ok());
        assert!(
            bulk_outcome(&answer(vec![
                item(201, ""),
                item(409, "version_conflict_engine_exception")
            ]))
            .is_ok(),
            "a newer document already there is the skip"
        );
        assert!(bulk_outcome(&answer(vec![json!({"delete": {"status": 404}})])).is_ok());
        assert!(matches!(
            bulk_outcome(&answer(vec![item(429, "es_rejected_execution_exception")])),
            Err(SearchError::Unavailable(_))
        ));
        assert!(matches!(
            bulk_outcome(&answer(vec![item(400, "mapper_parsing_exception")])),
            Err(SearchError::Internal(_))
        ));
    }

    #[test]
    fn indices_keep_sunbirds_aliases_analyzers_and_raw_fields() {
        assert_eq!(alias_of("", IndexName::User), "user_alias");
        assert_eq!(alias_of("dev_", IndexName::Organisation), "dev_org_alias");
        assert_eq!(concrete_index_of("", IndexName::Location), "location_v1");
        let body = index_body("", IndexName::User);
        assert_eq!(
            body["aliases"],
            json!({"user_alias": {"is_write_index": true}})
        );
        let analysis = &body["settings"]["analysis"];
        assert_eq!(
            analysis["normalizer"]["keylower"],
            json!({"type": "custom", "filter": ["lowercase"]})
        );
        assert_eq!(
            analysis["filter"]["mynGram"],
            json!({"type": "ngram", "min_gram": 3, "max_gram": 10})
        );
        assert_eq!(body["settings"]["index"]["max_ngram_diff"], 7);
        assert_eq!(
            index_body("", IndexName::Location)["settings"]["analysis"]["filter"]["mynGram"],
            json!({"type": "ngram", "min_gram": 1, "max_gram": 20})
        );
        let templates = body["mappings"]["dynamic_templates"]
            .as_array()
            .expect("templates");
        let names: Vec<&str> = templates
            .iter()
            .filter_map(|t| {
                t.as_object()
                    .and_then(|o| o.keys().next())
                    .map(String::as_str)
            })
            .collect();
        assert_eq!(names, ["dates", "strings", "longs", "doubles", "booleans"]);
        for template in templates {
            let (_, template) = template
                .as_object()
                .and_then(|o| o.iter().next())
                .expect("one");
            assert!(
                template["mapping"]["fields"]["raw"].is_object(),
                "every field has .raw: {template}"
            );
        }
        assert_eq!(
            templates[1]["strings"]["mapping"]["fields"]["raw"],
            json!({"type": "keyword", "normalizer": "keylower", "ignore_above": 8191})
        );
    }

    /// One request as the fake cluster saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        content_type: String,
        authorization: String,
        body: String,
    }

    /// A fake cluster on a local port: records every request and answers from a script (then
    /// 200 `{}`).
    struct FakeCluster {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        script: Arc<Mutex<VecDeque<(u16, Value)>>>,
    }

    async fn fake_cluster() -> FakeCluster {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<(u16, Value)>>> = Arc::default();
        let (seen_by_server, script_of_server) = (Arc::clone(&seen), Arc::clone(&script));
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (seen, script) = (Arc::clone(&seen_by_server), Arc::clone(&script_of_server));
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
                let header = |name: &str| {
                    parts
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                seen.lock().expect("lock").push(Seen {
                    method: parts.method.to_string(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                    content_type: header("content-type"),
                    authorization: header("authorization"),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let (status, answer) = script
                    .lock()
                    .expect("lock")
                    .pop_front()
                    .unwrap_or((200, json!({})));
                (
                    StatusCode::from_u16(status).expect("status"),
                    axum::Json(answer),
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeCluster {
            url: format!("http://elastic:S3cretPass@{address}"),
            seen,
            script,
        }
    }

    fn options(url: &str) -> ElasticsearchOptions {
        ElasticsearchOptions {
            url: url.to_string(),
            index_prefix: String::new(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(100),
            write_attempts: 3,
            retry_pause: Duration::from_millis(1),
        }
    }

    /// (method, path) of each request, in order.
    fn calls_of(seen: &[Seen]) -> Vec<(String, String)> {
        seen.iter()
            .map(|s| (s.method.clone(), s.path.clone()))
            .collect()
    }

    impl FakeCluster {
        fn answer(&self, status: u16, body: Value) {
            self.script.lock().expect("lock").push_back((status, body));
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().expect("lock").clone()
        }

        async fn opened(&self) -> ElasticsearchIndex {
            // The templates are put, and the three aliases exist already.
            for _ in IndexName::ALL {
                self.answer(200, json!({"acknowledged": true}));
                self.answer(200, json!({}));
            }
            let index = ElasticsearchIndex::open(&options(&self.url))
                .await
                .expect("opens");
            self.seen.lock().expect("lock").clear();
            index
        }
    }

    #[tokio::test]
    async fn opening_creates_missing_indices_with_their_aliases_once() {
        let cluster = fake_cluster().await;
        // user: missing, created; org: exists; location: missing, another instance won. Each
        // index's template is put first.
        cluster.answer(200, json!({"acknowledged": true}));
        cluster.answer(404, json!({}));
        cluster.answer(200, json!({"acknowledged": true}));
        cluster.answer(200, json!({"acknowledged": true}));
        cluster.answer(200, json!({}));
        cluster.answer(200, json!({"acknowledged": true}));
        cluster.answer(404, json!({}));
        cluster.answer(
            400,
            json!({"error": {"type": "resource_already_exists_exception"}}),
        );
        // usernotes: exists.
        cluster.answer(200, json!({"acknowledged": true}));
        cluster.answer(200, json!({}));
        ElasticsearchIndex::open(&options(&cluster.url))
            .await
            .expect("opens");
        let seen = cluster.seen();
        let calls = calls_of(&seen);
        assert_eq!(
            calls,
            [
                ("PUT", "/_index_template/user_alias"),
                ("HEAD", "/_alias/user_alias"),
                ("PUT", "/user_alias_v1"),
                ("PUT", "/_index_template/org_alias"),
                ("HEAD", "/_alias/org_alias"),
                ("PUT", "/_index_template/location"),
                ("HEAD", "/_alias/location"),
                ("PUT", "/location_v1"),
                ("PUT", "/_index_template/usernotes"),
                ("HEAD", "/_alias/usernotes"),
            ]
            .map(|(m, p)| (m.to_string(), p.to_string()))
        );
        let template: Value = serde_json::from_str(&seen[0].body).expect("json");
        let full = index_body("", IndexName::User);
        assert_eq!(
            template,
            json!({
                "index_patterns": ["user_alias_v*"],
                "priority": 200,
                "template": {"settings": full["settings"], "mappings": full["mappings"]}
            }),
            "every generation gets Sunbird's settings and mappings from the template"
        );
        let created: Value = serde_json::from_str(&seen[2].body).expect("json");
        assert_eq!(
            created,
            json!({"aliases": {"user_alias": {"is_write_index": true}}}),
            "the first generation carries the alias"
        );
        assert_eq!(seen[2].content_type, "application/json");
        // The URL's credentials go as basic auth, on every request.
        let expected = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "elastic:S3cretPass"
            )
        );
        assert!(seen.iter().all(|s| s.authorization == expected));
    }

    #[tokio::test]
    async fn writes_are_bulk_requests_retried_on_throttling_and_server_errors() {
        let cluster = fake_cluster().await;
        let index = cluster.opened().await;
        let doc = IndexDoc {
            id: "u1".into(),
            version: 3,
            source: json!({"id": "u1"}).as_object().cloned().expect("object"),
        };
        cluster.answer(503, json!({}));
        cluster.answer(429, json!({}));
        cluster.answer(200, json!({"errors": false, "items": []}));
        index
            .upsert(IndexName::User, vec![doc.clone()])
            .await
            .expect("the third attempt lands");
        let seen = cluster.seen();
        assert_eq!(seen.len(), 3, "two retries");
        for attempt in &seen {
            assert_eq!(
                (attempt.method.as_str(), attempt.path.as_str()),
                ("POST", "/_bulk?refresh=wait_for")
            );
            assert_eq!(attempt.content_type, "application/x-ndjson");
            assert_eq!(
                attempt.body,
                bulk_upsert_body("user_alias", std::slice::from_ref(&doc))
            );
        }

        // Past the attempts: unavailable, so the indexer keeps the events and tries later.
        cluster.seen.lock().expect("lock").clear();
        for _ in 0..3 {
            cluster.answer(503, json!({}));
        }
        let outcome = index.upsert(IndexName::User, vec![doc.clone()]).await;
        assert!(
            matches!(outcome, Err(SearchError::Unavailable(_))),
            "{outcome:?}"
        );
        assert_eq!(cluster.seen().len(), 3);

        // A refusal of the request itself is not retried.
        cluster.seen.lock().expect("lock").clear();
        cluster.answer(
            400,
            json!({"error": {"type": "parse_exception", "reason": "bad"}}),
        );
        let outcome = index.delete(IndexName::User, vec!["u1".into()]).await;
        assert!(
            matches!(outcome, Err(SearchError::Internal(_))),
            "{outcome:?}"
        );
        let seen = cluster.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body, bulk_delete_body("user_alias", &["u1".into()]));
    }

    #[tokio::test]
    async fn searches_and_reads_send_what_the_golden_tests_pin() {
        let cluster = fake_cluster().await;
        let index = cluster.opened().await;
        let mut q = query();
        q.filters.push(Filter::Term {
            field: "channel".into(),
            value: Scalar::Str("Sunbird".into()),
        });
        cluster.answer(
            200,
            json!({"hits": {"total": {"value": 1}, "hits": [{"_source": {"id": "o1"}}]}}),
        );
        let result = index
            .search(IndexName::Organisation, &q)
            .await
            .expect("search");
        assert_eq!(result.count, 1);
        cluster.answer(
            200,
            json!({"found": true, "_version": 4, "_source": {"id": "a/b"}}),
        );
        let doc = index
            .get(IndexName::User, "a/b")
            .await
            .expect("get")
            .expect("found");
        assert_eq!(doc.version, 4);
        cluster.answer(404, json!({"found": false}));
        assert_eq!(index.get(IndexName::User, "gone").await.expect("get"), None);
        let seen = cluster.seen();
        assert_eq!(
            (seen[0].method.as_str(), seen[0].path.as_str()),
            ("POST", "/org_alias/_search")
        );
        assert_eq!(
            serde_json::from_str::<Value>(&seen[0].body).expect("json"),
            search_body(&q)
        );
        assert_eq!(seen[1].path, "/user_alias/_doc/a%2Fb", "ids are escaped");
        assert_eq!(seen[2].path, "/user_alias/_doc/gone");
    }

    /// The whole search contract on a real cluster, when `USERORG_TEST_ELASTICSEARCH` names one
    /// (under a fresh index prefix, dropped afterwards).
    #[tokio::test]
    async fn elasticsearch_passes_the_conformance_suite() {
        let Some(url) = crate::test_tiers::elasticsearch() else {
            return;
        };
        let prefix = format!("conformance_{}_", uuid::Uuid::new_v4().simple());
        let index = ElasticsearchIndex::open(&ElasticsearchOptions {
            index_prefix: prefix.clone(),
            connect_timeout: Duration::from_secs(2),
            ..options(&url)
        })
        .await
        .expect("the cluster of USERORG_TEST_ELASTICSEARCH answers");
        crate::search::conformance::run_search_conformance(Arc::new(index)).await;
        let cleanup = ElasticsearchIndex::open(&ElasticsearchOptions {
            index_prefix: prefix.clone(),
            ..options(&url)
        })
        .await
        .expect("reopen");
        for name in IndexName::ALL {
            let path = format!("/{}", concrete_index_of(&prefix, name));
            let _ = cleanup.send_once(Method::DELETE, &path, None).await;
        }
    }

    #[tokio::test]
    async fn an_unreachable_cluster_fails_a_search_fast_and_names_no_password() {
        // A port nothing listens on: refused at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let url = format!("http://elastic:S3cretPass@{address}");
        let opened = ElasticsearchIndex::open(&options(&url)).await;
        let Err(error) = opened else {
            panic!("nothing listens there");
        };
        assert!(matches!(error, SearchError::Unavailable(_)), "{error:?}");
        assert!(!error.to_string().contains("S3cretPass"), "{error}");

        let cluster = fake_cluster().await;
        let index = cluster.opened().await;
        let moved = ElasticsearchIndex {
            base: format!("http://{address}"),
            ..index
        };
        let started = std::time::Instant::now();
        let outcome = moved.search(IndexName::User, &query()).await;
        assert!(
            matches!(outcome, Err(SearchError::Unavailable(_))),
            "{outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no retry on the search path: {:?}",
            started.elapsed()
        );
        assert!(!moved.healthy().await);
    }
}
