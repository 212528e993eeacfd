//! The request field table: the type, size and character rule of every known field of a request
//! body, on every route, plus the limits every value of a body keeps (strings, lists, nesting).
//!
//! Each route still parses its fields in Sunbird's order (mandatory fields, formats, business
//! rules); this table runs first and refuses what no route could store safely: a wrong type that
//! a route would otherwise drop silently, a 100,000-character name, a NUL or control character,
//! a 10,000-item list or a 100-level object. Errors use Sunbird's codes: `0003` "Data type of
//! {0} should be {1}.", `0058` "Parameter {0} is of invalid size (expected: {1}, actual: {2})."
//! and `0019` "Please provide valid {0}.".

use serde_json::{Map, Value};

use super::{DomainError, DomainResult, ErrorCode};

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One line of text: a string of at most `max` characters, no control character at all.
    Line(usize),
    /// Free text: a string of at most `max` characters; tabs and line breaks allowed.
    Text(usize),
    /// A list of at most `max` items (the route checks what the items are).
    List(usize),
    /// A list of at most `items` items, or one line of at most `chars` characters: `subject`
    /// is a user's list of subjects and an email's subject line.
    ListOrLine { items: usize, chars: usize },
    /// An object of at most `depth` levels (the object itself counts as one).
    Map(usize),
    /// A boolean, or Sunbird's `"true"`/`"false"` strings.
    Bool,
    /// A string of at most `max` characters or a number: organisation types accept the name or
    /// the numeric value.
    NameOrNumber(usize),
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct FieldRule {
    pub field: &'static str,
    pub kind: Kind,
}

const fn rule(field: &'static str, kind: Kind) -> FieldRule {
    FieldRule { field, kind }
}

/// Identifiers: user, organisation, location and setting ids, codes and channels.
const ID: Kind = Kind::Line(128);
/// Names of people, organisations and places.
const NAME: Kind = Kind::Line(256);
/// Short labels: gender, types, versions.
const LABEL: Kind = Kind::Line(64);
/// Addresses of resources (avatars, thumbnails).
const URL: Kind = Kind::Line(2048);

/// Every top-level field a route reads, by name; the same name means the same thing on every
/// route that reads it. The preference fields (`orgId`, `key`, `data`) are not listed: Sunbird
/// names them `request.<field>` with Java type names in its messages, which that route keeps;
/// they still keep the limits of every value.
pub const FIELDS: &[FieldRule] = &[
    // Users.
    rule("firstName", NAME),
    rule("lastName", NAME),
    rule("userName", NAME),
    rule("loginId", Kind::Line(320)),
    rule("email", Kind::Line(320)),
    rule("recoveryEmail", Kind::Line(320)),
    rule("phone", Kind::Line(32)),
    rule("recoveryPhone", Kind::Line(32)),
    rule("countryCode", Kind::Line(8)),
    rule("password", Kind::Line(128)),
    rule("dob", Kind::Line(16)),
    rule("gender", LABEL),
    rule("language", Kind::List(32)),
    rule("avatar", URL),
    rule("thumbnail", URL),
    rule("profileSummary", Kind::Text(4096)),
    rule("location", NAME),
    rule("grade", Kind::List(64)),
    rule(
        "subject",
        Kind::ListOrLine {
            items: 64,
            chars: 998,
        },
    ),
    rule("webPages", Kind::List(32)),
    rule("userType", LABEL),
    rule("userSubType", LABEL),
    rule("profileUserType", Kind::Map(2)),
    rule("profileUserTypes", Kind::List(16)),
    rule("profileLocation", Kind::List(16)),
    rule("profileDetails", Kind::Map(6)),
    rule("framework", Kind::Map(3)),
    rule("jobProfile", Kind::List(64)),
    rule("education", Kind::List(64)),
    rule("skills", Kind::List(128)),
    rule("badgeAssertions", Kind::List(128)),
    rule("address", Kind::List(16)),
    rule("tncAcceptedVersion", LABEL),
    rule("managedBy", ID),
    rule("roles", Kind::List(64)),
    rule("externalIds", Kind::List(32)),
    rule("emailVerified", Kind::Bool),
    rule("phoneVerified", Kind::Bool),
    rule("userId", ID),
    rule("userIds", Kind::List(1000)),
    // Organisations.
    rule("organisationId", ID),
    rule("orgName", NAME),
    rule("channel", ID),
    rule("description", Kind::Text(4096)),
    rule("isTenant", Kind::Bool),
    rule("isSSOEnabled", Kind::Bool),
    rule("organisationType", Kind::NameOrNumber(64)),
    rule("organisationSubType", Kind::NameOrNumber(64)),
    rule("rootOrgId", ID),
    rule("registeredOrgId", ID),
    rule("license", Kind::Line(256)),
    rule("externalId", Kind::Line(256)),
    rule("provider", ID),
    rule("idType", ID),
    rule("homeUrl", URL),
    rule("imgUrl", URL),
    rule("orgLocation", Kind::List(32)),
    rule("locationIds", Kind::List(32)),
    rule("locationCode", Kind::List(32)),
    rule("signKeys", Kind::List(16)),
    rule("encKeys", Kind::List(16)),
    // Locations.
    rule("name", NAME),
    rule("code", ID),
    rule("type", LABEL),
    rule("parentId", ID),
    rule("parentCode", ID),
    // Settings, preferences, data sync.
    rule("id", ID),
    rule("field", ID),
    rule("value", Kind::Text(16_384)),
    rule("objectType", LABEL),
    rule("operationType", LABEL),
    rule("objectIds", Kind::List(1000)),
    rule("operation", LABEL),
];

/// The longest string accepted anywhere in a body, known field or not.
pub const MAX_STRING_CHARS: usize = 65_536;
/// The longest list accepted anywhere in a body.
pub const MAX_LIST_ITEMS: usize = 1000;
/// The deepest nesting accepted in a body: the `request` object is level one.
pub const MAX_DEPTH: usize = 12;

fn rule_of(field: &str) -> Option<Kind> {
    FIELDS.iter().find(|r| r.field == field).map(|r| r.kind)
}

fn size_error(field: &str, max: usize, actual: usize) -> DomainError {
    DomainError::rule(
        ErrorCode::errorInvalidParameterSize,
        &[field, &max.to_string(), &actual.to_string()],
    )
}

fn invalid(field: &str) -> DomainError {
    DomainError::rule(ErrorCode::invalidParameter, &[field])
}

/// Control characters refused in free text: all but tab, line feed and carriage return.
fn bad_in_text(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

fn check_string(field: &str, text: &str, max: usize, line: bool) -> DomainResult<()> {
    let chars = text.chars().count();
    if chars > max {
        return Err(size_error(field, max, chars));
    }
    let refused = if line {
        text.chars()
            .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    } else {
        text.chars().any(bad_in_text)
    };
    if refused {
        return Err(invalid(field));
    }
    Ok(())
}

/// The limits every value keeps, reported under the top-level `field` it sits in.
fn check_nested(field: &str, value: &Value, depth: usize, max_depth: usize) -> DomainResult<()> {
    match value {
        Value::String(text) => check_string(field, text, MAX_STRING_CHARS, false),
        Value::Array(items) => {
            if depth > max_depth {
                return Err(size_error(field, max_depth, depth));
            }
            if items.len() > MAX_LIST_ITEMS {
                return Err(size_error(field, MAX_LIST_ITEMS, items.len()));
            }
            items
                .iter()
                .try_for_each(|item| check_nested(field, item, depth + 1, max_depth))
        }
        Value::Object(entries) => {
            if depth > max_depth {
                return Err(size_error(field, max_depth, depth));
            }
            if entries.len() > MAX_LIST_ITEMS {
                return Err(size_error(field, MAX_LIST_ITEMS, entries.len()));
            }
            entries.iter().try_for_each(|(key, item)| {
                check_string(field, key, 256, true)?;
                check_nested(field, item, depth + 1, max_depth)
            })
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn check_known(field: &str, kind: Kind, value: &Value) -> DomainResult<()> {
    match (kind, value) {
        (_, Value::Null) => Ok(()),
        (Kind::Line(max), Value::String(text)) => check_string(field, text, max, true),
        (Kind::Text(max), Value::String(text)) => check_string(field, text, max, false),
        (Kind::NameOrNumber(max), Value::String(text)) => check_string(field, text, max, true),
        (Kind::NameOrNumber(_), Value::Number(_)) => Ok(()),
        (Kind::Line(_) | Kind::Text(_) | Kind::NameOrNumber(_), _) => {
            Err(DomainError::data_type(field, "String"))
        }
        (Kind::List(max), Value::Array(items)) => {
            if items.len() > max {
                return Err(size_error(field, max, items.len()));
            }
            check_nested(field, value, 2, MAX_DEPTH)
        }
        (Kind::List(_), _) => Err(DomainError::data_type(field, "List")),
        (Kind::ListOrLine { chars, .. }, Value::String(text)) => {
            check_string(field, text, chars, true)
        }
        (Kind::ListOrLine { items, .. }, Value::Array(_)) => {
            check_known(field, Kind::List(items), value)
        }
        (Kind::ListOrLine { .. }, _) => Err(DomainError::data_type(field, "List")),
        (Kind::Map(depth), Value::Object(_)) => check_nested(field, value, 1, depth),
        (Kind::Map(_), _) => Err(DomainError::data_type(field, "Map")),
        (Kind::Bool, Value::Bool(_)) => Ok(()),
        (Kind::Bool, Value::String(text))
            if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false") =>
        {
            Ok(())
        }
        (Kind::Bool, _) => Err(DomainError::data_type(field, "Boolean")),
    }
}

/// Checks a request body against the table, field by field in the body's order: known fields by
/// their rule, every other field by the limits all values keep.
pub fn check_request(body: &Map<String, Value>) -> DomainResult<()> {
    for (field, value) in body {
        check_string("request", field, 256, true)?;
        match rule_of(field) {
            Some(kind) => check_known(field, kind, value)?,
            None => check_nested(field, value, 2, MAX_DEPTH)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: Value) -> Option<String> {
        let Value::Object(body) = body else {
            unreachable!("bodies are objects")
        };
        check_request(&body).err().map(|e| match e {
            DomainError::Rule(rule) => rule.message,
            other => other.to_string(),
        })
    }

    fn nested(depth: usize) -> Value {
        (1..depth).fold(json!({"leaf": 1}), |inner, _| json!({ "a": inner }))
    }

    #[test]
    fn every_field_has_one_rule() {
        for (index, rule) in FIELDS.iter().enumerate() {
            assert!(
                FIELDS[index + 1..].iter().all(|r| r.field != rule.field),
                "{} twice",
                rule.field
            );
        }
    }

    #[test]
    fn types_sizes_and_characters_are_refused_with_sunbirds_messages() {
        let long = "x".repeat(100_000);
        let cases = [
            (
                json!({"profileUserTypes": 12345}),
                "Data type of profileUserTypes should be List.",
            ),
            (
                json!({"countryCode": {"a": 1}}),
                "Data type of countryCode should be String.",
            ),
            (
                json!({"rootOrgId": {"a": 1}}),
                "Data type of rootOrgId should be String.",
            ),
            (
                json!({"framework": []}),
                "Data type of framework should be Map.",
            ),
            (
                json!({"isTenant": "yes"}),
                "Data type of isTenant should be Boolean.",
            ),
            (
                json!({"firstName": long}),
                "Parameter firstName is of invalid size (expected: 256, actual: 100000).",
            ),
            (
                json!({"userName": "ab\u{0}cd"}),
                "Please provide valid userName.",
            ),
            (
                json!({"orgName": "a\u{1f}b"}),
                "Please provide valid orgName.",
            ),
            (
                json!({"lastName": "a\nb"}),
                "Please provide valid lastName.",
            ),
            (
                json!({"webPages": vec![json!("x"); 10_000]}),
                "Parameter webPages is of invalid size (expected: 32, actual: 10000).",
            ),
            (
                json!({"framework": nested(120)}),
                "Parameter framework is of invalid size (expected: 3, actual: 4).",
            ),
            (
                json!({"unknownField": nested(120)}),
                "Parameter unknownField is of invalid size (expected: 12, actual: 13).",
            ),
            (
                json!({"unknownField": "a\u{0}"}),
                "Please provide valid unknownField.",
            ),
            (json!({"a\u{0}": 1}), "Please provide valid request."),
        ];
        for (body, expected) in cases {
            assert_eq!(message(body.clone()).as_deref(), Some(expected), "{body}");
        }
    }

    #[test]
    fn ordinary_values_pass() {
        let body = json!({
            "firstName": "Zoë",
            "profileSummary": "line one\nline two\ttabbed",
            "isTenant": "true",
            "organisationType": 5,
            "framework": {"board": ["CBSE"], "medium": ["English"]},
            "roles": ["PUBLIC", {"role": "ORG_ADMIN", "scope": [{"organisationId": "o1"}]}],
            "value": "{\n  \"json\": true\n}",
            "filters": {"$or": {"firstName": ["a", "b"]}},
            "managedBy": null,
        });
        assert_eq!(message(body), None);
    }
}
