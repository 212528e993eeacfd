//! Bulk uploads (reference §8.12): a CSV of users parsed into rows before anything is written,
//! one process row (Sunbird `bulk_upload_process`) and a task row per CSV row
//! (`bulk_upload_process_task`), each row's outcome, and the status as Sunbird renders it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{DomainError, DomainResult, ErrorCode};

/// Sunbird's `ProjectUtil.BulkProcessStatus`, for processes and tasks alike.
pub const STATUS_NEW: i64 = 0;
pub const STATUS_IN_PROGRESS: i64 = 1;
pub const STATUS_COMPLETED: i64 = 3;
pub const STATUS_FAILED: i64 = 9;

/// What a process loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectType {
    User,
    Organisation,
    Location,
}

impl ObjectType {
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::User => "user",
            ObjectType::Organisation => "organisation",
            ObjectType::Location => "location",
        }
    }
}

/// One `bulk_upload_process` row, by process id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessRecord {
    pub id: String,
    pub object_type: ObjectType,
    pub status: i64,
    /// The uploader: every row runs with their rights.
    pub uploaded_by: String,
    /// The uploader's root organisation (Sunbird's `organisationId` of the process).
    pub organisation_id: String,
    /// The uploader's channel, in which `orgExternalId` values are looked up.
    pub channel: String,
    pub task_count: u64,
    #[serde(default)]
    pub success_count: u64,
    #[serde(default)]
    pub failure_count: u64,
    pub created_on: String,
    #[serde(default)]
    pub process_start_time: Option<String>,
    #[serde(default)]
    pub process_end_time: Option<String>,
}

crate::domain::plain_record!(ProcessRecord);

impl ProcessRecord {
    pub fn is_done(&self) -> bool {
        matches!(self.status, STATUS_COMPLETED | STATUS_FAILED)
    }
}

/// One `bulk_upload_process_task` row, `processId␟sequence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub process_id: String,
    /// From 1, in CSV order.
    pub sequence_id: u64,
    pub status: i64,
    /// The row as a JSON object (field -> value), sealed with the PII key (bound to the key).
    pub data: String,
    /// The outcome, sealed the same way once the row ran: the row with `operation` and the new
    /// `id` (success), or with `operation` and `err_msg` (failure).
    #[serde(default)]
    pub result: String,
    pub created_on: String,
    #[serde(default)]
    pub last_updated_on: Option<String>,
}

crate::domain::plain_record!(TaskRecord);

/// The key of the task `sequence` of `process`: zero-padded, so a prefix scan walks the
/// tasks in CSV order.
pub fn task_key(process: &str, sequence: u64) -> String {
    format!("{process}\u{1f}{sequence:07}")
}

/// Which CSV headers a load takes (case-insensitive), the field each one names, and the
/// fields every row must fill.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    /// `(header, field)`: a display name (`EMAIL`) or the field name itself (`email`).
    pub headers: Vec<(String, String)>,
    pub mandatory: Vec<String>,
}

/// Sunbird's built-in user columns (`DataCacheHandler.bulkUserAllowedFields`), for an
/// installation without `userProfileConfig.csv`; no mandatory column.
const BUILT_IN_USER_FIELDS: [&str; 17] = [
    "firstName",
    "lastName",
    "phone",
    "countryCode",
    "email",
    "userName",
    "roles",
    "position",
    "location",
    "dob",
    "language",
    "profileSummary",
    "subject",
    "externalIdProvider",
    "externalId",
    "externalIdType",
    "externalIds",
];

/// Sunbird's built-in organisation columns, for an installation without
/// `orgProfileConfig.csv`; no mandatory column.
const BUILT_IN_ORG_FIELDS: [&str; 11] = [
    "orgName",
    "channel",
    "isTenant",
    "provider",
    "externalId",
    "description",
    "homeUrl",
    "organisationType",
    "contactDetail",
    "locationId",
    "locationCode",
];

impl Columns {
    /// From the `csv` object of `userProfileConfig`
    /// (`{supportedColumns: {display: field}, mandatoryColumns: [field]}`), or the built-in
    /// user list without one.
    pub fn for_users(config: Option<&Value>) -> Columns {
        Columns::from_config(config, &BUILT_IN_USER_FIELDS)
    }

    /// The same from `orgProfileConfig`'s `csv`, or the built-in organisation list.
    pub fn for_orgs(config: Option<&Value>) -> Columns {
        Columns::from_config(config, &BUILT_IN_ORG_FIELDS)
    }

    fn from_config(config: Option<&Value>, built_in: &[&str]) -> Columns {
        let Some(supported) = config
            .and_then(|csv| csv.get("supportedColumns"))
            .and_then(Value::as_object)
        else {
            return Columns {
                headers: built_in
                    .iter()
                    .map(|field| (field.to_string(), field.to_string()))
                    .collect(),
                mandatory: Vec::new(),
            };
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for (display, field) in supported {
            if let Some(field) = field.as_str() {
                headers.push((display.clone(), field.to_string()));
                headers.push((field.to_string(), field.to_string()));
            }
        }
        let mandatory = config
            .and_then(|csv| csv.get("mandatoryColumns"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|field| field.as_str().map(str::to_string))
            .collect();
        Columns { headers, mandatory }
    }

    fn field_of(&self, header: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(header))
            .map(|(_, field)| field.as_str())
    }

    fn allowed(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &self.headers {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names.join(", ")
    }
}

fn csv_error() -> DomainError {
    DomainError::rule(ErrorCode::invalidRequestData, &[])
}

/// The rows of a CSV, checked before anything is written: a header (trimmed, matched without
/// regard to case; an unknown one is `0020` "Invalid column: ..."), every mandatory column
/// present (`0030`), at least one row (`0010` "CSV file is Empty."), at most `max_rows` rows
/// (`0007` "Maximum upload data size should be N"). Blank lines are skipped; each row maps
/// field -> trimmed value, blank cells left out.
pub fn parse_csv(
    bytes: &[u8],
    columns: &Columns,
    max_rows: usize,
) -> DomainResult<Vec<Map<String, Value>>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut records = reader.records();
    let mut header: Option<Vec<String>> = None;
    for record in records.by_ref() {
        let record = record.map_err(|_| csv_error())?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        header = Some(record.iter().map(str::to_string).collect());
        break;
    }
    let Some(header) = header else {
        return Err(DomainError::rule(ErrorCode::csvFileEmpty, &[]));
    };
    let mut fields = Vec::with_capacity(header.len());
    for name in &header {
        let field = columns.field_of(name).ok_or_else(|| {
            DomainError::rule(ErrorCode::invalidColumns, &[name, &columns.allowed()])
        })?;
        fields.push(field.to_string());
    }
    if let Some(missing) = columns.mandatory.iter().find(|m| !fields.contains(m)) {
        return Err(DomainError::mandatory_missing(missing));
    }
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|_| csv_error())?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        if rows.len() == max_rows {
            return Err(DomainError::rule(
                ErrorCode::dataSizeError,
                &[&max_rows.to_string()],
            ));
        }
        let mut row = Map::new();
        for (field, value) in fields.iter().zip(record.iter()) {
            if !value.is_empty() {
                row.insert(field.clone(), json!(value));
            }
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(DomainError::rule(ErrorCode::csvFileEmpty, &[]));
    }
    Ok(rows)
}

/// A comma-separated cell (`ROLES`, `BLOCK CODE`) as its trimmed, non-blank items.
pub fn cell_list(cell: &str) -> Vec<String> {
    cell.split(',')
        .map(|item| item.trim().to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

/// The mandatory field a row leaves blank, if any (a failure of that row only).
pub fn missing_field<'a>(row: &Map<String, Value>, columns: &'a Columns) -> Option<&'a str> {
    columns
        .mandatory
        .iter()
        .find(|field| !row.contains_key(field.as_str()))
        .map(String::as_str)
}

/// A value of a result as a spreadsheet cannot run it: a text starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return gets a leading `'`.
pub fn escape_formula(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    }
}

/// Every string in `value`, escaped with [`escape_formula`].
pub fn escape_formulas(value: &mut Value) {
    match value {
        Value::String(text) => *text = escape_formula(text),
        Value::Array(items) => items.iter_mut().for_each(escape_formulas),
        Value::Object(map) => map.values_mut().for_each(escape_formulas),
        _ => {}
    }
}

/// The status as `/v1/upload/status` names it, and its message (Sunbird: `COMPLETED`, `IN
/// PROGRESS`, else `NOT STARTED`; "Operation is <status, lower case>.").
pub fn status_text(status: i64) -> (&'static str, &'static str) {
    match status {
        STATUS_COMPLETED => ("COMPLETED", "Operation is completed."),
        STATUS_IN_PROGRESS => ("IN PROGRESS", "Operation is in progress."),
        STATUS_FAILED => ("FAILED", "Operation is failed."),
        _ => ("NOT STARTED", "Operation is not started."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Columns {
        Columns::for_users(Some(&json!({
            "supportedColumns": {"NAME": "firstName", "EMAIL": "email", "ROLES": "roles"},
            "mandatoryColumns": ["firstName"]
        })))
    }

    fn message(error: DomainError) -> String {
        match error {
            DomainError::Rule(rule) => format!("{} {}", rule.code.key(), rule.message),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn headers_match_without_case_and_blank_cells_are_left_out() {
        let rows = parse_csv(
            b" name ,Email,roles\nAsha, asha@x.test ,\n\n,,\nRavi,,\"PUBLIC, BOOK_CREATOR\"\n",
            &columns(),
            10,
        )
        .expect("rows");
        assert_eq!(
            rows,
            vec![
                json!({"firstName": "Asha", "email": "asha@x.test"})
                    .as_object()
                    .cloned()
                    .unwrap(),
                json!({"firstName": "Ravi", "roles": "PUBLIC, BOOK_CREATOR"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ]
        );
    }

    #[test]
    fn a_bad_file_is_refused_with_sunbirds_messages() {
        let columns = columns();
        for (csv, expected) in [
            (
                "NAME,PHONE\nAsha,1\n",
                "0020 Invalid column: PHONE. Valid columns are: NAME, firstName, EMAIL, email, ROLES, roles.",
            ),
            (
                "EMAIL\na@x.test\n",
                "0030 Mandatory parameter firstName is missing.",
            ),
            ("", "0010 CSV file is Empty."),
            ("\n\nNAME\n", "0010 CSV file is Empty."),
            (
                "NAME\na\nb\nc\n",
                "0007 Maximum upload data size should be 2",
            ),
        ] {
            let error = parse_csv(csv.as_bytes(), &columns, 2).expect_err(csv);
            assert_eq!(message(error), expected, "{csv:?}");
        }
    }

    #[test]
    fn without_the_setting_the_built_in_fields_are_taken_as_they_are() {
        let columns = Columns::for_users(None);
        assert!(columns.mandatory.is_empty());
        let rows = parse_csv(b"firstName,email\nA,a@x.test\n", &columns, 5).expect("rows");
        assert_eq!(rows[0]["email"], "a@x.test");
        let row = json!({"email": "a"}).as_object().cloned().unwrap();
        assert_eq!(missing_field(&row, &self::columns()), Some("firstName"));
    }

    #[test]
    fn formula_starts_are_escaped_everywhere_in_a_result() {
        let mut result = json!({"a": "=cmd|'/c calc'!A1", "b": ["+1", "-2", "@x", "\tt", "\rr"],
            "c": "plain", "d": 5});
        escape_formulas(&mut result);
        assert_eq!(
            result,
            json!({"a": "'=cmd|'/c calc'!A1", "b": ["'+1", "'-2", "'@x", "'\tt", "'\rr"],
                "c": "plain", "d": 5})
        );
        assert_eq!(task_key("p", 12), "p\u{1f}0000012");
        assert_eq!(status_text(STATUS_NEW).0, "NOT STARTED");
    }
}
