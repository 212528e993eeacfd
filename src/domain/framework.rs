//! A user's `framework` (the board, medium, grade and subject a learner follows, and the id of
//! the framework they come from), checked as Sunbird checks it against the framework's
//! categories: the id is one non-blank value, every other field is a category of that
//! framework, and every value is one of the category's terms. A single string is taken as a
//! one-element list, and the framework is stored with every field as a list.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::{DomainError, DomainResult, ErrorCode};

/// The categories of one framework: category code -> the names of its terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Framework {
    pub categories: BTreeMap<String, BTreeSet<String>>,
}

impl Framework {
    /// From the answer of the framework read API
    /// (`result.framework.categories[].{code, terms[].name}`); `None` when the answer holds no
    /// framework. A category without a code or without terms is left out, as Sunbird leaves it.
    pub fn from_read_answer(answer: &Value) -> Option<Framework> {
        let framework = answer.pointer("/result/framework")?.as_object()?;
        let mut categories = BTreeMap::new();
        for category in framework
            .get("categories")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(code) = category
                .get("code")
                .and_then(Value::as_str)
                .filter(|c| !c.trim().is_empty())
            else {
                continue;
            };
            let terms: BTreeSet<String> = category
                .get("terms")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|term| term.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            if !terms.is_empty() {
                categories.insert(code.to_string(), terms);
            }
        }
        Some(Framework { categories })
    }

    /// From one entry of the `frameworks` system setting: `{"board": ["CBSE", ...], ...}`.
    /// `None` when the entry is not an object of string lists.
    pub fn from_setting(entry: &Value) -> Option<Framework> {
        let mut categories = BTreeMap::new();
        for (code, terms) in entry.as_object()? {
            let terms: Option<BTreeSet<String>> = terms
                .as_array()?
                .iter()
                .map(|term| term.as_str().map(str::to_string))
                .collect();
            categories.insert(code.clone(), terms?);
        }
        Some(Framework { categories })
    }
}

/// A request's framework after the checks that need no framework: its id, and every field as
/// a list of strings (the id too, as Sunbird stores it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameworkRequest {
    pub id: String,
    pub fields: Map<String, Value>,
}

fn missing_id() -> DomainError {
    DomainError::rule(ErrorCode::mandatoryParamsMissing, &["framework.id"])
}

/// A field's values: a string is one value; a list must hold strings.
fn values_of(field: &str, value: &Value) -> DomainResult<Vec<String>> {
    match value {
        Value::String(one) => Ok(vec![one.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| DomainError::data_type(field, "List"))
            })
            .collect(),
        _ => Err(DomainError::data_type(field, "List")),
    }
}

/// The checks of a non-empty framework that need no framework (Sunbird's request validator):
/// `framework.id` is present and one non-blank value (`0030` missing, `0058` more than one),
/// every other field a string or a list of strings (`0003`). `None` for an empty framework.
pub fn parse_request(framework: &Map<String, Value>) -> DomainResult<Option<FrameworkRequest>> {
    if framework.is_empty() {
        return Ok(None);
    }
    let ids = match framework.get("id") {
        None | Some(Value::Null) => return Err(missing_id()),
        Some(value) => values_of("framework.id", value)?,
    };
    if ids.len() > 1 {
        return Err(DomainError::rule(
            ErrorCode::errorInvalidParameterSize,
            &["framework.id", "1", &ids.len().to_string()],
        ));
    }
    let id = ids
        .into_iter()
        .next()
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(missing_id)?;
    let mut fields = Map::new();
    for (field, value) in framework {
        if field == "id" {
            continue;
        }
        fields.insert(field.clone(), json!(values_of(field, value)?));
    }
    fields.insert("id".into(), json!([id]));
    Ok(Some(FrameworkRequest { id, fields }))
}

impl FrameworkRequest {
    /// Checks the fields against the framework's categories: a field that is not a category
    /// is unsupported (`0051`), a value that is not one of its terms invalid (`0017`).
    pub fn check(&self, framework: &Framework) -> DomainResult<()> {
        for (field, values) in &self.fields {
            if field == "id" {
                continue;
            }
            let Some(terms) = framework.categories.get(field) else {
                return Err(DomainError::rule(
                    ErrorCode::errorUnsupportedField,
                    &[&format!("framework.{field}")],
                ));
            };
            for value in values.as_array().into_iter().flatten() {
                let value = value.as_str().unwrap_or_default();
                if !terms.contains(value) {
                    return Err(DomainError::rule(
                        ErrorCode::invalidParameterValue,
                        &[value, &format!("framework.{field}")],
                    ));
                }
            }
        }
        Ok(())
    }

    /// The framework as stored.
    pub fn into_value(self) -> Value {
        Value::Object(self.fields)
    }
}

/// Unknown framework id: `0032`, answered 404 as Sunbird answers it.
pub fn no_framework_found() -> DomainError {
    DomainError::rule(ErrorCode::errorNoFrameworkFound, &[]).with_status(404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ncf() -> Framework {
        Framework::from_read_answer(&json!({
            "result": {"framework": {"identifier": "NCF", "categories": [
                {"code": "board", "terms": [{"identifier": "b1", "name": "CBSE"}, {"name": "ICSE"}]},
                {"code": "medium", "terms": [{"name": "English"}, {"name": "Hindi"}]},
                {"code": "gradeLevel", "terms": [{"name": "Class 1"}]},
                {"code": "subject", "terms": []},
                {"terms": [{"name": "orphan"}]}
            ]}}
        }))
        .expect("a framework")
    }

    fn message(error: DomainError) -> (String, String, u16) {
        match error {
            DomainError::Rule(rule) => (
                rule.code.key().to_string(),
                rule.message.clone(),
                rule.status,
            ),
            other => panic!("not a rule: {other}"),
        }
    }

    fn request(value: Value) -> DomainResult<Option<FrameworkRequest>> {
        parse_request(value.as_object().expect("an object"))
    }

    #[test]
    fn the_read_answer_keeps_categories_with_a_code_and_terms() {
        let framework = ncf();
        assert_eq!(
            framework.categories.keys().collect::<Vec<_>>(),
            ["board", "gradeLevel", "medium"]
        );
        assert!(framework.categories["board"].contains("ICSE"));
        assert_eq!(Framework::from_read_answer(&json!({"result": {}})), None);
        assert_eq!(
            Framework::from_setting(&json!({"board": ["CBSE"]}))
                .map(|f| f.categories["board"].len()),
            Some(1)
        );
        assert_eq!(Framework::from_setting(&json!({"board": [1]})), None);
        assert_eq!(Framework::from_setting(&json!(["board"])), None);
    }

    #[test]
    fn a_string_is_a_one_value_list_and_the_id_is_stored_as_a_list() {
        let parsed = request(json!({"id": "NCF", "board": "CBSE", "medium": ["English", "Hindi"]}))
            .expect("valid")
            .expect("not empty");
        assert_eq!(parsed.id, "NCF");
        parsed.check(&ncf()).expect("known values");
        assert_eq!(
            parsed.into_value(),
            json!({"id": ["NCF"], "board": ["CBSE"], "medium": ["English", "Hindi"]})
        );
        assert_eq!(request(json!({})).expect("empty is fine"), None);
    }

    #[test]
    fn the_id_must_be_one_non_blank_value() {
        for (framework, expected) in [
            (
                json!({"board": ["CBSE"]}),
                "Mandatory parameter framework.id is missing.",
            ),
            (
                json!({"id": []}),
                "Mandatory parameter framework.id is missing.",
            ),
            (
                json!({"id": " "}),
                "Mandatory parameter framework.id is missing.",
            ),
            (
                json!({"id": null}),
                "Mandatory parameter framework.id is missing.",
            ),
            (
                json!({"id": ["a", "b"]}),
                "Parameter framework.id is of invalid size (expected: 1, actual: 2).",
            ),
            (
                json!({"id": 7}),
                "Data type of framework.id should be List.",
            ),
            (
                json!({"id": "NCF", "board": {"x": 1}}),
                "Data type of board should be List.",
            ),
            (
                json!({"id": "NCF", "board": [1]}),
                "Data type of board should be List.",
            ),
        ] {
            let error = request(framework.clone()).expect_err("refused");
            assert_eq!(message(error).1, expected, "{framework}");
        }
    }

    #[test]
    fn fields_and_values_are_checked_against_the_categories() {
        let check = |framework: Value| {
            request(framework)
                .expect("valid shape")
                .expect("not empty")
                .check(&ncf())
                .map_err(message)
        };
        assert_eq!(
            check(json!({"id": "NCF", "board": ["CBSE", "NIOS"]})),
            Err((
                "0017".into(),
                "Invalid value NIOS for parameter framework.board. Please provide a valid value."
                    .into(),
                400
            ))
        );
        assert_eq!(
            check(json!({"id": "NCF", "subject": ["Maths"]})),
            Err((
                "0051".into(),
                "Unsupported field framework.subject.".into(),
                400
            ))
        );
        assert_eq!(check(json!({"id": "NCF", "board": []})), Ok(()));
        assert_eq!(
            message(no_framework_found()),
            ("0032".into(), "No framework found.".into(), 404)
        );
    }
}
