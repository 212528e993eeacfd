//! One search pipeline for users, organisations and locations: the Sunbird request body is
//! parsed into a typed query (limits capped), the `objectType` filter Sunbird's controllers
//! inject is dropped, the caller rewrites filters (PII fields to blind-index tokens, `isSchool`,
//! ...) and adjusts the query, the index is searched, and every hit is presented by the caller.

use serde_json::{Map, Value, json};

use crate::domain::DomainResult;
use crate::search::dsl::{SearchLimits, parse_search_request};
use crate::search::{Facet, Filter, IndexName, SearchIndex, SearchQuery};
use crate::services::json::Body;

/// Most values one facet lists: without a cap, one facet request over an unfiltered search
/// lists every distinct value of a field (every id, every name).
pub const MAX_FACET_VALUES: usize = 100;

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
    let mut facets = found.facets;
    for facet in &mut facets {
        facet.values.truncate(MAX_FACET_VALUES);
    }
    Ok(Page {
        count: found.count,
        content,
        facets: wants_facets.then_some(facets),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::search::IndexDoc;
    use crate::search::tantivy_index::TantivyIndex;

    #[tokio::test]
    async fn a_facet_lists_at_most_the_capped_number_of_values() {
        let index = TantivyIndex::in_memory().expect("index");
        let docs = (0..MAX_FACET_VALUES + 20)
            .map(|n| IndexDoc {
                id: format!("u{n}"),
                version: 1,
                source: json!({"id": format!("u{n}"), "firstName": format!("name{n}")})
                    .as_object()
                    .cloned()
                    .expect("object"),
            })
            .collect();
        index.upsert(IndexName::User, docs).await.expect("upsert");
        let body = json!({"filters": {}, "facets": [{"firstName": null}], "limit": 0});
        let page = run(
            &index,
            IndexName::User,
            body.as_object().expect("body"),
            &SearchLimits::default(),
            Steps {
                rewrite: Some,
                adjust: |_| {},
                present: |_, hit| Value::Object(hit),
            },
        )
        .await
        .expect("search");
        assert_eq!(page.count as usize, MAX_FACET_VALUES + 20);
        let facets = page.facets.expect("facets asked for");
        assert_eq!(facets[0].values.len(), MAX_FACET_VALUES);
    }
}
