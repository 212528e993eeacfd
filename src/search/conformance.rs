//! The behaviour every [`SearchIndex`] engine must have, as one async suite.
//!
//! Engines call [`run_search_conformance`] from their tests (the tantivy engine on disk and in
//! memory; Elasticsearch when `USERORG_TEST_ELASTICSEARCH` points at a cluster). The suite clears
//! the indices it uses, so it needs an index of its own. It panics on the first difference, with
//! a message naming the case.
//!
//! Only behaviour both engines can promise is checked here: ordering among equally relevant
//! free-text hits, for instance, is left open. What it asks of an Elasticsearch engine, beyond
//! the Sunbird translation rules:
//!
//! - writes are visible to the next search (`refresh=wait_for`);
//! - versions compare with `version_type=external_gte`: an equal version replaces;
//! - `clear` recreates the index, so versions of cleared documents are forgotten (a delete by
//!   query would keep version tombstones);
//! - numeric and boolean facet names are strings; date histograms use UTC days and leave out
//!   empty days (`min_doc_count: 1`); terms facets list every value (no default size of 10);
//! - free-text words of three characters or more also match word prefixes.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{
    Facet, FacetKind, FacetRequest, FacetValue, Filter, IndexDoc, IndexName, Scalar, SearchIndex,
    SearchQuery, SearchResult, SortOrder,
};

/// Runs every case against `index`. Panics on the first failure.
pub async fn run_search_conformance(shared: Arc<dyn SearchIndex>) {
    let index = shared.as_ref();
    assert!(index.healthy().await, "a fresh index reports healthy");
    load_users(index).await;
    match_all_and_count(index).await;
    term_filters(index).await;
    terms_filters(index).await;
    arrays_of_objects(index).await;
    numeric_ranges(index).await;
    string_ranges(index).await;
    prefix_and_suffix(index).await;
    or_filters(index).await;
    exists_and_not_exists(index).await;
    free_text(index).await;
    fuzzy(index).await;
    sorting(index).await;
    paging(index).await;
    facets(index).await;
    source_filtering(index).await;
    source_round_trip(index).await;
    versions(index).await;
    delete_and_clear(index).await;
    index_isolation(index).await;
    concurrent_writes(&shared).await;
    assert!(index.healthy().await, "healthy after the suite");
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(object) => object,
        other => panic!("conformance fixture must be an object, got {other}"),
    }
}

fn doc(id: &str, version: u64, source: Value) -> IndexDoc {
    IndexDoc {
        id: id.to_owned(),
        version,
        source: object(source),
    }
}

fn users() -> Vec<IndexDoc> {
    vec![
        doc(
            "u1",
            1,
            json!({
                "id": "u1", "firstName": "Asha", "lastName": "Rao",
                "email": "Asha.Rao@Example.org", "phone": "9876543210",
                "status": 1, "isDeleted": false, "rootOrgId": "ORG-A", "channel": "state-ka",
                "age": 30, "rating": 4.5, "createdDate": "2024-07-01 12:47:05:123+0530",
                "roles": [{ "role": "ORG_ADMIN" }, { "role": "PUBLIC" }],
                "organisations": [
                    { "organisationId": "ORG-A", "orgName": "Alpha School" },
                    { "organisationId": "ORG-B", "orgName": "Beta School" }
                ],
                "profile": { "board": "CBSE", "medium": "English" }
            }),
        ),
        doc(
            "u2",
            1,
            json!({
                "id": "u2", "firstName": "bala", "lastName": "Krishnan",
                "email": "bala.k@sample.com", "status": 1, "isDeleted": false,
                "rootOrgId": "ORG-A", "age": 45, "rating": 3.25,
                "createdDate": "2024-07-01 18:00:00:000+0530",
                "roles": [{ "role": "PUBLIC" }],
                "organisations": [{ "organisationId": "ORG-A", "orgName": "Alpha School" }],
                "managedBy": null
            }),
        ),
        doc(
            "u3",
            1,
            json!({
                "id": "u3", "firstName": "Chitra", "lastName": "Rao",
                "email": "chitra@example.org", "phone": "9123456789",
                "status": 0, "isDeleted": true, "rootOrgId": "ORG-B", "age": 22, "rating": 4.9,
                "createdDate": "2024-07-03 09:15:00:000+0530",
                "roles": [{ "role": "CONTENT_CREATOR" }],
                "organisations": [{ "organisationId": "ORG-B", "orgName": "Beta School" }]
            }),
        ),
        doc(
            "u4",
            1,
            json!({
                "id": "u4", "firstName": "Ashok", "lastName": "Kumar",
                "email": "ashok@sample.com", "status": 1, "isDeleted": false,
                "rootOrgId": "ORG-C", "createdDate": "2024-06-30 11:00:00:000+0530",
                "roles": [], "organisations": []
            }),
        ),
        doc(
            "u5",
            1,
            json!({
                "id": "u5", "firstName": "Devi", "lastName": "Menon",
                "email": "devi.menon@sample.com", "status": 2, "isDeleted": false,
                "rootOrgId": "ORG-A", "age": 38, "rating": 2.0,
                "createdDate": "2024-07-03 20:00:00:000+0530",
                "roles": [{ "role": "PUBLIC" }],
                "organisations": [{ "organisationId": "ORG-A", "orgName": "Alpha School" }]
            }),
        ),
    ]
}

async fn load_users(index: &dyn SearchIndex) {
    for name in IndexName::ALL {
        index.clear(name).await.expect("clear before the suite");
    }
    // One write per user: engines with segments (tantivy) then sort, page and count facets
    // across several of them, where per-segment dictionaries differ.
    for user in users() {
        index
            .upsert(IndexName::User, vec![user])
            .await
            .expect("upsert fixture user");
    }
}

async fn run(index: &dyn SearchIndex, query: &SearchQuery) -> SearchResult {
    index
        .search(IndexName::User, query)
        .await
        .unwrap_or_else(|err| panic!("search {query:?} failed: {err}"))
}

fn with_filters(filters: Vec<Filter>) -> SearchQuery {
    let mut query = SearchQuery::match_all(100);
    query.filters = filters;
    query
}

fn ids(result: &SearchResult) -> Vec<String> {
    result
        .content
        .iter()
        .map(|source| match source.get("id") {
            Some(Value::String(id)) => id.clone(),
            other => panic!("result without an id: {other:?}"),
        })
        .collect()
}

fn id_set(result: &SearchResult) -> BTreeSet<String> {
    ids(result).into_iter().collect()
}

fn set(expected: &[&str]) -> BTreeSet<String> {
    expected.iter().map(|id| id.to_string()).collect()
}

fn list(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|id| id.to_string()).collect()
}

/// Asserts that `filters` select exactly `expected`, and that `count` agrees.
async fn expect_ids(index: &dyn SearchIndex, case: &str, filters: Vec<Filter>, expected: &[&str]) {
    let result = run(index, &with_filters(filters)).await;
    assert_eq!(id_set(&result), set(expected), "{case}");
    assert_eq!(result.count, expected.len() as u64, "{case}: count");
}

fn term(field: &str, value: Scalar) -> Filter {
    Filter::Term {
        field: field.to_owned(),
        value,
    }
}

fn text(value: &str) -> Scalar {
    Scalar::Str(value.to_owned())
}

fn terms(field: &str, values: Vec<Scalar>) -> Filter {
    Filter::Terms {
        field: field.to_owned(),
        values,
    }
}

fn range(field: &str, bounds: [Option<Scalar>; 4]) -> Filter {
    let [gte, gt, lte, lt] = bounds;
    Filter::Range {
        field: field.to_owned(),
        gte,
        gt,
        lte,
        lt,
    }
}

async fn match_all_and_count(index: &dyn SearchIndex) {
    let all = run(index, &SearchQuery::match_all(100)).await;
    assert_eq!(all.count, 5, "match all: count");
    assert_eq!(
        id_set(&all),
        set(&["u1", "u2", "u3", "u4", "u5"]),
        "match all"
    );
    assert!(all.facets.is_empty(), "no facets unless asked");

    let page = run(index, &SearchQuery::match_all(2)).await;
    assert_eq!(page.content.len(), 2, "limit bounds the page");
    assert_eq!(page.count, 5, "count ignores the limit");

    let empty = run(index, &SearchQuery::match_all(0)).await;
    assert!(empty.content.is_empty(), "limit 0 returns no documents");
    assert_eq!(empty.count, 5, "limit 0 still counts");

    let other = index
        .search(IndexName::Organisation, &SearchQuery::match_all(10))
        .await
        .expect("search empty index");
    assert_eq!(other.count, 0, "an empty index finds nothing");
}

async fn term_filters(index: &dyn SearchIndex) {
    expect_ids(
        index,
        "term lower-case",
        vec![term("firstName", text("asha"))],
        &["u1"],
    )
    .await;
    expect_ids(
        index,
        "term upper-case",
        vec![term("firstName", text("ASHA"))],
        &["u1"],
    )
    .await;
    expect_ids(
        index,
        "term on lower-case data",
        vec![term("firstName", text("Bala"))],
        &["u2"],
    )
    .await;
    expect_ids(
        index,
        "term on mixed-case email",
        vec![term("email", text("asha.rao@example.org"))],
        &["u1"],
    )
    .await;
    expect_ids(
        index,
        "term is not a prefix",
        vec![term("firstName", text("ash"))],
        &[],
    )
    .await;
    expect_ids(
        index,
        "term is the whole value",
        vec![term("lastName", text("rao"))],
        &["u1", "u3"],
    )
    .await;
    expect_ids(
        index,
        "term int",
        vec![term("status", Scalar::Int(1))],
        &["u1", "u2", "u4"],
    )
    .await;
    expect_ids(
        index,
        "term string on int",
        vec![term("status", text("1"))],
        &["u1", "u2", "u4"],
    )
    .await;
    expect_ids(
        index,
        "term integral float on int",
        vec![term("status", Scalar::Float(1.0))],
        &["u1", "u2", "u4"],
    )
    .await;
    expect_ids(
        index,
        "term float",
        vec![term("rating", Scalar::Float(4.5))],
        &["u1"],
    )
    .await;
    expect_ids(
        index,
        "term bool",
        vec![term("isDeleted", Scalar::Bool(true))],
        &["u3"],
    )
    .await;
    expect_ids(
        index,
        "term string on bool",
        vec![term("isDeleted", text("false"))],
        &["u1", "u2", "u4", "u5"],
    )
    .await;
    expect_ids(
        index,
        "filters are and-ed",
        vec![
            term("rootOrgId", text("org-a")),
            term("status", Scalar::Int(1)),
        ],
        &["u1", "u2"],
    )
    .await;
    expect_ids(
        index,
        "term no match",
        vec![term("firstName", text("nobody"))],
        &[],
    )
    .await;
    expect_ids(
        index,
        "term unknown field",
        vec![term("nope", text("x"))],
        &[],
    )
    .await;
}

async fn terms_filters(index: &dyn SearchIndex) {
    expect_ids(
        index,
        "terms strings any case",
        vec![terms(
            "roles.role",
            vec![text("org_admin"), text("CONTENT_CREATOR")],
        )],
        &["u1", "u3"],
    )
    .await;
    expect_ids(
        index,
        "terms numbers",
        vec![terms("status", vec![Scalar::Int(0), Scalar::Int(2)])],
        &["u3", "u5"],
    )
    .await;
    expect_ids(
        index,
        "terms empty matches nothing",
        vec![terms("status", vec![])],
        &[],
    )
    .await;
}

async fn arrays_of_objects(index: &dyn SearchIndex) {
    expect_ids(
        index,
        "any array element matches",
        vec![term("organisations.organisationId", text("org-b"))],
        &["u1", "u3"],
    )
    .await;
    expect_ids(
        index,
        "nested text value in array",
        vec![term("organisations.orgName", text("alpha school"))],
        &["u1", "u2", "u5"],
    )
    .await;
    expect_ids(
        index,
        "nested object",
        vec![term("profile.board", text("cbse"))],
        &["u1"],
    )
    .await;
}

async fn numeric_ranges(index: &dyn SearchIndex) {
    expect_ids(
        index,
        "gte and lt",
        vec![range(
            "age",
            [Some(Scalar::Int(30)), None, None, Some(Scalar::Int(45))],
        )],
        &["u1", "u5"],
    )
    .await;
    expect_ids(
        index,
        "gt and lte",
        vec![range(
            "age",
            [None, Some(Scalar::Int(30)), Some(Scalar::Int(45)), None],
        )],
        &["u2", "u5"],
    )
    .await;
    expect_ids(
        index,
        "float bound on floats",
        vec![range(
            "rating",
            [None, Some(Scalar::Float(4.5)), None, None],
        )],
        &["u3"],
    )
    .await;
    expect_ids(
        index,
        "fractional bound on integers",
        vec![range("age", [None, None, None, Some(Scalar::Float(30.5))])],
        &["u1", "u3"],
    )
    .await;
    expect_ids(
        index,
        "range excludes documents without the field",
        vec![range("age", [Some(Scalar::Int(0)), None, None, None])],
        &["u1", "u2", "u3", "u5"],
    )
    .await;
}

async fn string_ranges(index: &dyn SearchIndex) {
    expect_ids(
        index,
        "date strings, one day",
        vec![range(
            "createdDate",
            [
                Some(text("2024-07-01")),
                None,
                None,
                Some(text("2024-07-02")),
            ],
        )],
        &["u1", "u2"],
    )
    .await;
    expect_ids(
        index,
        "date strings, strictly after a timestamp",
        vec![range(
            "createdDate",
            [None, Some(text("2024-07-01 12:47:05:123+0530")), None, None],
        )],
        &["u2", "u3", "u5"],
    )
    .await;
    expect_ids(
        index,
        "date strings, up to",
        vec![range(
            "createdDate",
            [None, None, Some(text("2024-06-30 23")), None],
        )],
        &["u4"],
    )
    .await;
    expect_ids(
        index,
        "string range ignores case",
        vec![range(
            "firstName",
            [Some(text("B")), None, None, Some(text("D"))],
        )],
        &["u2", "u3"],
    )
    .await;
}

async fn prefix_and_suffix(index: &dyn SearchIndex) {
    let prefix = |field: &str, prefix: &str| Filter::Prefix {
        field: field.to_owned(),
        prefix: prefix.to_owned(),
    };
    let suffix = |field: &str, suffix: &str| Filter::Suffix {
        field: field.to_owned(),
        suffix: suffix.to_owned(),
    };
    expect_ids(
        index,
        "prefix any case",
        vec![prefix("firstName", "ASH")],
        &["u1", "u4"],
    )
    .await;
    expect_ids(
        index,
        "prefix is the whole value",
        vec![prefix("firstName", "asha")],
        &["u1"],
    )
    .await;
    expect_ids(
        index,
        "prefix in array of objects",
        vec![prefix("organisations.orgName", "beta")],
        &["u1", "u3"],
    )
    .await;
    expect_ids(
        index,
        "empty prefix: any value",
        vec![prefix("phone", "")],
        &["u1", "u3"],
    )
    .await;
    expect_ids(
        index,
        "suffix any case",
        vec![suffix("email", "@EXAMPLE.ORG")],
        &["u1", "u3"],
    )
    .await;
    expect_ids(
        index,
        "suffix of a short value",
        vec![suffix("firstName", "sha")],
        &["u1"],
    )
    .await;
    expect_ids(
        index,
        "suffix no match",
        vec![suffix("firstName", "xyz")],
        &[],
    )
    .await;
}

async fn or_filters(index: &dyn SearchIndex) {
    expect_ids(
        index,
        "or of terms",
        vec![Filter::Or(vec![
            term("email", text("chitra@example.org")),
            term("phone", text("9876543210")),
        ])],
        &["u1", "u3"],
    )
    .await;
    expect_ids(
        index,
        "or with a range, and-ed with a term",
        vec![
            Filter::Or(vec![
                range("age", [Some(Scalar::Int(40)), None, None, None]),
                term("rootOrgId", text("ORG-C")),
            ]),
            term("status", Scalar::Int(1)),
        ],
        &["u2", "u4"],
    )
    .await;
    expect_ids(
        index,
        "empty or matches nothing",
        vec![Filter::Or(vec![])],
        &[],
    )
    .await;
}

async fn exists_and_not_exists(index: &dyn SearchIndex) {
    let exists = |field: &str| Filter::Exists(field.to_owned());
    let missing = |field: &str| Filter::NotExists(field.to_owned());
    expect_ids(index, "exists", vec![exists("phone")], &["u1", "u3"]).await;
    expect_ids(
        index,
        "not exists",
        vec![missing("phone")],
        &["u2", "u4", "u5"],
    )
    .await;
    expect_ids(index, "null does not exist", vec![exists("managedBy")], &[]).await;
    expect_ids(
        index,
        "null is missing",
        vec![missing("managedBy")],
        &["u1", "u2", "u3", "u4", "u5"],
    )
    .await;
    expect_ids(
        index,
        "empty array does not exist",
        vec![exists("organisations")],
        &["u1", "u2", "u3", "u5"],
    )
    .await;
    expect_ids(
        index,
        "leaf in array of objects",
        vec![exists("roles.role")],
        &["u1", "u2", "u3", "u5"],
    )
    .await;
    expect_ids(index, "object exists", vec![exists("profile")], &["u1"]).await;
    expect_ids(
        index,
        "exists and-ed with not exists",
        vec![exists("age"), missing("phone")],
        &["u2", "u5"],
    )
    .await;
}

async fn fuzzy(index: &dyn SearchIndex) {
    let cases: [(&str, &str, &str, &[&str]); 6] = [
        ("exact word", "firstName", "asha", &["u1"]),
        ("a transposition is one edit", "firstName", "ahsa", &["u1"]),
        ("two edits in a long word", "lastName", "krishnen", &["u2"]),
        (
            "two edits are too many for a short word",
            "firstName",
            "axhx",
            &[],
        ),
        (
            "any word of the value",
            "lastName",
            "zzzz rau",
            &["u1", "u3"],
        ),
        ("only the named field", "firstName", "rao", &[]),
    ];
    for (case, field, text, expected) in cases {
        let mut query = SearchQuery::match_all(100);
        query.fuzzy = Some((field.to_owned(), text.to_owned()));
        let result = run(index, &query).await;
        assert_eq!(id_set(&result), set(expected), "fuzzy {case}: {text:?}");
    }
}

fn free_text_query(text: &str, fields: &[&str]) -> SearchQuery {
    let mut query = SearchQuery::match_all(100);
    query.query = Some(text.to_owned());
    query.query_fields = fields.iter().map(|field| field.to_string()).collect();
    query
}

async fn free_text(index: &dyn SearchIndex) {
    let cases: [(&str, &str, &[&str], &[&str]); 7] = [
        ("whole word", "asha", &[], &["u1"]),
        ("any case", "RAO", &[], &["u1", "u3"]),
        ("word prefix", "ash", &[], &["u1", "u4"]),
        ("words are or-ed", "krishnan asha", &[], &["u1", "u2"]),
        ("limited to query fields", "rao", &["firstName"], &[]),
        (
            "in query fields",
            "rao",
            &["lastName", "firstName"],
            &["u1", "u3"],
        ),
        ("nothing matches", "zzzz", &[], &[]),
    ];
    for (case, text, fields, expected) in cases {
        let result = run(index, &free_text_query(text, fields)).await;
        assert_eq!(id_set(&result), set(expected), "free text {case}: {text:?}");
        assert_eq!(
            result.count,
            expected.len() as u64,
            "free text {case}: count"
        );
    }

    // The document matching both words ranks first.
    let result = run(index, &free_text_query("rao chitra", &[])).await;
    assert_eq!(
        ids(&result).first().map(String::as_str),
        Some("u3"),
        "relevance order"
    );
    assert_eq!(result.count, 2, "relevance: count");

    let mut filtered = free_text_query("rao", &[]);
    filtered.filters.push(term("status", Scalar::Int(1)));
    assert_eq!(
        ids(&run(index, &filtered).await),
        list(&["u1"]),
        "free text with a filter"
    );

    let mut sorted = free_text_query("rao", &[]);
    sorted.sort_by = vec![("firstName".to_owned(), SortOrder::Desc)];
    assert_eq!(
        ids(&run(index, &sorted).await),
        list(&["u3", "u1"]),
        "an explicit sort replaces relevance"
    );
}

fn sorted(fields: &[(&str, SortOrder)]) -> SearchQuery {
    let mut query = SearchQuery::match_all(100);
    query.sort_by = fields
        .iter()
        .map(|(field, order)| (field.to_string(), *order))
        .collect();
    query
}

async fn sorting(index: &dyn SearchIndex) {
    use SortOrder::{Asc, Desc};
    let cases: [(&str, SearchQuery, &[&str]); 7] = [
        (
            "string ascending ignores case",
            sorted(&[("firstName", Asc)]),
            &["u1", "u4", "u2", "u3", "u5"],
        ),
        (
            "string descending",
            sorted(&[("firstName", Desc)]),
            &["u5", "u3", "u2", "u4", "u1"],
        ),
        (
            "number ascending, missing last",
            sorted(&[("age", Asc)]),
            &["u3", "u1", "u5", "u2", "u4"],
        ),
        (
            "number descending, missing last",
            sorted(&[("age", Desc)]),
            &["u2", "u5", "u1", "u3", "u4"],
        ),
        (
            "float descending, missing last",
            sorted(&[("rating", Desc)]),
            &["u3", "u1", "u2", "u5", "u4"],
        ),
        (
            "two keys",
            sorted(&[("status", Asc), ("age", Desc)]),
            &["u3", "u2", "u1", "u4", "u5"],
        ),
        (
            "date strings",
            sorted(&[("createdDate", Asc)]),
            &["u4", "u1", "u2", "u3", "u5"],
        ),
    ];
    for (case, query, expected) in cases {
        let result = run(index, &query).await;
        assert_eq!(ids(&result), list(expected), "sort {case}");
        assert_eq!(result.count, 5, "sort {case}: count");
    }

    let mut filtered = sorted(&[("age", Asc)]);
    filtered.filters.push(term("rootOrgId", text("org-a")));
    assert_eq!(
        ids(&run(index, &filtered).await),
        list(&["u1", "u5", "u2"]),
        "sort within a filter"
    );
}

async fn paging(index: &dyn SearchIndex) {
    let page = |offset: usize, limit: usize| {
        let mut query = sorted(&[("age", SortOrder::Asc)]);
        query.offset = offset;
        query.limit = limit;
        query
    };
    let cases: [(usize, usize, &[&str]); 5] = [
        (0, 2, &["u3", "u1"]),
        (1, 2, &["u1", "u5"]),
        (3, 10, &["u2", "u4"]),
        (4, 1, &["u4"]),
        (10, 5, &[]),
    ];
    for (offset, limit, expected) in cases {
        let result = run(index, &page(offset, limit)).await;
        assert_eq!(
            ids(&result),
            list(expected),
            "page offset {offset} limit {limit}"
        );
        assert_eq!(result.count, 5, "page offset {offset} limit {limit}: count");
    }

    // Without a sort the order is unspecified but stable: pages do not overlap.
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let mut query = SearchQuery::match_all(2);
        query.offset = offset;
        seen.extend(ids(&run(index, &query).await));
    }
    seen.sort();
    assert_eq!(
        seen,
        list(&["u1", "u2", "u3", "u4", "u5"]),
        "unsorted pages cover every hit once"
    );
}

fn facet(name: &str, values: &[(&str, u64)]) -> Facet {
    Facet {
        name: name.to_owned(),
        values: values
            .iter()
            .map(|(name, count)| FacetValue {
                name: name.to_string(),
                count: *count,
            })
            .collect(),
    }
}

fn facet_query(facets: &[(&str, FacetKind)], limit: usize) -> SearchQuery {
    let mut query = SearchQuery::match_all(limit);
    query.facets = facets
        .iter()
        .map(|(field, kind)| FacetRequest {
            field: field.to_string(),
            kind: *kind,
        })
        .collect();
    query
}

async fn facets(index: &dyn SearchIndex) {
    use FacetKind::{DateHistogram, Terms};
    // Counted over every hit, not only the page; names keep their original case.
    let result = run(
        index,
        &facet_query(
            &[
                ("rootOrgId", Terms),
                ("roles.role", Terms),
                ("status", Terms),
            ],
            1,
        ),
    )
    .await;
    assert_eq!(result.content.len(), 1, "facets: page size");
    assert_eq!(
        result.facets,
        vec![
            facet("rootOrgId", &[("ORG-A", 3), ("ORG-B", 1), ("ORG-C", 1)]),
            facet(
                "roles.role",
                &[("PUBLIC", 3), ("CONTENT_CREATOR", 1), ("ORG_ADMIN", 1)]
            ),
            facet("status", &[("1", 3), ("0", 1), ("2", 1)]),
        ],
        "terms facets"
    );

    let mut filtered = facet_query(&[("rootOrgId", Terms)], 0);
    filtered.filters.push(term("status", Scalar::Int(1)));
    assert_eq!(
        run(index, &filtered).await.facets,
        vec![facet("rootOrgId", &[("ORG-A", 2), ("ORG-C", 1)])],
        "facets follow the filters"
    );

    assert_eq!(
        run(index, &facet_query(&[("createdDate", DateHistogram)], 0))
            .await
            .facets,
        vec![facet(
            "createdDate",
            &[("2024-06-30", 1), ("2024-07-01", 2), ("2024-07-03", 2)]
        )],
        "date histogram: one bucket per day with documents, in date order"
    );

    assert_eq!(
        run(index, &facet_query(&[("nope", Terms)], 0)).await.facets,
        vec![facet("nope", &[])],
        "facet on a missing field"
    );
}

async fn source_filtering(index: &dyn SearchIndex) {
    let mut query = with_filters(vec![term("id", text("u1"))]);
    query.fields = vec!["firstName".to_owned(), "organisations.orgName".to_owned()];
    let result = run(index, &query).await;
    assert_eq!(
        result.content,
        vec![object(json!({
            "firstName": "Asha",
            "organisations": [{ "orgName": "Alpha School" }, { "orgName": "Beta School" }]
        }))],
        "fields include list"
    );

    let mut query = with_filters(vec![term("id", text("u1"))]);
    query.exclude_fields = vec![
        "email".to_owned(),
        "phone".to_owned(),
        "profile.board".to_owned(),
        "organisations".to_owned(),
        "roles".to_owned(),
    ];
    query.fields = vec!["id".to_owned(), "email".to_owned(), "profile".to_owned()];
    let result = run(index, &query).await;
    assert_eq!(
        result.content,
        vec![object(
            json!({ "id": "u1", "profile": { "medium": "English" } })
        )],
        "exclude wins over include"
    );
}

async fn source_round_trip(index: &dyn SearchIndex) {
    let expected = users();
    for user in &expected {
        let stored = index
            .get(IndexName::User, &user.id)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("get {} found nothing", user.id));
        assert_eq!(&stored, user, "get returns the document as upserted");
    }
    assert_eq!(
        index
            .get(IndexName::User, "missing")
            .await
            .expect("get missing"),
        None,
        "get of an unknown id"
    );
    let result = run(index, &with_filters(vec![term("id", text("u2"))])).await;
    assert_eq!(
        result.content,
        vec![expected[1].source.clone()],
        "search returns the source"
    );
}

async fn versions(index: &dyn SearchIndex) {
    let first_name = |name: &str| json!({ "id": "u1", "firstName": name });
    let stored_name = |stored: Option<IndexDoc>| {
        let stored = stored.expect("u1 is stored");
        (stored.version, stored.source.get("firstName").cloned())
    };
    let upsert = |docs: Vec<IndexDoc>| async move {
        index.upsert(IndexName::User, docs).await.expect("upsert");
    };

    upsert(vec![doc("u1", 5, first_name("Five"))]).await;
    upsert(vec![doc("u1", 4, first_name("Stale"))]).await;
    assert_eq!(
        stored_name(index.get(IndexName::User, "u1").await.expect("get")),
        (5, Some(json!("Five"))),
        "a lower version is ignored"
    );
    expect_ids(
        index,
        "stale value not indexed",
        vec![term("firstName", text("stale"))],
        &[],
    )
    .await;

    upsert(vec![doc("u1", 5, first_name("Again"))]).await;
    assert_eq!(
        stored_name(index.get(IndexName::User, "u1").await.expect("get")),
        (5, Some(json!("Again"))),
        "the same version replaces"
    );

    upsert(vec![
        doc("u1", 7, first_name("Seven")),
        doc("u1", 6, first_name("Six")),
    ])
    .await;
    assert_eq!(
        stored_name(index.get(IndexName::User, "u1").await.expect("get")),
        (7, Some(json!("Seven"))),
        "versions are checked within one batch"
    );
    expect_ids(
        index,
        "replaced, not duplicated",
        vec![term("id", text("u1"))],
        &["u1"],
    )
    .await;
    expect_ids(
        index,
        "old value gone",
        vec![term("firstName", text("asha"))],
        &[],
    )
    .await;
    expect_ids(
        index,
        "new value indexed",
        vec![term("firstName", text("seven"))],
        &["u1"],
    )
    .await;
    assert_eq!(
        run(index, &SearchQuery::match_all(0)).await.count,
        5,
        "still five users"
    );

    upsert(vec![]).await;
}

async fn delete_and_clear(index: &dyn SearchIndex) {
    index
        .delete(IndexName::User, vec!["u2".to_owned(), "unknown".to_owned()])
        .await
        .expect("delete");
    assert_eq!(
        index.get(IndexName::User, "u2").await.expect("get"),
        None,
        "deleted"
    );
    let all = run(index, &SearchQuery::match_all(100)).await;
    assert_eq!(
        id_set(&all),
        set(&["u1", "u3", "u4", "u5"]),
        "delete removes only its ids"
    );
    index
        .delete(IndexName::User, vec![])
        .await
        .expect("delete nothing");

    index
        .upsert(
            IndexName::Location,
            vec![doc("l1", 1, json!({ "id": "l1", "name": "Bengaluru" }))],
        )
        .await
        .expect("upsert location");
    index.clear(IndexName::User).await.expect("clear");
    assert_eq!(
        run(index, &SearchQuery::match_all(10)).await.count,
        0,
        "clear empties the index"
    );
    assert_eq!(
        index.get(IndexName::User, "u1").await.expect("get"),
        None,
        "cleared"
    );
    let locations = index
        .search(IndexName::Location, &SearchQuery::match_all(10))
        .await
        .expect("search locations");
    assert_eq!(locations.count, 1, "clear leaves other indices alone");

    // A cleared index takes new documents, whatever their version.
    index
        .upsert(IndexName::User, vec![doc("u1", 1, json!({ "id": "u1" }))])
        .await
        .expect("upsert after clear");
    assert_eq!(
        run(index, &SearchQuery::match_all(10)).await.count,
        1,
        "usable after clear"
    );

    // A rebuild: afterwards the index holds exactly what was written since it began, at the
    // versions written then (lower than before, as after a clear).
    index
        .upsert(
            IndexName::User,
            vec![
                doc("u2", 5, json!({ "id": "u2" })),
                doc("u3", 5, json!({ "id": "u3" })),
            ],
        )
        .await
        .expect("before the rebuild");
    index.begin_rebuild(IndexName::User).await.expect("begin");
    index
        .upsert(
            IndexName::User,
            vec![
                doc("u1", 1, json!({ "id": "u1" })),
                doc("u2", 1, json!({ "id": "u2", "firstName": "Rebuilt" })),
                doc("u4", 1, json!({ "id": "u4" })),
            ],
        )
        .await
        .expect("rebuild writes");
    index.finish_rebuild(IndexName::User).await.expect("finish");
    let mut rebuilt = ids(&run(index, &SearchQuery::match_all(10)).await);
    rebuilt.sort();
    assert_eq!(rebuilt, ["u1", "u2", "u4"], "only what the rebuild wrote");
    assert_eq!(
        index
            .get(IndexName::User, "u2")
            .await
            .expect("get")
            .map(|found| found.source["firstName"].clone()),
        Some(json!("Rebuilt"))
    );
    assert_eq!(
        index
            .search(IndexName::Location, &SearchQuery::match_all(10))
            .await
            .expect("search locations")
            .count,
        1,
        "a rebuild leaves other indices alone"
    );
}

async fn index_isolation(index: &dyn SearchIndex) {
    index
        .upsert(
            IndexName::Organisation,
            vec![doc("u1", 1, json!({ "id": "u1", "orgName": "Org" }))],
        )
        .await
        .expect("upsert organisation");
    let user = index.get(IndexName::User, "u1").await.expect("get user");
    let organisation = index
        .get(IndexName::Organisation, "u1")
        .await
        .expect("get organisation");
    assert_eq!(
        user.map(|doc| doc.source),
        Some(object(json!({ "id": "u1" }))),
        "user index"
    );
    assert_eq!(
        organisation.map(|doc| doc.source),
        Some(object(json!({ "id": "u1", "orgName": "Org" }))),
        "same id in another index is another document"
    );
}

/// Writers racing on one id (the indexer and a reindex, or two instances): whatever the order
/// they land in, the highest version wins, and searches running meanwhile never fail.
async fn concurrent_writes(shared: &Arc<dyn SearchIndex>) {
    const VERSIONS: u64 = 12;
    let mut tasks = Vec::new();
    // Interleave high and low versions so arrival order differs from version order.
    for step in 0..VERSIONS {
        let version = if step % 2 == 0 { VERSIONS - step } else { step };
        let index = Arc::clone(shared);
        tasks.push(tokio::spawn(async move {
            let source = json!({ "id": "c1", "version": version });
            index
                .upsert(IndexName::User, vec![doc("c1", version, source)])
                .await
                .expect("concurrent upsert");
        }));
        let index = Arc::clone(shared);
        tasks.push(tokio::spawn(async move {
            let query = with_filters(vec![term("id", text("c1"))]);
            let result = index
                .search(IndexName::User, &query)
                .await
                .expect("search during writes");
            assert!(result.count <= 1, "never two copies of one id");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let stored = shared
        .get(IndexName::User, "c1")
        .await
        .expect("get")
        .expect("c1 stored");
    assert_eq!(stored.version, VERSIONS, "the highest version wins");
    assert_eq!(
        stored.source.get("version"),
        Some(&json!(VERSIONS)),
        "with its source"
    );
    for name in IndexName::ALL {
        shared.clear(name).await.expect("clear after the suite");
    }
}
