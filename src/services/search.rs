//! One search pipeline for users, organisations and locations: the Sunbird request body is
//! parsed into a typed query (limits capped), the `objectType` filter Sunbird's controllers
//! inject is dropped, the caller rewrites filters (PII fields to blind-index tokens, `isSchool`,
//! ...) and adjusts the query, the index is searched, and every hit is presented by the caller.

use serde_json::{Map, Value, json};

use crate::domain::DomainResult;
use crate::search::dsl::{SearchLimits, parse_search_request};
use crate::search::{Facet, Filter, IndexName, SearchIndex, SearchQuery};
use crate::services::json::Body;

/// One page of presented hits.
pub struct Page {
    pub count: u64,
    pub content: Vec<Value>,
    /// Present when the request asked for facets.
    pub facets: Option<Vec<Facet>>,
}

impl Page {
    /// `{count, content, facets?}`, the shape of user and organisation search.
    pub fn into_result(self) -> Map<String, Value> {
        let mut result = Map::new();
        result.insert("count".into(), json!(self.count));
        result.insert("content".into(), Value::Array(self.content));
        if let Some(facets) = self.facets {
            result.insert("facets".into(), json!(facets));
        }
        result
    }
}

/// How one search differs from the others.
pub struct Steps<R, A, P>
where
    R: FnMut(Filter) -> Option<Filter>,
    A: FnOnce(&mut SearchQuery),
    P: FnMut(&SearchQuery, Map<String, Value>) -> Value,
{
    /// Rewrites one top-level filter; `None` drops it.
    pub rewrite: R,
    /// Last changes to the query (excluded fields, a default sort).
    pub adjust: A,
    /// Turns a stored hit into what the client sees.
    pub present: P,
}

pub async fn run<R, A, P>(
    index: &dyn SearchIndex,
    name: IndexName,
    body: &Body,
    limits: &SearchLimits,
    steps: Steps<R, A, P>,
) -> DomainResult<Page>
where
    R: FnMut(Filter) -> Option<Filter>,
    A: FnOnce(&mut SearchQuery),
    P: FnMut(&SearchQuery, Map<String, Value>) -> Value,
{
    let Steps {
        rewrite,
        adjust,
        mut present,
    } = steps;
    let mut query = parse_search_request(body, limits)?;
    query.filters = std::mem::take(&mut query.filters)
        .into_iter()
        .filter(|f| !matches!(f, Filter::Term { field, .. } if field == "objectType"))
        .filter_map(rewrite)
        .collect();
    adjust(&mut query);
    let wants_facets = !query.facets.is_empty();
    let found = index.search(name, &query).await?;
    let content = found
        .content
        .into_iter()
        .map(|hit| present(&query, hit))
        .collect();
    Ok(Page {
        count: found.count,
        content,
        facets: wants_facets.then_some(found.facets),
    })
}
