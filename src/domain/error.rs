//! The closed table of Sunbird error codes and the domain error that carries one.
//!
//! A row is: the Sunbird `ResponseCode` name, its `ResponseMessage.Key` (the 4-digit key that goes
//! into `params.err` after `UOS_<OPCODE>`), the HTTP status it is answered with, and the message
//! template with `{0}`-style placeholders. Adding an error is adding one row.

use std::fmt;

macro_rules! error_codes {
    ($($name:ident => $key:literal, $status:literal, $template:literal;)*) => {
        /// Every error the service can answer with (Sunbird `ResponseCode` names).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum ErrorCode {
            $($name,)*
        }

        impl ErrorCode {
            /// The key appended to `UOS_<OPCODE>` in `params.err`. Keys that already carry the
            /// `UOS_` prefix (server error, unauthorised) are used as they are.
            pub fn key(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $key,)*
                }
            }

            /// The HTTP status this error is answered with by default.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $status,)*
                }
            }

            /// The Sunbird message template.
            pub fn template(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $template,)*
                }
            }

            /// The Sunbird `ResponseCode` name.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)*
                }
            }

            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];
        }
    };
}

error_codes! {
    errorParamExists => "0002", 400, "{0} already exists";
    dataTypeError => "0003", 400, "Data type of {0} should be {1}.";
    errorDuplicateEntry => "0004", 400, "Value {0} for {1} is already in use.";
    errorAttributeConflict => "0005", 400, "Either pass attribute {0} or {1} but not both.";
    userAccountlocked => "0006", 400, "User account has been blocked .";
    dataSizeError => "0007", 400, "Maximum upload data size should be {0}";
    userStatusError => "0008", 400, "User is already {0}.";
    dataFormatError => "0009", 400, "Invalid format for given {0}.";
    csvFileEmpty => "0010", 400, "CSV file is Empty.";
    OnlyEmailorPhoneorManagedByRequired => "0011", 400, "Please provide only email or phone or managed by";
    channelRegFailed => "0012", 500, "Channel Registration failed.";
    resourceNotFound => "0013", 404, "Requested {0} resource not found";
    sizeLimitExceed => "0014", 400, "Max allowed size is {0}";
    invalidParameterValue => "0017", 400, "Invalid value {0} for parameter {1}. Please provide a valid value.";
    invalidValue => "0018", 400, "Invalid {0}: {1}. Valid values are: {2}.";
    invalidParameter => "0019", 400, "Please provide valid {0}.";
    invalidColumns => "0020", 400, "Invalid column: {0}. Valid columns are: {1}.";
    invalidRequestParameter => "0021", 400, "Invalid parameter {0} in request.";
    invalidIdentifier => "0023", 400, "Valid identifier is not present in List, Valid supported identifiers are ";
    passwordValidation => "0024", 400, "Password must contain a minimum of 8 characters including numerals, lower and upper case alphabets and special characters";
    invalidCaptcha => "0025", 418, "Captcha is invalid";
    invalidConsentStatus => "0026", 400, "Consent status is invalid";
    invalidOperationName => "0027", 400, "Operation name is invalid. Please provide a valid operation name";
    invalidRequestData => "0028", 400, "Requested data for this operation is not valid.";
    invalidLocationDeleteRequest => "0029", 400, "One or more locations have a parent reference to given location and hence cannot be deleted.";
    mandatoryParamsMissing => "0030", 400, "Mandatory parameter {0} is missing.";
    errorMandatoryParamsEmpty => "0031", 400, "Mandatory parameter {0} is empty.";
    errorNoFrameworkFound => "0032", 400, "No framework found.";
    unupdatableField => "0033", 400, "Update of {0} is not allowed.";
    parentNotAllowed => "0034", 400, "For top level location, {0} is not allowed.";
    missingFileAttachment => "0035", 400, "Missing file attachment.";
    conflictingOrgLocations => "0038", 400, "An organisation cannot be associated to two conflicting locations ({0}, {1}) at {2} level. ";
    rootOrgAssociationError => "0040", 400, "No root organisation found which is associated with given {0}.";
    dependentParameterMissing => "0041", 400, "Missing parameter {0} which is dependent on {1}.";
    externalIdAssignedToOtherUser => "0042", 400, "External ID (id: {0}, idType: {1}, provider: {2}) already assigned to another user.";
    duplicateExternalIds => "0043", 400, "Duplicate external IDs for given idType ({0}) and provider ({1}).";
    emailNotSentRecipientsExceededMaxLimit => "0044", 400, "Email notification is not sent as the number of recipients exceeded configured limit ({0}).";
    parameterMismatch => "0045", 400, "Mismatch of given parameters: {0}.";
    errorUnsupportedField => "0051", 400, "Unsupported field {0}.";
    invalidPropertyError => "0052", 400, "Invalid property {0}.";
    errorInactiveOrg => "0053", 400, "Organisation corresponding to given {0} ({1}) is inactive.";
    errorDuplicateEntries => "0054", 400, "System contains duplicate entry for {0}.";
    errorConflictingValues => "0055", 400, "Conflicting values for {0} ({1}) and {2} ({3}).";
    errorInvalidOTP => "0057", 400, "Invalid OTP.";
    errorInvalidParameterSize => "0058", 400, "Parameter {0} is of invalid size (expected: {1}, actual: {2}).";
    errorRateLimitExceeded => "0059", 429, "Your per {0} rate limit has exceeded. You can retry after some time.";
    errorUserMigrationFailed => "0060", 500, "User migration failed.";
    mandatoryHeaderParamsMissing => "0061", 400, "Mandatory header parameter {0} is missing.";
    recoveryParamsMatchException => "0062", 400, "{0} could not be same as {1}";
    otpVerificationFailed => "0063", 400, "OTP verification failed. Remaining attempt count is {0}.";
    serviceUnAvailable => "0064", 503, "SERVICE UNAVAILABLE";
    managedByNotAllowed => "0065", 400, "managedBy cannot be updated.";
    managedUserLimitExceeded => "0066", 400, "Managed user creation limit exceeded";
    serverError => "UOS_0069", 500, "server error";
    unAuthorized => "UOS_0070", 401, "You are not authorized.";
    errorForbidden => "0071", 403, "You are forbidden from accessing specified resource.";
    invalidObjectType => "0072", 400, "Invalid Object Type.";
    inactiveUser => "0073", 400, "User is Inactive. Please make it active to proceed.";
    extendUserProfileNotLoaded => "0075", 500, "Failed to load extendedProfileSchemaConfig from System_Settings table";
    roleProcessingInvalidOrgError => "0076", 500, "Error while processing assign role. Invalid Organisation Id";
    invalidFileExtension => "0077", 400, "Please provide a valid file. File expected of format: {0}";
    invalidEncryptionFile => "0078", 400, "Please provide valid public key file.";
    invalidSecurityLevel => "0079", 400, "Invalid data security level {0} provided for job {1}. Please provide a valid data security level.";
    invalidSecurityLevelLower => "0080", 400, "Invalid data security level {0} provided for job {1}. Cannot be set lower than the default security level: {2}";
    defaultSecurityLevelConfigMissing => "0081", 400, "Default data security policy settings is missing for the job: {0}";
    invalidTenantSecurityLevelLower => "0082", 400, "Tenant level's security {0} cannot be lower than system level's security {1}. Please provide a valid data security level.";
    cannotDeleteUser => "0083", 400, "User is restricted from deleting account based on roles!";
    cannotTransferOwnership => "0084", 400, "User is restricted from transfering the ownership based on roles!";
    // Not in Sunbird (its keys end at 0084): an actor or engine call that ran past its deadline.
    operationTimeout => "0099", 504, "Request timed out, please retry.";
}

impl ErrorCode {
    /// Fills `{0}`, `{1}`, ... in the template, like Java's `MessageFormat.format`.
    pub fn format(self, args: &[&str]) -> String {
        let mut message = self.template().to_string();
        for (index, arg) in args.iter().enumerate() {
            message = message.replace(&format!("{{{index}}}"), arg);
        }
        message
    }
}

/// A business error: one row of the table, its final message, the status to answer with and,
/// rarely, extra `result` fields (OTP attempts left, for instance).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub code: ErrorCode,
    pub message: String,
    pub status: u16,
    pub result: serde_json::Map<String, serde_json::Value>,
    /// Answered with the bare key (`0028`), without `UOS_` and the operation code: where
    /// Sunbird's actor tells the client its exception itself, no wrapper adds them.
    pub bare: bool,
    /// Sunbird's legacy name answered as `params.err` and `params.status` instead (its
    /// `handleBackwardCompatibility` on a few v1 routes, e.g. `OTP_VERIFICATION_FAILED`).
    pub legacy: Option<&'static str>,
}

/// What services and actors answer with when something is not right.
#[derive(Debug)]
pub enum DomainError {
    /// A Sunbird client error (or a deliberate server error code): answered as is.
    Rule(RuleError),
    /// A backend or actor cannot take the request now; answered 503.
    Unavailable(String),
    /// A call ran past its deadline; answered 504.
    Timeout(String),
    /// A bug or an unexpected backend failure; logged once at the edge, answered 500.
    Internal(anyhow::Error),
}

impl DomainError {
    pub fn rule(code: ErrorCode, args: &[&str]) -> Self {
        DomainError::Rule(RuleError {
            code,
            message: code.format(args),
            status: code.status(),
            result: serde_json::Map::new(),
            bare: false,
            legacy: None,
        })
    }

    /// A rule whose message is not the filled template (Sunbird builds some by hand).
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError::Rule(RuleError {
            code,
            message: message.into(),
            status: code.status(),
            result: serde_json::Map::new(),
            bare: false,
            legacy: None,
        })
    }

    /// The same rule answered with its bare key (see [`RuleError::bare`]).
    pub fn bare(self) -> Self {
        match self {
            DomainError::Rule(mut rule) => {
                rule.bare = true;
                DomainError::Rule(rule)
            }
            other => other,
        }
    }

    /// The same rule answered with Sunbird's legacy name when it is `code` (see
    /// [`RuleError::legacy`]); other errors pass unchanged.
    pub fn legacy_name(self, code: ErrorCode, name: &'static str) -> Self {
        match self {
            DomainError::Rule(mut rule) if rule.code == code => {
                rule.legacy = Some(name);
                DomainError::Rule(rule)
            }
            other => other,
        }
    }

    /// A rule answered with its template as is: Sunbird throws some without filling the
    /// placeholders, and clients of the original see exactly that text.
    pub fn unfilled(code: ErrorCode) -> Self {
        Self::with_message(code, code.template())
    }

    /// The same rule with another HTTP status (Sunbird picks the status at the throw site).
    pub fn with_status(self, status: u16) -> Self {
        match self {
            DomainError::Rule(mut rule) => {
                rule.status = status;
                DomainError::Rule(rule)
            }
            other => other,
        }
    }

    pub fn with_result(self, result: serde_json::Map<String, serde_json::Value>) -> Self {
        match self {
            DomainError::Rule(mut rule) => {
                rule.result = result;
                DomainError::Rule(rule)
            }
            other => other,
        }
    }

    pub fn mandatory_missing(field: &str) -> Self {
        Self::rule(ErrorCode::mandatoryParamsMissing, &[field])
    }

    pub fn data_type(field: &str, expected: &str) -> Self {
        Self::rule(ErrorCode::dataTypeError, &[field, expected])
    }

    pub fn format_error(field: &str) -> Self {
        Self::rule(ErrorCode::dataFormatError, &[field])
    }

    pub fn not_found(resource: &str) -> Self {
        Self::rule(ErrorCode::resourceNotFound, &[resource])
    }

    pub fn already_exists(field: &str) -> Self {
        Self::rule(ErrorCode::errorParamExists, &[field])
    }

    pub fn unauthorized() -> Self {
        Self::rule(ErrorCode::unAuthorized, &[])
    }

    pub fn forbidden() -> Self {
        Self::rule(ErrorCode::errorForbidden, &[])
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        DomainError::Internal(error.into())
    }

    /// The code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::Rule(rule) => rule.code,
            DomainError::Unavailable(_) => ErrorCode::serviceUnAvailable,
            DomainError::Timeout(_) => ErrorCode::operationTimeout,
            DomainError::Internal(_) => ErrorCode::serverError,
        }
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::Rule(rule) => write!(f, "{}: {}", rule.code.name(), rule.message),
            DomainError::Unavailable(what) => write!(f, "unavailable: {what}"),
            DomainError::Timeout(what) => write!(f, "timed out: {what}"),
            DomainError::Internal(error) => write!(f, "internal error: {error:#}"),
        }
    }
}

impl std::error::Error for DomainError {}

pub type DomainResult<T> = Result<T, DomainError>;

/// An error and its causes in one line ("error sending request: tcp connect error: Connection
/// refused"): what engines report when a server does not answer, since the outermost message
/// alone rarely says why.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_in_order() {
        assert_eq!(
            ErrorCode::mandatoryParamsMissing.format(&["firstName"]),
            "Mandatory parameter firstName is missing."
        );
        assert_eq!(
            ErrorCode::errorDuplicateEntry.format(&["abc", "channel"]),
            "Value abc for channel is already in use."
        );
    }

    /// The §9 catalogue of `reference/sunbird-userorg.md`: name, key, status and the message as
    /// the reference gives it (a prefix where the reference abridges it; `None` where it gives
    /// none). The table is written out here, so a changed row fails against the reference.
    const CATALOGUE: &[(ErrorCode, &str, u16, Option<&str>)] = &[
        (
            ErrorCode::errorParamExists,
            "0002",
            400,
            Some("{0} already exists"),
        ),
        (
            ErrorCode::dataTypeError,
            "0003",
            400,
            Some("Data type of {0} should be {1}."),
        ),
        (
            ErrorCode::errorDuplicateEntry,
            "0004",
            400,
            Some("Value {0} for {1} is already in use."),
        ),
        (
            ErrorCode::userAccountlocked,
            "0006",
            400,
            Some("User account has been blocked ."),
        ),
        (
            ErrorCode::userStatusError,
            "0008",
            400,
            Some("User is already {0}."),
        ),
        (
            ErrorCode::dataFormatError,
            "0009",
            400,
            Some("Invalid format for given {0}."),
        ),
        (
            ErrorCode::OnlyEmailorPhoneorManagedByRequired,
            "0011",
            400,
            None,
        ),
        (ErrorCode::channelRegFailed, "0012", 500, None),
        (
            ErrorCode::resourceNotFound,
            "0013",
            404,
            Some("Requested {0} resource not found"),
        ),
        (
            ErrorCode::invalidParameterValue,
            "0017",
            400,
            Some("Invalid value {0} for parameter {1}"),
        ),
        (
            ErrorCode::invalidValue,
            "0018",
            400,
            Some("Invalid {0}: {1}. Valid values are: {2}."),
        ),
        (
            ErrorCode::invalidParameter,
            "0019",
            400,
            Some("Please provide valid {0}."),
        ),
        (
            ErrorCode::invalidRequestParameter,
            "0021",
            400,
            Some("Invalid parameter {0} in request."),
        ),
        (ErrorCode::invalidIdentifier, "0023", 400, None),
        (
            ErrorCode::passwordValidation,
            "0024",
            400,
            Some("Password must contain"),
        ),
        (
            ErrorCode::invalidCaptcha,
            "0025",
            418,
            Some("Captcha is invalid"),
        ),
        (ErrorCode::invalidConsentStatus, "0026", 400, None),
        (ErrorCode::invalidOperationName, "0027", 400, None),
        (
            ErrorCode::invalidRequestData,
            "0028",
            400,
            Some("Requested data for this operation is not valid."),
        ),
        (ErrorCode::invalidLocationDeleteRequest, "0029", 400, None),
        (
            ErrorCode::mandatoryParamsMissing,
            "0030",
            400,
            Some("Mandatory parameter {0} is missing."),
        ),
        (ErrorCode::unupdatableField, "0033", 400, None),
        (ErrorCode::externalIdAssignedToOtherUser, "0042", 400, None),
        (ErrorCode::duplicateExternalIds, "0043", 400, None),
        (
            ErrorCode::emailNotSentRecipientsExceededMaxLimit,
            "0044",
            400,
            None,
        ),
        (ErrorCode::parameterMismatch, "0045", 400, None),
        (ErrorCode::errorUnsupportedField, "0051", 400, None),
        (ErrorCode::errorInactiveOrg, "0053", 400, None),
        (
            ErrorCode::errorInvalidOTP,
            "0057",
            400,
            Some("Invalid OTP."),
        ),
        (ErrorCode::errorInvalidParameterSize, "0058", 400, None),
        (
            ErrorCode::errorRateLimitExceeded,
            "0059",
            429,
            Some("Your per {0} rate limit has exceeded"),
        ),
        (ErrorCode::errorUserMigrationFailed, "0060", 500, None),
        (ErrorCode::mandatoryHeaderParamsMissing, "0061", 400, None),
        (ErrorCode::recoveryParamsMatchException, "0062", 400, None),
        (
            ErrorCode::otpVerificationFailed,
            "0063",
            400,
            Some("OTP verification failed. Remaining attempt count is {0}."),
        ),
        (
            ErrorCode::serviceUnAvailable,
            "0064",
            503,
            Some("SERVICE UNAVAILABLE"),
        ),
        (ErrorCode::managedByNotAllowed, "0065", 400, None),
        (
            ErrorCode::managedUserLimitExceeded,
            "0066",
            400,
            Some("Managed user creation limit exceeded"),
        ),
        (
            ErrorCode::serverError,
            "UOS_0069",
            500,
            Some("server error"),
        ),
        (
            ErrorCode::unAuthorized,
            "UOS_0070",
            401,
            Some("You are not authorized."),
        ),
        (ErrorCode::errorForbidden, "0071", 403, None),
        (ErrorCode::inactiveUser, "0073", 400, None),
        (ErrorCode::extendUserProfileNotLoaded, "0075", 500, None),
        (ErrorCode::roleProcessingInvalidOrgError, "0076", 500, None),
        (ErrorCode::invalidFileExtension, "0077", 400, None),
        (ErrorCode::invalidEncryptionFile, "0078", 400, None),
        (ErrorCode::invalidSecurityLevel, "0079", 400, None),
        (ErrorCode::invalidSecurityLevelLower, "0080", 400, None),
        (
            ErrorCode::defaultSecurityLevelConfigMissing,
            "0081",
            400,
            None,
        ),
        (
            ErrorCode::invalidTenantSecurityLevelLower,
            "0082",
            400,
            None,
        ),
        (
            ErrorCode::cannotDeleteUser,
            "0083",
            400,
            Some("User is restricted from deleting account based on roles!"),
        ),
    ];

    #[test]
    fn the_error_table_matches_the_reference_catalogue() {
        for (code, key, status, message) in CATALOGUE {
            assert_eq!(code.key(), *key, "key of {}", code.name());
            assert_eq!(code.status(), *status, "status of {}", code.name());
            if let Some(message) = message {
                assert!(
                    code.template().starts_with(message),
                    "template of {}: {:?} vs the reference's {message:?}",
                    code.name(),
                    code.template()
                );
            }
        }
    }

    #[test]
    fn keys_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.key()), "duplicate key {}", code.key());
            let key = code.key().trim_start_matches("UOS_");
            assert_eq!(key.len(), 4, "{}", code.name());
            assert!(key.chars().all(|c| c.is_ascii_digit()), "{}", code.name());
        }
    }
}
