//! The system settings whose values other rules rely on, and the shape each must keep. A set
//! that breaks one is refused, so a typo cannot leave every organisation create refusing every
//! type, or users created under a root organisation that does not exist.

use serde_json::Value;

use super::org::{CUSTODIAN_ORG_CHANNEL, CUSTODIAN_ORG_ID};
use super::{DomainError, DomainResult, ErrorCode};

/// What a setting's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingShape {
    /// The id of an existing tenant organisation (checked against the store by the service).
    TenantId,
    /// The channel of the custodian organisation (checked against the store by the service).
    CustodianChannel,
    /// `{"fields": [{"name": <text>, "value": <integer>, ...}, ...]}`, at least one entry.
    OrgTypes,
    /// `{"latestVersion": <v>, <v>: {"url": <text>}, ...}`.
    Terms,
    /// Any JSON object.
    JsonObject,
    /// `true` or `false`.
    Flag,
    /// Free text.
    Text,
}

/// The shape of setting `id`.
pub fn shape_of(id: &str) -> SettingShape {
    match id {
        CUSTODIAN_ORG_ID => SettingShape::TenantId,
        CUSTODIAN_ORG_CHANNEL => SettingShape::CustodianChannel,
        "orgTypeConfig" => SettingShape::OrgTypes,
        "tncConfig" | "orgAdminTnc" | "groupsTnc" | "reportViewerTnc" => SettingShape::Terms,
        "userProfileConfig" | "orgProfileConfig" => SettingShape::JsonObject,
        "phoneUnique" | "emailUnique" => SettingShape::Flag,
        _ => SettingShape::Text,
    }
}

fn refused(id: &str, value: &str, valid: &str) -> DomainError {
    let shown: String = value.chars().take(64).collect();
    DomainError::rule(ErrorCode::invalidValue, &[id, &shown, valid])
}

/// Checks what can be checked without the store: JSON shapes and flags.
pub fn check_shape(id: &str, value: &str) -> DomainResult<()> {
    let object = || match serde_json::from_str::<Value>(value) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    };
    match shape_of(id) {
        SettingShape::TenantId | SettingShape::CustodianChannel | SettingShape::Text => Ok(()),
        SettingShape::Flag => match value {
            "true" | "false" => Ok(()),
            _ => Err(refused(id, value, "true, false")),
        },
        SettingShape::JsonObject => object()
            .map(drop)
            .ok_or_else(|| refused(id, value, "a JSON object")),
        SettingShape::OrgTypes => {
            let valid =
                "a JSON object whose fields list has entries with a name and an integer value";
            let fields = object()
                .and_then(|o| o.get("fields").and_then(Value::as_array).cloned())
                .filter(|fields| !fields.is_empty())
                .ok_or_else(|| refused(id, value, valid))?;
            let well_formed = fields.iter().all(|field| {
                field
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| !name.trim().is_empty())
                    && field.get("value").and_then(Value::as_i64).is_some()
            });
            if well_formed {
                Ok(())
            } else {
                Err(refused(id, value, valid))
            }
        }
        SettingShape::Terms => {
            let valid = "a JSON object with latestVersion and a url for that version";
            let terms = object().ok_or_else(|| refused(id, value, valid))?;
            let holds = terms
                .get("latestVersion")
                .and_then(Value::as_str)
                .and_then(|version| terms.get(version))
                .and_then(|entry| entry.get("url"))
                .and_then(Value::as_str)
                .is_some_and(|url| !url.trim().is_empty());
            if holds {
                Ok(())
            } else {
                Err(refused(id, value, valid))
            }
        }
    }
}

/// The refusal of a custodian setting that names no tenant organisation.
pub fn not_a_tenant(id: &str, value: &str) -> DomainError {
    match shape_of(id) {
        SettingShape::CustodianChannel => refused(
            id,
            value,
            "the channel of the custodian organisation (set custodianOrgId to move it)",
        ),
        _ => refused(id, value, "the id of an active tenant organisation"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, value: &str) -> Option<String> {
        check_shape(id, value).err().map(|e| match e {
            DomainError::Rule(rule) => rule.message,
            other => other.to_string(),
        })
    }

    #[test]
    fn shapes_are_checked() {
        assert_eq!(
            message("orgTypeConfig", "not json {").as_deref(),
            Some(
                "Invalid orgTypeConfig: not json {. Valid values are: a JSON object whose fields list has entries with a name and an integer value."
            )
        );
        assert!(message("orgTypeConfig", r#"{"fields": []}"#).is_some());
        assert!(message("orgTypeConfig", r#"{"fields": [{"name": "School"}]}"#).is_some());
        assert_eq!(
            message(
                "orgTypeConfig",
                r#"{"fields": [{"name": "School", "value": 2}]}"#
            ),
            None
        );
        assert!(
            message(
                "tncConfig",
                r#"{"latestVersion": "v2", "v1": {"url": "u"}}"#
            )
            .is_some()
        );
        assert_eq!(
            message(
                "tncConfig",
                r#"{"latestVersion": "v2", "v2": {"url": "https://x.test/t"}}"#
            ),
            None
        );
        assert!(message("userProfileConfig", "{{{").is_some());
        assert!(message("userProfileConfig", "[1]").is_some());
        assert_eq!(message("userProfileConfig", "{}"), None);
        assert!(message("phoneUnique", "yes").is_some());
        assert_eq!(message("phoneUnique", "false"), None);
        assert_eq!(message("anyOtherSetting", "{{{"), None);
        let long = "x".repeat(1000);
        let shown = message("userProfileConfig", &long).expect("refused");
        assert!(shown.len() < 200, "{shown}");
    }
}
