//! Parsing of user create and update requests into typed commands, with Sunbird's validation
//! rules and messages (reference §8.1, §8.2 and §8.4), checked in Sunbird's order so the first
//! error a client sees is the one the original would report.

use serde_json::{Map, Value};

use crate::domain::contact::{Email, Phone, PhoneError};
use crate::domain::rules::{PasswordPolicy, normalise_username, parse_dob};
use crate::domain::user::{CreateRequest, ExternalId, ExternalIdOperation, UpdateRequest};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::json::{Body, opt_bool, opt_nonblank, opt_str, present};

/// Profile fields a client may set and that are stored as given (no PII, no identity).
pub const PROFILE_FIELDS: &[&str] = &[
    "firstName",
    "lastName",
    "gender",
    "language",
    "avatar",
    "profileSummary",
    "location",
    "grade",
    "subject",
    "webPages",
    "userType",
    "userSubType",
    "profileUserType",
    "profileUserTypes",
    "profileLocation",
    "profileDetails",
    "framework",
    "thumbnail",
    "jobProfile",
    "education",
    "skills",
    "badgeAssertions",
    "address",
    "tncAcceptedVersion",
];

/// Which create route: they differ in validation details and in the membership written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateRoute {
    /// `/v1|v2|v3/user/create`
    Admin,
    /// `/v1/ssouser/create`
    Sso,
    /// `/v1/user/signup` (v3 operation)
    SignupV1,
    /// `/v2/user/signup`
    SignupV2,
    /// `/v4/user/create`, `/v1|v2/manageduser/create`: a child account (v3 rules, `managedBy`
    /// required, no password).
    Managed,
}

impl CreateRoute {
    pub fn is_signup(self) -> bool {
        matches!(self, CreateRoute::SignupV1 | CreateRoute::SignupV2)
    }

    /// Self-declared accounts: sign-ups and managed children go into the custodian
    /// organisation, with Sunbird's v3 rules and a SELF_DECLARATION membership.
    pub fn self_declared(self) -> bool {
        self.is_signup() || self == CreateRoute::Managed
    }
}

/// Which update route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateRoute {
    V1,
    V2,
    V3,
}

fn invalid_parameter(what: &str) -> DomainError {
    DomainError::rule(ErrorCode::invalidParameter, &[what])
}

pub(crate) fn parse_external_ids(
    body: &Body,
    on_create: bool,
) -> DomainResult<Vec<(ExternalIdOperation, ExternalId)>> {
    let items = match body.get("externalIds") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(DomainError::data_type("externalIds", "List")),
    };
    let mut parsed = Vec::with_capacity(items.len());
    for item in items {
        let Some(entry) = item.as_object() else {
            return Err(DomainError::data_type("externalIds", "List"));
        };
        let operation = opt_nonblank(entry, "operation")?.unwrap_or_else(|| "add".to_string());
        let operation = match operation.to_lowercase().as_str() {
            "add" => ExternalIdOperation::Add,
            "edit" if !on_create => ExternalIdOperation::Edit,
            "remove" if !on_create => ExternalIdOperation::Remove,
            "edit" | "remove" => {
                return Err(DomainError::rule(
                    ErrorCode::invalidValue,
                    &["externalIds.operation", &operation, "add"],
                ));
            }
            _ => {
                return Err(DomainError::rule(
                    ErrorCode::invalidValue,
                    &["externalIds.operation", &operation, "add, remove, edit"],
                ));
            }
        };
        let id = opt_nonblank(entry, "id")?
            .ok_or_else(|| DomainError::mandatory_missing("externalIds.id"))?;
        let provider = opt_nonblank(entry, "provider")?
            .ok_or_else(|| DomainError::mandatory_missing("externalIds.provider"))?;
        let id_type = opt_nonblank(entry, "idType")?
            .ok_or_else(|| DomainError::mandatory_missing("externalIds.idType"))?;
        parsed.push((
            operation,
            ExternalId {
                id,
                id_type,
                provider,
            },
        ));
    }
    if on_create {
        for (index, (_, first)) in parsed.iter().enumerate() {
            let duplicate = parsed.iter().skip(index + 1).any(|(_, other)| {
                other.provider.eq_ignore_ascii_case(&first.provider)
                    && other.id_type.eq_ignore_ascii_case(&first.id_type)
            });
            if duplicate {
                return Err(DomainError::rule(
                    ErrorCode::duplicateExternalIds,
                    &[&first.id_type, &first.provider],
                ));
            }
        }
    }
    Ok(parsed)
}

fn reject_fields(body: &Body, fields: &[&str]) -> DomainResult<()> {
    for field in fields {
        if present(body, field) {
            return Err(DomainError::rule(
                ErrorCode::invalidRequestParameter,
                &[field],
            ));
        }
    }
    Ok(())
}

/// Phone checks in Sunbird's order: the country code, a `+` in the number, libphonenumber.
fn parse_phone(
    body: &Body,
    field: &str,
    default_country_code: &str,
) -> DomainResult<Option<Phone>> {
    let Some(raw) = opt_nonblank(body, field)? else {
        return Ok(None);
    };
    let country_code = opt_nonblank(body, "countryCode")?;
    match Phone::parse(&raw, country_code.as_deref(), default_country_code) {
        Ok(phone) => Ok(Some(phone)),
        Err(PhoneError::CountryCode) => Err(invalid_parameter("country code")),
        Err(PhoneError::Number) if raw.contains('+') => Err(invalid_parameter(field)),
        Err(PhoneError::Number) => Err(DomainError::format_error(field)),
    }
}

fn parse_email(body: &Body, field: &str) -> DomainResult<Option<Email>> {
    match opt_nonblank(body, field)? {
        None => Ok(None),
        Some(raw) => Email::parse(&raw)
            .map(Some)
            .ok_or_else(|| DomainError::format_error(field)),
    }
}

fn parse_roles(body: &Body) -> DomainResult<Vec<String>> {
    match body.get("roles") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| invalid_parameter("role"))
            })
            .collect(),
        Some(_) => Err(DomainError::data_type("roles", "List")),
    }
}

fn copy_profile(body: &Body) -> DomainResult<Map<String, Value>> {
    let mut profile = Map::new();
    for field in PROFILE_FIELDS {
        if let Some(value) = body.get(*field) {
            if matches!(
                *field,
                "firstName"
                    | "lastName"
                    | "userType"
                    | "userSubType"
                    | "gender"
                    | "avatar"
                    | "profileSummary"
                    | "location"
                    | "thumbnail"
                    | "tncAcceptedVersion"
            ) && !(value.is_string() || value.is_null())
            {
                return Err(DomainError::data_type(field, "String"));
            }
            // The field table lets `subject` be one line too (an email's subject).
            if *field == "subject" && !(value.is_array() || value.is_null()) {
                return Err(DomainError::data_type(field, "List"));
            }
            let value = match value {
                Value::String(s) => Value::String(s.trim().to_string()),
                other => other.clone(),
            };
            profile.insert((*field).to_string(), value);
        }
    }
    Ok(profile)
}

/// Validates a create request in Sunbird's order.
pub fn parse_create(
    body: &Body,
    route: CreateRoute,
    policy: &PasswordPolicy,
    default_country_code: &str,
) -> DomainResult<CreateRequest> {
    let external_ids = if route.self_declared() {
        Vec::new()
    } else {
        parse_external_ids(body, true)?
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    };
    if !route.self_declared() {
        reject_fields(
            body,
            &[
                "registeredOrgId",
                "rootOrgId",
                "provider",
                "externalId",
                "externalIdProvider",
                "externalIdType",
                "idType",
            ],
        )?;
        if route == CreateRoute::Admin {
            reject_fields(body, &["profileUserTypes"])?;
        }
    }

    let first_name = opt_nonblank(body, "firstName")?
        .ok_or_else(|| DomainError::mandatory_missing("firstName"))?;
    let email_raw = opt_nonblank(body, "email")?;
    let phone_raw = opt_nonblank(body, "phone")?;
    let managed_by = opt_nonblank(body, "managedBy")?;
    if route == CreateRoute::Managed && managed_by.is_none() {
        return Err(DomainError::mandatory_missing("managedBy"));
    }
    if email_raw.is_none() && phone_raw.is_none() && managed_by.is_none() {
        return Err(invalid_parameter("email or phone"));
    }
    if managed_by.is_some() && (email_raw.is_some() || phone_raw.is_some()) {
        return Err(DomainError::rule(
            ErrorCode::OnlyEmailorPhoneorManagedByRequired,
            &[],
        ));
    }
    let dob = match opt_nonblank(body, "dob")? {
        Some(raw) => Some(parse_dob(&raw).ok_or_else(|| DomainError::format_error("dob"))?),
        None => None,
    };
    let email = if route.self_declared() {
        // Sunbird's sign-up validator formats this message without filling the placeholder;
        // clients of the original see exactly this text.
        match email_raw.as_deref() {
            Some(raw) => Some(
                Email::parse(raw)
                    .ok_or_else(|| DomainError::unfilled(ErrorCode::dataFormatError))?,
            ),
            None => None,
        }
    } else {
        parse_email(body, "email")?
    };
    let roles = if route.self_declared() {
        Vec::new()
    } else {
        parse_roles(body)?
    };
    let phone = parse_phone(body, "phone", default_country_code)?;
    let password = opt_str(body, "password")?.filter(|p| !p.is_empty());
    if let Some(password) = &password
        && !policy.accepts(password)
    {
        return Err(DomainError::rule(ErrorCode::passwordValidation, &[]));
    }
    // A managed child signs in through its parent, on whichever route it is created: a
    // password given is checked, then dropped.
    let password = password.filter(|_| managed_by.is_none());
    let recovery_email = parse_email(body, "recoveryEmail")?;
    let recovery_phone = parse_phone(body, "recoveryPhone", default_country_code)?;
    if let (Some(primary), Some(recovery)) = (&email, &recovery_email)
        && primary == recovery
    {
        return Err(DomainError::rule(
            ErrorCode::recoveryParamsMatchException,
            &["recoveryEmail", "email"],
        ));
    }
    if let (Some(primary), Some(recovery)) = (&phone, &recovery_phone)
        && primary == recovery
    {
        return Err(DomainError::rule(
            ErrorCode::recoveryParamsMatchException,
            &["recoveryPhone", "phone"],
        ));
    }

    let mut profile = copy_profile(body)?;
    profile.remove("firstName");
    let last_name = opt_nonblank(body, "lastName")?;
    profile.remove("lastName");
    if route == CreateRoute::Sso {
        // The SSO route derives the user type and sub-type from the first profile user type.
        apply_first_profile_user_type(&mut profile);
    }
    let username = opt_nonblank(body, "userName")?.map(|raw| normalise_username(&raw));
    if let Some(name) = &username
        && name.is_empty()
    {
        return Err(invalid_parameter("userName"));
    }
    Ok(CreateRequest {
        profile,
        first_name,
        last_name,
        email,
        email_verified: opt_bool(body, "emailVerified")?.unwrap_or(false),
        phone,
        phone_verified: opt_bool(body, "phoneVerified")?.unwrap_or(false),
        recovery_email,
        recovery_phone,
        username,
        password,
        dob,
        channel: if route.self_declared() {
            None
        } else {
            opt_nonblank(body, "channel")?
        },
        organisation_id: if route.self_declared() {
            None
        } else {
            opt_nonblank(body, "organisationId")?
        },
        roles,
        external_ids,
        managed_by,
    })
}

/// `userType`/`userSubType` from the first entry of `profileUserTypes`, when there is one.
fn apply_first_profile_user_type(profile: &mut Map<String, Value>) {
    if let Some(first) = profile
        .get("profileUserTypes")
        .and_then(Value::as_array)
        .and_then(|types| types.first())
        .cloned()
    {
        if let Some(kind) = first.get("type") {
            profile.insert("userType".into(), kind.clone());
        }
        profile.insert(
            "userSubType".into(),
            first.get("subType").cloned().unwrap_or(Value::Null),
        );
    }
}

/// Validates an update request in Sunbird's order.
pub fn parse_update(
    body: &Body,
    route: UpdateRoute,
    default_country_code: &str,
) -> DomainResult<UpdateRequest> {
    if body.contains_key("managedBy") {
        return Err(DomainError::rule(ErrorCode::managedByNotAllowed, &[]));
    }
    for field in ["phone", "email"] {
        if let Some(Value::String(s)) = body.get(field)
            && s.trim().is_empty()
        {
            return Err(DomainError::rule(
                ErrorCode::invalidParameterValue,
                &["", field],
            ));
        }
    }
    let external_ids = parse_external_ids(body, false)?;
    let phone = parse_phone(body, "phone", default_country_code)?;
    reject_fields(
        body,
        &[
            "registeredOrgId",
            "rootOrgId",
            "channel",
            "userName",
            "provider",
            "idType",
        ],
    )?;
    let user_id = match opt_nonblank(body, "userId")? {
        Some(id) => id,
        None => opt_nonblank(body, "id")?.ok_or_else(|| {
            DomainError::mandatory_missing(
                "userId or externalId, externalIdType and externalIdProvider",
            )
        })?,
    };
    if body.contains_key("firstName") && opt_nonblank(body, "firstName")?.is_none() {
        return Err(DomainError::mandatory_missing("firstName"));
    }
    let email = parse_email(body, "email")?;
    if let Some(Value::Array(items)) = body.get("roles")
        && items.is_empty()
    {
        return Err(invalid_parameter("role"));
    }
    parse_roles(body)?;
    if body.contains_key("organisations") {
        return Err(DomainError::rule(
            ErrorCode::errorUnsupportedField,
            &["organisations"],
        ));
    }
    let dob = match opt_nonblank(body, "dob")? {
        Some(raw) => Some(parse_dob(&raw).ok_or_else(|| DomainError::format_error("dob"))?),
        None => None,
    };
    let recovery_email = parse_email(body, "recoveryEmail")?;
    let recovery_phone = parse_phone(body, "recoveryPhone", default_country_code)?;

    let mut profile = copy_profile(body)?;
    match route {
        // v1 ignores the profile user type fields; v2 takes the single one, v3 the list.
        UpdateRoute::V1 => {
            for key in ["profileLocation", "profileUserType", "profileUserTypes"] {
                profile.remove(key);
            }
        }
        UpdateRoute::V2 => {
            profile.remove("profileUserTypes");
        }
        UpdateRoute::V3 => {
            profile.remove("profileUserType");
            apply_first_profile_user_type(&mut profile);
        }
    }
    if profile.contains_key("userType") && !profile.contains_key("userSubType") {
        // Sunbird clears the sub-type when the type changes without one.
        profile.insert("userSubType".into(), Value::Null);
    }
    Ok(UpdateRequest {
        user_id,
        profile,
        email,
        email_verified: opt_bool(body, "emailVerified")?,
        phone,
        phone_verified: opt_bool(body, "phoneVerified")?,
        recovery_email,
        recovery_phone,
        dob,
        organisation_id: opt_nonblank(body, "organisationId")?,
        external_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLICY: &str = r"^(?=.*[0-9])(?=.*[a-z])(?=.*[A-Z])(?=.*[^a-zA-Z0-9\s])(?!.*\s).{8,}$";

    fn body(value: Value) -> Body {
        value.as_object().cloned().expect("object")
    }

    fn create_error(value: Value) -> String {
        let policy = PasswordPolicy::new(POLICY).expect("policy");
        match parse_create(&body(value), CreateRoute::Admin, &policy, "91") {
            Err(DomainError::Rule(rule)) => rule.message,
            other => panic!("expected a rule error, got {other:?}"),
        }
    }

    #[test]
    fn create_errors_follow_sunbird_order_and_text() {
        assert_eq!(
            create_error(json!({"email": "a@b.co"})),
            "Mandatory parameter firstName is missing."
        );
        assert_eq!(
            create_error(json!({"firstName": "A"})),
            "Please provide valid email or phone."
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "email": "a@b.co", "managedBy": "x"})),
            "Please provide only email or phone or managed by"
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "email": "nope"})),
            "Invalid format for given email."
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "phone": "12"})),
            "Invalid format for given phone."
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "phone": "+919876543210"})),
            "Please provide valid phone."
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "phone": "9876543210", "countryCode": "x1"})),
            "Please provide valid country code."
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "email": "a@b.co", "password": "weak"})),
            ErrorCode::passwordValidation.template()
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "email": "a@b.co", "rootOrgId": "x"})),
            "Invalid parameter rootOrgId in request."
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "email": "a@b.co", "dob": "19-1"})),
            "Invalid format for given dob."
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "email": "a@b.co", "roles": "ADMIN"})),
            "Data type of roles should be List."
        );
        assert_eq!(
            create_error(json!({"firstName": 5, "email": "a@b.co"})),
            "Data type of firstName should be String."
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "email": "a@b.co", "externalIds": [
                {"id": "1", "idType": "t", "provider": "p"},
                {"id": "2", "idType": "T", "provider": "P"}]})),
            "Duplicate external IDs for given idType (t) and provider (p)."
        );
        assert_eq!(
            create_error(
                json!({"firstName": "A", "email": "a@b.co", "externalIds": [{"id": "1", "idType": "t"}]})
            ),
            "Mandatory parameter externalIds.provider is missing."
        );
        assert_eq!(
            create_error(json!({"firstName": "A", "email": "a@b.co", "recoveryEmail": "A@b.co"})),
            "recoveryEmail could not be same as email"
        );
    }

    #[test]
    fn a_valid_create_is_normalised() {
        let policy = PasswordPolicy::new(POLICY).expect("policy");
        let request = parse_create(
            &body(json!({
                "firstName": " Asha ", "lastName": "Rao", "email": "Asha.Rao@Example.org",
                "phone": "9876543210", "password": "S3cret!pass", "dob": "1990",
                "userName": "Asha_R", "roles": ["PUBLIC"], "gender": "female", "status": 0
            })),
            CreateRoute::Admin,
            &policy,
            "91",
        )
        .expect("valid");
        assert_eq!(request.first_name, "Asha");
        assert_eq!(
            request.email.as_ref().map(Email::as_str),
            Some("asha.rao@example.org")
        );
        assert_eq!(request.dob.as_deref(), Some("1990-12-31"));
        assert_eq!(request.username.as_deref(), Some("asha_r"));
        assert_eq!(request.profile.get("gender"), Some(&json!("female")));
        assert!(
            request.profile.get("status").is_none(),
            "status is not client-settable"
        );
        assert_eq!(request.username_base(), "asharao");
    }

    #[test]
    fn sso_create_derives_the_user_type_from_profile_user_types() {
        let policy = PasswordPolicy::new(POLICY).expect("policy");
        let request = parse_create(
            &body(json!({
                "firstName": "S", "email": "s@b.co",
                "profileUserTypes": [{"type": "teacher", "subType": "hm"}, {"type": "parent"}]
            })),
            CreateRoute::Sso,
            &policy,
            "91",
        )
        .expect("valid");
        assert_eq!(request.profile.get("userType"), Some(&json!("teacher")));
        assert_eq!(request.profile.get("userSubType"), Some(&json!("hm")));
        let admin = parse_create(
            &body(json!({"firstName": "S", "email": "s@b.co", "profileUserTypes": []})),
            CreateRoute::Admin,
            &policy,
            "91",
        );
        assert!(admin.is_err(), "the admin route refuses profileUserTypes");
    }

    #[test]
    fn signup_keeps_the_unfilled_format_message() {
        let policy = PasswordPolicy::new(POLICY).expect("policy");
        match parse_create(
            &body(json!({"firstName": "A", "email": "bad"})),
            CreateRoute::SignupV2,
            &policy,
            "91",
        ) {
            Err(DomainError::Rule(rule)) => {
                assert_eq!(rule.message, "Invalid format for given {0}.")
            }
            other => panic!("{other:?}"),
        }
    }

    fn update_error(value: Value) -> String {
        match parse_update(&body(value), UpdateRoute::V1, "91") {
            Err(DomainError::Rule(rule)) => rule.message,
            other => panic!("expected a rule error, got {other:?}"),
        }
    }

    #[test]
    fn update_errors_follow_sunbird_order_and_text() {
        assert_eq!(
            update_error(json!({"userId": "u", "managedBy": "x"})),
            "managedBy cannot be updated."
        );
        assert_eq!(
            update_error(json!({"userId": "u", "phone": ""})),
            "Invalid value  for parameter phone. Please provide a valid value."
        );
        assert_eq!(
            update_error(json!({"userId": "u", "channel": "x"})),
            "Invalid parameter channel in request."
        );
        assert_eq!(
            update_error(json!({"firstName": "x"})),
            "Mandatory parameter userId or externalId, externalIdType and externalIdProvider is missing."
        );
        assert_eq!(
            update_error(json!({"userId": "u", "firstName": " "})),
            "Mandatory parameter firstName is missing."
        );
        assert_eq!(
            update_error(json!({"userId": "u", "roles": []})),
            "Please provide valid role."
        );
        assert_eq!(
            update_error(json!({"userId": "u", "organisations": []})),
            "Unsupported field organisations."
        );
    }
}
