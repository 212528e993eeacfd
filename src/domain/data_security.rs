//! The `dataSecurityPolicy` tenant preference: security levels and the rules a policy must
//! follow, on its own and against the system default (the policy of organisation `default`).
//!
//! A policy is `{"level": "<LEVEL>", "job": {"<jobName>": {"level": "<LEVEL>", ...}, ...}, ...}`;
//! other keys are free-form. The checks and their order are Sunbird's
//! (`TenantPreferenceService.validateDataSecurityPolicyConfig` and
//! `validateTenantDataSecurityPolicy`), with its crashes answered as client errors: an unknown
//! top-level level (a 500 there) is `invalidSecurityLevel`, a missing or malformed `job` map is
//! `invalidRequestData`.

use serde_json::{Map, Value};

use super::{DomainError, DomainResult, ErrorCode, RuleError};

/// Sunbird's `DataSecurityLevelsEnum`, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataSecurityLevel {
    PlainDataset = 1,
    PasswordProtectedDataset = 2,
    TextKeyEncryptedDataset = 3,
    PublicKeyEncryptedDataset = 4,
}

impl DataSecurityLevel {
    /// The enum constant name, matched exactly as Java's `Enum.valueOf` does.
    pub fn parse(name: &str) -> Option<DataSecurityLevel> {
        match name {
            "PLAIN_DATASET" => Some(DataSecurityLevel::PlainDataset),
            "PASSWORD_PROTECTED_DATASET" => Some(DataSecurityLevel::PasswordProtectedDataset),
            "TEXT_KEY_ENCRYPTED_DATASET" => Some(DataSecurityLevel::TextKeyEncryptedDataset),
            "PUBLIC_KEY_ENCRYPTED_DATASET" => Some(DataSecurityLevel::PublicKeyEncryptedDataset),
            _ => None,
        }
    }

    pub fn value(self) -> u8 {
        self as u8
    }
}

fn invalid_request() -> DomainError {
    DomainError::rule(ErrorCode::invalidRequestData, &[])
}

/// How a level value is named in messages: the string itself, or the JSON text of anything else.
fn level_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A present level value, parsed; `None` when the key is absent or null.
fn level_of(config: &Map<String, Value>) -> Option<&Value> {
    config.get("level").filter(|value| !value.is_null())
}

fn parse_level(value: &Value) -> Option<DataSecurityLevel> {
    value.as_str().and_then(DataSecurityLevel::parse)
}

fn invalid_job_level(level: &Value, job: &str) -> DomainError {
    DomainError::rule(ErrorCode::invalidSecurityLevel, &[&level_text(level), job])
}

fn lower_than(level: &Value, job: &str, floor: &str) -> DomainError {
    DomainError::rule(
        ErrorCode::invalidSecurityLevelLower,
        &[&level_text(level), job, floor],
    )
}

/// The `job` map of a policy; missing or malformed is `invalidRequestData`.
fn jobs_of(policy: &Map<String, Value>) -> DomainResult<&Map<String, Value>> {
    policy
        .get("job")
        .and_then(Value::as_object)
        .ok_or_else(invalid_request)
}

fn job_config<'a>(jobs: &'a Map<String, Value>, job: &str) -> DomainResult<&'a Map<String, Value>> {
    jobs.get(job)
        .and_then(Value::as_object)
        .ok_or_else(invalid_request)
}

/// The policy's own consistency: a valid top-level level, and every job with a valid level not
/// lower than it.
pub fn validate_policy(policy: &Map<String, Value>) -> DomainResult<DataSecurityLevel> {
    let Some(tenant_value) = level_of(policy) else {
        return Err(invalid_request());
    };
    let Some(tenant_level) = parse_level(tenant_value) else {
        // Sunbird crashes here (`Enum.valueOf`); the template names a job, so the message is
        // worded for the policy itself.
        return Err(DomainError::Rule(RuleError {
            code: ErrorCode::invalidSecurityLevel,
            message: format!(
                "Invalid data security level {} provided. Please provide a valid data security level.",
                level_text(tenant_value)
            ),
            status: ErrorCode::invalidSecurityLevel.status(),
            result: Map::new(),
            bare: false,
            legacy: None,
        }));
    };
    let tenant_text = level_text(tenant_value);
    let jobs = jobs_of(policy)?;
    for job in jobs.keys() {
        let config = job_config(jobs, job)?;
        let Some(job_value) = level_of(config) else {
            return Err(invalid_request());
        };
        let Some(job_level) = parse_level(job_value) else {
            return Err(invalid_job_level(job_value, job));
        };
        if job_level < tenant_level {
            return Err(lower_than(job_value, job, &tenant_text));
        }
    }
    Ok(tenant_level)
}

/// A tenant's policy against the system default: the tenant level not below the default's, and
/// every job known to the default with a level not below the default job's level. `policy` has
/// passed [`validate_policy`]; a malformed default is `invalidRequestData`, as Sunbird answers
/// its null-pointer failures.
pub fn validate_against_default(
    policy: &Map<String, Value>,
    default: &Map<String, Value>,
) -> DomainResult<()> {
    let system_value = level_of(default).ok_or_else(invalid_request)?;
    let system_level = parse_level(system_value).ok_or_else(invalid_request)?;
    let default_jobs = jobs_of(default)?;
    let mut default_levels: Vec<(&str, &Value, DataSecurityLevel)> = Vec::new();
    for job in default_jobs.keys() {
        let value = level_of(job_config(default_jobs, job)?).ok_or_else(invalid_request)?;
        let level = parse_level(value).ok_or_else(invalid_request)?;
        default_levels.push((job.as_str(), value, level));
    }

    let tenant_value = level_of(policy).ok_or_else(invalid_request)?;
    let tenant_level = parse_level(tenant_value).ok_or_else(invalid_request)?;
    if tenant_level < system_level {
        return Err(DomainError::rule(
            ErrorCode::invalidTenantSecurityLevelLower,
            &[&level_text(tenant_value), &level_text(system_value)],
        ));
    }
    let jobs = jobs_of(policy)?;
    for job in jobs.keys() {
        let Some((_, default_value, default_level)) =
            default_levels.iter().find(|(name, _, _)| *name == job)
        else {
            return Err(DomainError::rule(
                ErrorCode::defaultSecurityLevelConfigMissing,
                &[job],
            ));
        };
        let Some(job_value) = level_of(job_config(jobs, job)?) else {
            return Err(invalid_request());
        };
        let Some(job_level) = parse_level(job_value) else {
            return Err(invalid_job_level(job_value, job));
        };
        if job_level < *default_level {
            return Err(lower_than(job_value, job, &level_text(default_value)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    fn message(error: DomainError) -> (ErrorCode, String) {
        match error {
            DomainError::Rule(rule) => (rule.code, rule.message),
            other => panic!("not a rule: {other}"),
        }
    }

    #[test]
    fn levels_are_ordered_by_their_sunbird_values() {
        assert_eq!(
            DataSecurityLevel::parse("PLAIN_DATASET").map(DataSecurityLevel::value),
            Some(1)
        );
        assert_eq!(
            DataSecurityLevel::parse("PUBLIC_KEY_ENCRYPTED_DATASET").map(DataSecurityLevel::value),
            Some(4)
        );
        assert!(DataSecurityLevel::PlainDataset < DataSecurityLevel::TextKeyEncryptedDataset);
        assert_eq!(DataSecurityLevel::parse("plain_dataset"), None);
    }

    #[test]
    fn a_policy_is_checked_against_itself() {
        let good = map(json!({"level": "PLAIN_DATASET", "job": {
            "userExport": {"level": "TEXT_KEY_ENCRYPTED_DATASET"}}}));
        assert_eq!(
            validate_policy(&good).expect("valid"),
            DataSecurityLevel::PlainDataset
        );

        let (code, _) = message(validate_policy(&map(json!({"job": {}}))).expect_err("no level"));
        assert_eq!(code, ErrorCode::invalidRequestData);

        let (code, text) = message(
            validate_policy(&map(json!({"level": "SECRET", "job": {}}))).expect_err("unknown"),
        );
        assert_eq!(code, ErrorCode::invalidSecurityLevel);
        assert_eq!(
            text,
            "Invalid data security level SECRET provided. Please provide a valid data security level."
        );

        let (code, _) =
            message(validate_policy(&map(json!({"level": "PLAIN_DATASET"}))).expect_err("no jobs"));
        assert_eq!(code, ErrorCode::invalidRequestData);

        let (code, _) = message(
            validate_policy(&map(json!({"level": "PLAIN_DATASET", "job": {"a": {}}})))
                .expect_err("job without level"),
        );
        assert_eq!(code, ErrorCode::invalidRequestData);

        let (code, text) = message(
            validate_policy(&map(
                json!({"level": "PLAIN_DATASET", "job": {"a": {"level": 3}}}),
            ))
            .expect_err("job level not a string"),
        );
        assert_eq!(code, ErrorCode::invalidSecurityLevel);
        assert_eq!(
            text,
            "Invalid data security level 3 provided for job a. Please provide a valid data security level."
        );

        let (code, text) = message(
            validate_policy(&map(json!({"level": "TEXT_KEY_ENCRYPTED_DATASET", "job": {
                "a": {"level": "PLAIN_DATASET"}}})))
            .expect_err("job lower than tenant"),
        );
        assert_eq!(code, ErrorCode::invalidSecurityLevelLower);
        assert_eq!(
            text,
            "Invalid data security level PLAIN_DATASET provided for job a. Cannot be set lower than the default security level: TEXT_KEY_ENCRYPTED_DATASET"
        );
    }

    #[test]
    fn a_tenant_policy_is_checked_against_the_default() {
        let default = map(json!({"level": "PASSWORD_PROTECTED_DATASET", "job": {
            "userExport": {"level": "TEXT_KEY_ENCRYPTED_DATASET"},
            "progressExport": {"level": "PASSWORD_PROTECTED_DATASET"}}}));
        let ok = map(json!({"level": "PASSWORD_PROTECTED_DATASET", "job": {
            "userExport": {"level": "PUBLIC_KEY_ENCRYPTED_DATASET"}}}));
        validate_against_default(&ok, &default).expect("valid");

        let (code, text) = message(
            validate_against_default(&map(json!({"level": "PLAIN_DATASET", "job": {}})), &default)
                .expect_err("tenant lower"),
        );
        assert_eq!(code, ErrorCode::invalidTenantSecurityLevelLower);
        assert_eq!(
            text,
            "Tenant level's security PLAIN_DATASET cannot be lower than system level's security PASSWORD_PROTECTED_DATASET. Please provide a valid data security level."
        );

        let (code, text) = message(
            validate_against_default(
                &map(json!({"level": "PASSWORD_PROTECTED_DATASET", "job": {
                    "other": {"level": "PLAIN_DATASET"}}})),
                &default,
            )
            .expect_err("unknown job"),
        );
        assert_eq!(code, ErrorCode::defaultSecurityLevelConfigMissing);
        assert_eq!(
            text,
            "Default data security policy settings is missing for the job: other"
        );

        let (code, text) = message(
            validate_against_default(
                &map(json!({"level": "PASSWORD_PROTECTED_DATASET", "job": {
                    "userExport": {"level": "PASSWORD_PROTECTED_DATASET"}}})),
                &default,
            )
            .expect_err("job lower than default job"),
        );
        assert_eq!(code, ErrorCode::invalidSecurityLevelLower);
        assert_eq!(
            text,
            "Invalid data security level PASSWORD_PROTECTED_DATASET provided for job userExport. Cannot be set lower than the default security level: TEXT_KEY_ENCRYPTED_DATASET"
        );

        let (code, _) = message(
            validate_against_default(&ok, &map(json!({"level": "PLAIN_DATASET"})))
                .expect_err("default without jobs"),
        );
        assert_eq!(code, ErrorCode::invalidRequestData);
    }
}
