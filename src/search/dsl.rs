//! The Sunbird search DSL (`request.filters`, `query`, `fields`, `limit`, ...) parsed into a
//! [`SearchQuery`].
//!
//! The rules follow Sunbird's `ElasticSearchHelper` (`createSearchDTO`,
//! `createFilterESOpperation`, `getTermQueryFromMap`) so a request means here what it meant there:
//!
//! - a string, number or boolean filter value is an exact, case-insensitive match;
//! - a list is "any of"; an **empty list adds no clause** (Sunbird skips it before building the
//!   `terms` query, so `{"status": []}` does not restrict the search);
//! - an object holds range operators (`>=`, `>`, `<=`, `<`) and/or `startsWith` / `endsWith`;
//!   unknown operators are ignored, as Sunbird ignores them;
//! - `$or` (any case) holds an object whose entries are OR-ed;
//! - a sort order is ascending only for `"asc"` (any case); every other string sorts descending,
//!   as Sunbird's `getSortOrder` does.
//!
//! What Sunbird left to Elasticsearch is made explicit: `limit` and `offset` must be non-negative
//! integers and are capped (never rejected) by [`SearchLimits`], so no request can ask for an
//! unbounded page.

use serde_json::{Map, Value};

use super::{FacetKind, FacetRequest, Filter, Scalar, SearchQuery, SortOrder};

/// Page-size bounds applied to every parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// `limit` when the request has none (Sunbird's `SearchDTO` default).
    pub default_limit: usize,
    /// Larger `limit` values are lowered to this.
    pub max_limit: usize,
    /// Larger `offset` values are lowered to this (Elasticsearch's `max_result_window` plays this
    /// role in Sunbird).
    pub max_offset: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            default_limit: 250,
            max_limit: 1000,
            max_offset: 10_000,
        }
    }
}

/// A request the DSL cannot accept. `Display` is the exact Sunbird message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DslError {
    #[error("Mandatory parameter {0} is missing.")]
    MissingParameter(String),
    /// `expected` is one of "List", "Map", "String", "Integer".
    #[error("Data type of {field} should be {expected}.")]
    DataType {
        field: String,
        expected: &'static str,
    },
    #[error("Invalid value null for parameter {0}. Please provide a valid value.")]
    InvalidFilterValue(String),
    /// A filter the service cannot translate (an unknown operator, `$and`, a nested `$or`, an
    /// empty operator object, an integer beyond 64 bits): refused, never dropped, since a
    /// dropped filter would widen the search to every record.
    #[error("Invalid value {value} for parameter {field}. Please provide a valid value.")]
    Untranslatable { field: String, value: String },
    /// More of something than one search may ask for.
    #[error("Parameter {what} is of invalid size (expected: {max}, actual: {actual}).")]
    TooMany {
        what: &'static str,
        max: usize,
        actual: usize,
    },
}

/// What one search may ask for at most: each bounds the work of one request.
pub const MAX_CLAUSES: usize = 64;
pub const MAX_VALUES: usize = 1000;
pub const MAX_FACETS: usize = 20;
pub const MAX_SORT_FIELDS: usize = 5;
pub const MAX_QUERY_CHARS: usize = 500;
pub const MAX_LISTED_FIELDS: usize = 200;

fn at_most(what: &'static str, max: usize, actual: usize) -> Result<(), DslError> {
    if actual > max {
        return Err(DslError::TooMany { what, max, actual });
    }
    Ok(())
}

fn untranslatable(field: &str, value: impl Into<String>) -> DslError {
    DslError::Untranslatable {
        field: field.to_owned(),
        value: value.into(),
    }
}

/// A refused search request, with Sunbird's codes.
impl From<DslError> for crate::domain::DomainError {
    fn from(error: DslError) -> Self {
        use crate::domain::{DomainError, ErrorCode};
        match error {
            DslError::MissingParameter(field) => DomainError::mandatory_missing(&field),
            DslError::DataType { field, expected } => DomainError::data_type(&field, expected),
            DslError::InvalidFilterValue(field) => {
                DomainError::rule(ErrorCode::invalidParameterValue, &["null", &field])
            }
            DslError::Untranslatable { field, value } => {
                DomainError::rule(ErrorCode::invalidParameterValue, &[&value, &field])
            }
            DslError::TooMany { what, max, actual } => DomainError::rule(
                ErrorCode::errorInvalidParameterSize,
                &[what, &max.to_string(), &actual.to_string()],
            ),
        }
    }
}

const LIST: &str = "List";
const MAP: &str = "Map";
const STRING: &str = "String";
const INTEGER: &str = "Integer";

fn data_type(field: &str, expected: &'static str) -> DslError {
    DslError::DataType {
        field: field.to_owned(),
        expected,
    }
}

/// Parses the `request` object of a Sunbird search call.
pub fn parse_search_request(
    request: &Map<String, Value>,
    limits: &SearchLimits,
) -> Result<SearchQuery, DslError> {
    let filters = match request.get("filters") {
        // Sunbird's validator treats an explicit null like a missing key.
        None | Some(Value::Null) => {
            return Err(DslError::MissingParameter("filters".to_owned()));
        }
        Some(Value::Object(filters)) => parse_filters(filters)?,
        Some(_) => return Err(data_type("filters", MAP)),
    };

    let mut query = SearchQuery::match_all(limits.default_limit);
    query.filters = filters;
    query.query = optional_string(request, "query")?
        // Sunbird skips a blank query (`StringUtils.isBlank`).
        .filter(|text| !text.trim().is_empty());
    if let Some(text) = &query.query {
        at_most("query", MAX_QUERY_CHARS, text.chars().count())?;
    }
    query.query_fields = optional_string_list(request, "queryFields")?.unwrap_or_default();
    query.fuzzy = match request.get("fuzzy") {
        None | Some(Value::Null) => None,
        // Sunbird applies the first entry only.
        Some(Value::Object(fuzzy)) => match fuzzy.iter().next() {
            Some((field, Value::String(text))) if !text.trim().is_empty() => {
                at_most("fuzzy", MAX_QUERY_CHARS, text.chars().count())?;
                Some((field.clone(), text.clone()))
            }
            Some((field, Value::String(_))) => {
                return Err(DslError::MissingParameter(format!("fuzzy.{field}")));
            }
            Some((field, _)) => return Err(data_type(&format!("fuzzy.{field}"), "String")),
            None => None,
        },
        Some(_) => return Err(data_type("fuzzy", MAP)),
    };
    at_most("queryFields", MAX_LISTED_FIELDS, query.query_fields.len())?;
    query.fields = optional_string_list(request, "fields")?.unwrap_or_default();
    at_most("fields", MAX_LISTED_FIELDS, query.fields.len())?;
    query.limit = optional_count(request, "limit")?
        .unwrap_or(limits.default_limit)
        .min(limits.max_limit);
    query.offset = optional_count(request, "offset")?
        .unwrap_or(0)
        .min(limits.max_offset);
    query.sort_by = parse_sort_by(request)?;
    at_most("sort_by", MAX_SORT_FIELDS, query.sort_by.len())?;
    query.facets = parse_facets(request)?;
    at_most("facets", MAX_FACETS, query.facets.len())?;

    for field in optional_string_list(request, "exists")?.unwrap_or_default() {
        query.filters.push(Filter::Exists(field));
    }
    for field in optional_string_list(request, "not_exists")?.unwrap_or_default() {
        query.filters.push(Filter::NotExists(field));
    }
    let clauses: usize = query.filters.iter().map(clause_count).sum();
    at_most("filters", MAX_CLAUSES, clauses)?;
    Ok(query)
}

/// Clauses a filter costs: an `$or` counts each alternative.
fn clause_count(filter: &Filter) -> usize {
    match filter {
        Filter::Or(alternatives) => alternatives.iter().map(clause_count).sum(),
        _ => 1,
    }
}

fn parse_filters(filters: &Map<String, Value>) -> Result<Vec<Filter>, DslError> {
    let mut clauses = Vec::new();
    for (field, value) in filters {
        if field.starts_with('$') && !field.eq_ignore_ascii_case("$or") {
            // `$and`, `$not` and the like: no translation, so no silent match-all.
            return Err(untranslatable("filters", field.clone()));
        }
        if field.eq_ignore_ascii_case("$or") {
            if let Some(clause) = parse_or(field, value)? {
                clauses.push(clause);
            }
        } else {
            clauses.extend(parse_filter_value(field, value)?);
        }
    }
    Ok(clauses)
}

/// `filters.$or`: each entry is one alternative. An empty object adds no clause (Sunbird builds an
/// empty `bool` query, which matches everything).
fn parse_or(key: &str, value: &Value) -> Result<Option<Filter>, DslError> {
    let entries = match value {
        Value::Null => return Err(DslError::InvalidFilterValue(key.to_owned())),
        Value::Object(entries) => entries,
        _ => return Err(data_type(key, MAP)),
    };
    let mut alternatives = Vec::with_capacity(entries.len());
    for (field, value) in entries {
        if field.starts_with('$') {
            // A nested `$or`, `$and`, ...: not translated, so refused.
            return Err(untranslatable(key, field.clone()));
        }
        let mut clauses = parse_filter_value(field, value)?;
        match clauses.len() {
            // An empty list or an object without operators: this alternative restricts nothing.
            0 => return Ok(None),
            1 => alternatives.extend(clauses.pop()),
            // A range combined with startsWith/endsWith would need an AND inside the OR; Sunbird
            // only accepts plain strings under `$or`, so ask for the simple form.
            _ => return Err(data_type(field, STRING)),
        }
    }
    if alternatives.is_empty() {
        return Ok(None);
    }
    Ok(Some(Filter::Or(alternatives)))
}

/// The clauses for one `filters` entry: none, one, or two (a range plus a prefix/suffix).
fn parse_filter_value(field: &str, value: &Value) -> Result<Vec<Filter>, DslError> {
    match value {
        Value::Null => Err(DslError::InvalidFilterValue(field.to_owned())),
        Value::Array(items) => {
            if items.is_empty() {
                return Ok(Vec::new());
            }
            at_most("filters", MAX_VALUES, items.len())?;
            let values = items
                .iter()
                .map(|item| match item {
                    Value::Null => Err(DslError::InvalidFilterValue(field.to_owned())),
                    other => scalar(other).ok_or_else(|| data_type(field, STRING)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(vec![Filter::Terms {
                field: field.to_owned(),
                values,
            }])
        }
        Value::Object(operators) => parse_operators(field, operators),
        other => match scalar(other) {
            Some(value) => Ok(vec![Filter::Term {
                field: field.to_owned(),
                value,
            }]),
            None => Err(data_type(field, STRING)),
        },
    }
}

fn parse_operators(field: &str, operators: &Map<String, Value>) -> Result<Vec<Filter>, DslError> {
    if operators.is_empty() {
        return Err(untranslatable(field, "{}"));
    }
    let mut gte = None;
    let mut gt = None;
    let mut lte = None;
    let mut lt = None;
    let mut clauses = Vec::new();
    for (operator, operand) in operators {
        let bound = match operator.as_str() {
            ">=" => &mut gte,
            ">" => &mut gt,
            "<=" => &mut lte,
            "<" => &mut lt,
            "startsWith" | "endsWith" => {
                let text = match operand {
                    Value::Null => return Err(DslError::InvalidFilterValue(field.to_owned())),
                    // An empty prefix or suffix would scan every value of the field.
                    Value::String(text) if text.is_empty() => {
                        return Err(untranslatable(field, "\"\""));
                    }
                    Value::String(text) => text.clone(),
                    _ => return Err(data_type(field, STRING)),
                };
                clauses.push(if operator == "startsWith" {
                    Filter::Prefix {
                        field: field.to_owned(),
                        prefix: text,
                    }
                } else {
                    Filter::Suffix {
                        field: field.to_owned(),
                        suffix: text,
                    }
                });
                continue;
            }
            // Sunbird ignores operators it does not know; dropping one would widen the
            // search, so here it is refused.
            other => return Err(untranslatable(field, other)),
        };
        *bound = Some(match operand {
            Value::Null => return Err(DslError::InvalidFilterValue(field.to_owned())),
            Value::Number(number)
                if number.as_i64().is_none()
                    && number
                        .as_f64()
                        .is_some_and(|f| f.fract() == 0.0 && f.abs() >= 9.2e18) =>
            {
                // An integer beyond 64 bits compares with nothing stored.
                return Err(untranslatable(field, number.to_string()));
            }
            other => scalar(other).ok_or_else(|| data_type(field, STRING))?,
        });
    }
    if gte.is_some() || gt.is_some() || lte.is_some() || lt.is_some() {
        // The range goes first so a combined filter reads like the request: range, then text.
        clauses.insert(
            0,
            Filter::Range {
                field: field.to_owned(),
                gte,
                gt,
                lte,
                lt,
            },
        );
    }
    Ok(clauses)
}

/// A JSON scalar as a filter value; `None` for arrays, objects and null.
fn scalar(value: &Value) -> Option<Scalar> {
    match value {
        Value::String(text) => Some(Scalar::Str(text.clone())),
        Value::Bool(flag) => Some(Scalar::Bool(*flag)),
        Value::Number(number) => Some(match number.as_i64() {
            Some(int) => Scalar::Int(int),
            // u64 above i64::MAX and fractions: compared as floats.
            None => Scalar::Float(number.as_f64()?),
        }),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn optional_string(request: &Map<String, Value>, key: &str) -> Result<Option<String>, DslError> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(data_type(key, STRING)),
    }
}

fn optional_string_list(
    request: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, DslError> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(data_type(key, LIST)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(data_type(key, LIST)),
    }
}

/// A non-negative integer (`limit`, `offset`). Fractions, negatives and strings are rejected;
/// numbers too large for `usize` saturate, the caller caps them anyway.
fn optional_count(request: &Map<String, Value>, key: &str) -> Result<Option<usize>, DslError> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match number.as_u64() {
            Some(count) => Ok(Some(usize::try_from(count).unwrap_or(usize::MAX))),
            None => Err(data_type(key, INTEGER)),
        },
        Some(_) => Err(data_type(key, INTEGER)),
    }
}

fn parse_sort_by(request: &Map<String, Value>) -> Result<Vec<(String, SortOrder)>, DslError> {
    let entries = match request.get("sort_by") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(entries)) => entries,
        Some(_) => return Err(data_type("sort_by", MAP)),
    };
    entries
        .iter()
        .map(|(field, order)| {
            let order = match order {
                Value::String(order) => sort_order(order),
                // Sunbird's nested form `{"roles.role": {"term": {...}, "order": "asc"}}`: the
                // order is kept, the nested term filter only narrows which array element supplies
                // the sort value and is not modelled.
                Value::Object(nested) => match nested.get("order") {
                    Some(Value::String(order)) => sort_order(order),
                    _ => return Err(data_type(field, STRING)),
                },
                _ => return Err(data_type(field, STRING)),
            };
            Ok((field.clone(), order))
        })
        .collect()
}

fn sort_order(order: &str) -> SortOrder {
    if order.eq_ignore_ascii_case("asc") {
        SortOrder::Asc
    } else {
        SortOrder::Desc
    }
}

fn parse_facets(request: &Map<String, Value>) -> Result<Vec<FacetRequest>, DslError> {
    let items = match request.get("facets") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(data_type("facets", LIST)),
    };
    let mut facets: Vec<FacetRequest> = Vec::new();
    for item in items {
        let Value::Object(entries) = item else {
            return Err(data_type("facets", LIST));
        };
        for (field, kind) in entries {
            let kind = match kind {
                Value::Null => FacetKind::Terms,
                Value::String(kind) if kind.eq_ignore_ascii_case("DATE_HISTOGRAM") => {
                    FacetKind::DateHistogram
                }
                // Sunbird builds no aggregation for any other value.
                _ => continue,
            };
            if !facets.iter().any(|facet| facet.field == *field) {
                facets.push(FacetRequest {
                    field: field.clone(),
                    kind,
                });
            }
        }
    }
    Ok(facets)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(request: Value) -> Result<SearchQuery, DslError> {
        let Value::Object(request) = request else {
            panic!("test request must be an object");
        };
        parse_search_request(&request, &SearchLimits::default())
    }

    fn filters(filters: Value) -> Result<Vec<Filter>, DslError> {
        parse(json!({ "filters": filters })).map(|query| query.filters)
    }

    fn term(field: &str, value: Scalar) -> Filter {
        Filter::Term {
            field: field.to_owned(),
            value,
        }
    }

    #[test]
    fn filters_are_mandatory() {
        let err = parse(json!({ "query": "asha" })).unwrap_err();
        assert_eq!(err, DslError::MissingParameter("filters".into()));
        assert_eq!(err.to_string(), "Mandatory parameter filters is missing.");
        let err = parse(json!({ "filters": null })).unwrap_err();
        assert_eq!(err, DslError::MissingParameter("filters".into()));
    }

    #[test]
    fn filters_must_be_an_object() {
        let err = parse(json!({ "filters": ["a"] })).unwrap_err();
        assert_eq!(err, data_type("filters", "Map"));
        assert_eq!(err.to_string(), "Data type of filters should be Map.");
    }

    #[test]
    fn empty_filters_give_match_all_defaults() {
        let query = parse(json!({ "filters": {} })).unwrap();
        assert_eq!(query, SearchQuery::match_all(250));
    }

    #[test]
    fn scalar_filters_become_terms() {
        let clauses =
            filters(json!({ "a": "Asha", "b": 1, "c": 1.5, "d": true, "e": u64::MAX })).unwrap();
        assert_eq!(
            clauses,
            vec![
                term("a", Scalar::Str("Asha".into())),
                term("b", Scalar::Int(1)),
                term("c", Scalar::Float(1.5)),
                term("d", Scalar::Bool(true)),
                term("e", Scalar::Float(u64::MAX as f64)),
            ]
        );
    }

    #[test]
    fn list_filters_become_terms_any_of() {
        let clauses =
            filters(json!({ "roles.role": ["ORG_ADMIN", "PUBLIC"], "status": [0, 1] })).unwrap();
        assert_eq!(
            clauses,
            vec![
                Filter::Terms {
                    field: "roles.role".into(),
                    values: vec![
                        Scalar::Str("ORG_ADMIN".into()),
                        Scalar::Str("PUBLIC".into())
                    ],
                },
                Filter::Terms {
                    field: "status".into(),
                    values: vec![Scalar::Int(0), Scalar::Int(1)],
                },
            ]
        );
    }

    #[test]
    fn empty_list_adds_no_clause_like_sunbird() {
        assert_eq!(filters(json!({ "status": [] })).unwrap(), vec![]);
    }

    #[test]
    fn list_elements_must_be_scalars() {
        assert_eq!(
            filters(json!({ "a": [{"x": 1}] })).unwrap_err(),
            data_type("a", "String")
        );
        assert_eq!(
            filters(json!({ "a": ["x", null] })).unwrap_err(),
            DslError::InvalidFilterValue("a".into())
        );
    }

    #[test]
    fn null_filter_value_is_rejected_with_sunbird_message() {
        let err = filters(json!({ "email": null })).unwrap_err();
        assert_eq!(err, DslError::InvalidFilterValue("email".into()));
        assert_eq!(
            err.to_string(),
            "Invalid value null for parameter email. Please provide a valid value."
        );
    }

    #[test]
    fn range_operators_become_one_range() {
        let clauses = filters(json!({
            "age": { ">": 10, "<=": 20.5 },
            "createdDate": { ">=": "2024-01-01", "<": "2024-02-01" },
        }))
        .unwrap();
        assert_eq!(
            clauses,
            vec![
                Filter::Range {
                    field: "age".into(),
                    gte: None,
                    gt: Some(Scalar::Int(10)),
                    lte: Some(Scalar::Float(20.5)),
                    lt: None,
                },
                Filter::Range {
                    field: "createdDate".into(),
                    gte: Some(Scalar::Str("2024-01-01".into())),
                    gt: None,
                    lte: None,
                    lt: Some(Scalar::Str("2024-02-01".into())),
                },
            ]
        );
    }

    #[test]
    fn starts_with_and_ends_with() {
        let clauses = filters(json!({
            "email": { "endsWith": "@Example.org" },
            "firstName": { "startsWith": "As" },
        }))
        .unwrap();
        assert_eq!(
            clauses,
            vec![
                Filter::Suffix {
                    field: "email".into(),
                    suffix: "@Example.org".into()
                },
                Filter::Prefix {
                    field: "firstName".into(),
                    prefix: "As".into()
                },
            ]
        );
        assert_eq!(
            filters(json!({ "a": { "startsWith": 1 } })).unwrap_err(),
            data_type("a", "String")
        );
        assert_eq!(
            filters(json!({ "a": { "endsWith": null } })).unwrap_err(),
            DslError::InvalidFilterValue("a".into())
        );
    }

    #[test]
    fn range_and_prefix_on_one_field_give_two_clauses() {
        let clauses = filters(json!({ "code": { ">=": "a", "startsWith": "ab" } })).unwrap();
        assert_eq!(clauses.len(), 2);
        assert!(matches!(clauses[0], Filter::Range { .. }));
        assert!(matches!(clauses[1], Filter::Prefix { .. }));
    }

    /// Sunbird drops what it cannot translate, which widens the search to every record; each
    /// such filter is refused here instead (the robustness probe's cases).
    #[test]
    fn untranslatable_filters_are_refused_not_dropped() {
        for (request, field, value) in [
            (json!({ "a": { "like": "x" } }), "a", "like"),
            (json!({ "a": { "$regex": ".*" } }), "a", "$regex"),
            (json!({ "a": { "$ne": "x" } }), "a", "$ne"),
            (json!({ "a": { "~=": "x" } }), "a", "~="),
            (json!({ "a": {} }), "a", "{}"),
            (json!({ "$and": { "a": "x" } }), "filters", "$and"),
            (json!({ "$or": { "$or": { "a": "x" } } }), "$or", "$or"),
            (json!({ "a": { "startsWith": "" } }), "a", "\"\""),
            (
                json!({ "a": { ">=": 123456789012345678901234567890u128 as f64 } }),
                "a",
                "1.2345678901234568e+29",
            ),
        ] {
            let error = filters(request.clone()).expect_err("refused");
            assert_eq!(
                error,
                DslError::Untranslatable {
                    field: field.into(),
                    value: value.into()
                },
                "{request}"
            );
        }
        let error = filters(json!({ "a": { "~=": "x" } })).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "Invalid value ~= for parameter a. Please provide a valid value."
        );
    }

    #[test]
    fn every_part_of_a_search_is_capped() {
        let many = |n: usize| (0..n).map(|i| json!(format!("v{i}"))).collect::<Vec<_>>();
        let clauses: Map<String, Value> = (0..=MAX_CLAUSES)
            .map(|i| (format!("f{i}"), json!("x")))
            .collect();
        let cases = [
            (
                json!({"filters": clauses}),
                "filters",
                MAX_CLAUSES,
                MAX_CLAUSES + 1,
            ),
            (
                json!({"filters": {"id": many(MAX_VALUES + 1)}}),
                "filters",
                MAX_VALUES,
                MAX_VALUES + 1,
            ),
            (
                json!({"filters": {}, "facets": (0..=MAX_FACETS).map(|i| json!({format!("f{i}"): null})).collect::<Vec<_>>()}),
                "facets",
                MAX_FACETS,
                MAX_FACETS + 1,
            ),
            (
                json!({"filters": {}, "sort_by": (0..=MAX_SORT_FIELDS).map(|i| (format!("f{i}"), json!("asc"))).collect::<Map<String, Value>>()}),
                "sort_by",
                MAX_SORT_FIELDS,
                MAX_SORT_FIELDS + 1,
            ),
            (
                json!({"filters": {}, "query": "q".repeat(MAX_QUERY_CHARS + 1)}),
                "query",
                MAX_QUERY_CHARS,
                MAX_QUERY_CHARS + 1,
            ),
            (
                json!({"filters": {}, "fields": many(MAX_LISTED_FIELDS + 1)}),
                "fields",
                MAX_LISTED_FIELDS,
                MAX_LISTED_FIELDS + 1,
            ),
        ];
        for (request, what, max, actual) in cases {
            assert_eq!(
                parse(request).expect_err("capped"),
                DslError::TooMany { what, max, actual }
            );
        }
        // At the caps, accepted.
        assert!(parse(json!({"filters": {"id": many(MAX_VALUES)}})).is_ok());
    }

    #[test]
    fn range_bound_null_or_object_is_rejected() {
        assert_eq!(
            filters(json!({ "a": { ">=": null } })).unwrap_err(),
            DslError::InvalidFilterValue("a".into())
        );
        assert_eq!(
            filters(json!({ "a": { ">=": [1] } })).unwrap_err(),
            data_type("a", "String")
        );
    }

    #[test]
    fn or_filters() {
        let clauses =
            filters(json!({ "$or": { "email": "A@x.org", "phone": "99" }, "status": 1 })).unwrap();
        assert_eq!(
            clauses,
            vec![
                Filter::Or(vec![
                    term("email", Scalar::Str("A@x.org".into())),
                    term("phone", Scalar::Str("99".into())),
                ]),
                term("status", Scalar::Int(1)),
            ]
        );
        // Any case of the key, as Sunbird's equalsIgnoreCase.
        assert!(matches!(
            filters(json!({ "$OR": { "a": "x" } })).unwrap()[0],
            Filter::Or(_)
        ));
    }

    #[test]
    fn or_edge_cases() {
        assert_eq!(filters(json!({ "$or": {} })).unwrap(), vec![]);
        // An alternative that restricts nothing makes the whole OR restrict nothing.
        assert_eq!(
            filters(json!({ "$or": { "a": [], "b": "x" } })).unwrap(),
            vec![]
        );
        assert_eq!(
            filters(json!({ "$or": "x" })).unwrap_err(),
            data_type("$or", "Map")
        );
        assert_eq!(
            filters(json!({ "$or": null })).unwrap_err(),
            DslError::InvalidFilterValue("$or".into())
        );
        assert_eq!(
            filters(json!({ "$or": { "a": null } })).unwrap_err(),
            DslError::InvalidFilterValue("a".into())
        );
        assert_eq!(
            filters(json!({ "$or": { "a": { ">": 1, "startsWith": "x" } } })).unwrap_err(),
            data_type("a", "String")
        );
        assert_eq!(
            filters(json!({ "$or": { "a": { ">": 1 }, "b": ["x", "y"] } })).unwrap(),
            vec![Filter::Or(vec![
                Filter::Range {
                    field: "a".into(),
                    gte: None,
                    gt: Some(Scalar::Int(1)),
                    lte: None,
                    lt: None
                },
                Filter::Terms {
                    field: "b".into(),
                    values: vec![Scalar::Str("x".into()), Scalar::Str("y".into())]
                },
            ])]
        );
    }

    #[test]
    fn query_and_query_fields() {
        let query =
            parse(json!({ "filters": {}, "query": "asha", "queryFields": ["firstName"] })).unwrap();
        assert_eq!(query.query.as_deref(), Some("asha"));
        assert_eq!(query.query_fields, vec!["firstName".to_owned()]);
        assert_eq!(
            parse(json!({ "filters": {}, "query": "  " }))
                .unwrap()
                .query,
            None
        );
        assert_eq!(
            parse(json!({ "filters": {}, "query": 1 })).unwrap_err(),
            data_type("query", "String")
        );
        assert_eq!(
            parse(json!({ "filters": {}, "queryFields": "firstName" })).unwrap_err(),
            data_type("queryFields", "List")
        );
    }

    #[test]
    fn fields_must_be_a_list_of_strings() {
        let query = parse(json!({ "filters": {}, "fields": ["firstName", "roles.role"] })).unwrap();
        assert_eq!(
            query.fields,
            vec!["firstName".to_owned(), "roles.role".to_owned()]
        );
        let err = parse(json!({ "filters": {}, "fields": "firstName" })).unwrap_err();
        assert_eq!(err, data_type("fields", "List"));
        assert_eq!(err.to_string(), "Data type of fields should be List.");
        assert_eq!(
            parse(json!({ "filters": {}, "fields": [1] })).unwrap_err(),
            data_type("fields", "List")
        );
    }

    #[test]
    fn limit_defaults_and_is_capped() {
        assert_eq!(parse(json!({ "filters": {} })).unwrap().limit, 250);
        assert_eq!(
            parse(json!({ "filters": {}, "limit": 0 })).unwrap().limit,
            0
        );
        assert_eq!(
            parse(json!({ "filters": {}, "limit": 20 })).unwrap().limit,
            20
        );
        assert_eq!(
            parse(json!({ "filters": {}, "limit": 1000 }))
                .unwrap()
                .limit,
            1000
        );
        assert_eq!(
            parse(json!({ "filters": {}, "limit": 5000 }))
                .unwrap()
                .limit,
            1000
        );
        assert_eq!(
            parse(json!({ "filters": {}, "limit": u64::MAX }))
                .unwrap()
                .limit,
            1000
        );
        let limits = SearchLimits {
            default_limit: 10,
            max_limit: 50,
            max_offset: 100,
        };
        let Value::Object(request) = json!({ "filters": {}, "offset": 500 }) else {
            unreachable!()
        };
        let query = parse_search_request(&request, &limits).unwrap();
        assert_eq!((query.limit, query.offset), (10, 100));
    }

    #[test]
    fn limit_must_be_a_non_negative_integer() {
        for bad in [json!(-1), json!(2.5), json!("10"), json!([10])] {
            let err = parse(json!({ "filters": {}, "limit": bad })).unwrap_err();
            assert_eq!(err, data_type("limit", "Integer"));
            assert_eq!(err.to_string(), "Data type of limit should be Integer.");
        }
    }

    #[test]
    fn offset_defaults_and_is_capped() {
        assert_eq!(parse(json!({ "filters": {} })).unwrap().offset, 0);
        assert_eq!(
            parse(json!({ "filters": {}, "offset": 40 }))
                .unwrap()
                .offset,
            40
        );
        assert_eq!(
            parse(json!({ "filters": {}, "offset": 99_999 }))
                .unwrap()
                .offset,
            10_000
        );
        assert_eq!(
            parse(json!({ "filters": {}, "offset": -5 })).unwrap_err(),
            data_type("offset", "Integer")
        );
    }

    #[test]
    fn sort_by() {
        let query = parse(json!({
            "filters": {},
            "sort_by": { "createdDate": "DESC", "firstName": "Asc", "lastName": "anything" }
        }))
        .unwrap();
        assert_eq!(
            query.sort_by,
            vec![
                ("createdDate".to_owned(), SortOrder::Desc),
                ("firstName".to_owned(), SortOrder::Asc),
                // Sunbird: everything but "asc" is descending.
                ("lastName".to_owned(), SortOrder::Desc),
            ]
        );
        let nested = parse(json!({
            "filters": {},
            "sort_by": { "roles.role": { "term": { "roles.scope": "x" }, "order": "asc" } }
        }))
        .unwrap();
        assert_eq!(
            nested.sort_by,
            vec![("roles.role".to_owned(), SortOrder::Asc)]
        );
        assert_eq!(
            parse(json!({ "filters": {}, "sort_by": ["a"] })).unwrap_err(),
            data_type("sort_by", "Map")
        );
        assert_eq!(
            parse(json!({ "filters": {}, "sort_by": { "a": 1 } })).unwrap_err(),
            data_type("a", "String")
        );
    }

    #[test]
    fn facets() {
        let query = parse(json!({
            "filters": {},
            "facets": [{ "createdDate": "date_histogram", "rootOrgId": null, "x": "other" }]
        }))
        .unwrap();
        assert_eq!(
            query.facets,
            vec![
                FacetRequest {
                    field: "createdDate".into(),
                    kind: FacetKind::DateHistogram
                },
                FacetRequest {
                    field: "rootOrgId".into(),
                    kind: FacetKind::Terms
                },
            ]
        );
        assert_eq!(
            parse(json!({ "filters": {}, "facets": { "a": null } })).unwrap_err(),
            data_type("facets", "List")
        );
        assert_eq!(
            parse(json!({ "filters": {}, "facets": ["a"] })).unwrap_err(),
            data_type("facets", "List")
        );
    }

    #[test]
    fn exists_and_not_exists() {
        let query = parse(json!({
            "filters": { "status": 1 },
            "exists": ["email"],
            "not_exists": ["managedBy", "phone"]
        }))
        .unwrap();
        assert_eq!(
            query.filters,
            vec![
                term("status", Scalar::Int(1)),
                Filter::Exists("email".into()),
                Filter::NotExists("managedBy".into()),
                Filter::NotExists("phone".into()),
            ]
        );
        assert_eq!(
            parse(json!({ "filters": {}, "exists": "email" })).unwrap_err(),
            data_type("exists", "List")
        );
        assert_eq!(
            parse(json!({ "filters": {}, "not_exists": [1] })).unwrap_err(),
            data_type("not_exists", "List")
        );
    }

    #[test]
    fn unknown_request_keys_are_ignored() {
        let query = parse(json!({ "filters": {}, "softConstraints": { "a": 1 }, "x": 1 })).unwrap();
        assert_eq!(query, SearchQuery::match_all(250));
    }

    #[test]
    fn default_limits() {
        assert_eq!(
            SearchLimits::default(),
            SearchLimits {
                default_limit: 250,
                max_limit: 1000,
                max_offset: 10_000
            }
        );
    }
}
