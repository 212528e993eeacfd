//! The Sunbird response envelope:
//! `{id, ver, ts, params{resmsgid, msgid, err, status, errmsg}, responseCode, result}`.
//!
//! Handlers return [`ApiResult`] or [`ApiError`]; both become an empty response carrying an
//! [`EnvelopeBody`] extension, and the envelope middleware (which knows the request id, the
//! path and the route's operation code) writes the final JSON. Responses that axum produces on
//! its own (unknown route, wrong method, body too large) are converted there as well, so a
//! client never sees plain text.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::clock::sunbird_timestamp;
use crate::domain::{DomainError, ErrorCode};

/// What a handler answered, before it is wrapped.
#[derive(Clone, Debug)]
pub enum EnvelopeBody {
    Success(Map<String, Value>),
    Failure {
        code: ErrorCode,
        message: String,
        result: Map<String, Value>,
        /// `params.err` is the key alone (see [`crate::domain::RuleError::bare`]).
        bare: bool,
        /// `params.err` and `params.status` are this legacy name (see
        /// [`crate::domain::RuleError::legacy`]).
        legacy: Option<&'static str>,
    },
}

/// An internal error kept on the response so the middleware logs it once, with its cause.
#[derive(Clone, Debug)]
pub struct InternalCause(pub Arc<String>);

/// A successful `result`.
pub struct ApiResult(pub Map<String, Value>);

impl IntoResponse for ApiResult {
    fn into_response(self) -> Response {
        let mut response = StatusCode::OK.into_response();
        response
            .extensions_mut()
            .insert(EnvelopeBody::Success(self.0));
        response
    }
}

/// Any failure, answered in the envelope with the status of its error code.
#[derive(Debug)]
pub struct ApiError(pub DomainError);

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        ApiError(error)
    }
}

pub type ApiResponse = Result<ApiResult, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (mut bare, mut legacy) = (false, None);
        let (code, message, status, result, cause) = match self.0 {
            DomainError::Rule(rule) => {
                bare = rule.bare;
                legacy = rule.legacy;
                (rule.code, rule.message, rule.status, rule.result, None)
            }
            DomainError::Unavailable(what) => (
                ErrorCode::serviceUnAvailable,
                ErrorCode::serviceUnAvailable.template().to_string(),
                503,
                Map::new(),
                Some(format!("unavailable: {what}")),
            ),
            DomainError::Timeout(what) => (
                ErrorCode::operationTimeout,
                ErrorCode::operationTimeout.template().to_string(),
                504,
                Map::new(),
                Some(format!("timed out: {what}")),
            ),
            DomainError::Internal(error) => (
                ErrorCode::serverError,
                ErrorCode::serverError.template().to_string(),
                500,
                Map::new(),
                Some(format!("{error:#}")),
            ),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        response.extensions_mut().insert(EnvelopeBody::Failure {
            code,
            message,
            result,
            bare,
            legacy,
        });
        if let Some(cause) = cause {
            response
                .extensions_mut()
                .insert(InternalCause(Arc::new(cause)));
        }
        response
    }
}

/// The `responseCode` name of an HTTP status (Sunbird `ResponseCode.getResponseCodeByCode`).
pub fn response_code_name(status: u16) -> &'static str {
    match status {
        200..=299 if status == 206 => "PARTIAL_SUCCESS_RESPONSE",
        200..=299 => "OK",
        400 | 405 | 411 | 413 | 414 | 415 | 422 | 431 => "CLIENT_ERROR",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "RESOURCE_NOT_FOUND",
        418 => "IM_A_TEAPOT",
        429 => "TOO_MANY_REQUESTS",
        503 => "SERVICE_UNAVAILABLE",
        _ => "SERVER_ERROR",
    }
}

/// `params.err`: `UOS_` + operation code + key; keys that already carry `UOS_` are kept.
pub fn error_code_text(code: ErrorCode, operation: Option<&str>) -> String {
    let key = code.key();
    if key.starts_with("UOS_") {
        key.to_string()
    } else {
        format!("UOS_{}{key}", operation.unwrap_or(""))
    }
}

/// The envelope `id` of a path (Sunbird `BaseController.getApiResponseId`): the version segment
/// becomes `api` and slashes become dots, path parameters included; `/private/...` paths keep
/// every segment with a leading dot; a few health paths are fixed.
pub fn response_id(path: &str) -> String {
    if path.eq_ignore_ascii_case("/health") {
        return "api.all.health".to_string();
    }
    if path == "/service/health" {
        return "api.userorg.service.health".to_string();
    }
    let id = id_of(path);
    if !id.is_empty() {
        return id;
    }
    // Sunbird retries without the last segment before giving up.
    match path.rsplit_once('/') {
        Some((head, _)) if !head.is_empty() => id_of(head),
        _ => String::new(),
    }
}

fn id_of(path: &str) -> String {
    for version in ["/v1", "/v2", "/v3", "/v4", "/v5"] {
        if let Some(rest) = path.strip_prefix(version)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("api{}", rest.replace('/', "."));
        }
    }
    if path.starts_with("/private") {
        return path.replace('/', ".");
    }
    String::new()
}

/// `ver`: the first path segment.
pub fn response_version(path: &str) -> String {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The envelope's `params`, in Sunbird's key order.
#[derive(serde::Serialize)]
struct Params<'a> {
    resmsgid: &'a str,
    msgid: &'a str,
    err: Option<String>,
    status: &'static str,
    errmsg: Option<&'a str>,
}

/// The whole envelope, in Sunbird's key order, borrowing the handler's result.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    id: String,
    ver: String,
    ts: String,
    params: Params<'a>,
    #[serde(rename = "responseCode")]
    response_code: &'static str,
    result: &'a Map<String, Value>,
}

/// The whole envelope as JSON bytes. The result is serialized where it is, never copied: a read
/// view or a page of search hits is the biggest thing a request builds.
/// The `Content-Type` of every envelope: exactly `application/json`, with no charset parameter
/// (JSON is UTF-8 by definition, and Sunbird's clients compare the header with this string).
pub const JSON_CONTENT_TYPE: &str = "application/json";

pub fn render(
    path: &str,
    request_id: &str,
    status: u16,
    body: &EnvelopeBody,
    operation: Option<&str>,
) -> Vec<u8> {
    let (params, result) = match body {
        EnvelopeBody::Success(result) => (
            Params {
                resmsgid: request_id,
                msgid: request_id,
                err: None,
                status: "SUCCESS",
                errmsg: None,
            },
            result,
        ),
        EnvelopeBody::Failure {
            code,
            message,
            result,
            bare,
            legacy,
        } => (
            Params {
                resmsgid: request_id,
                msgid: request_id,
                err: Some(match legacy {
                    Some(name) => name.to_string(),
                    None if *bare => code.key().to_string(),
                    None => error_code_text(*code, operation),
                }),
                status: legacy.unwrap_or("FAILED"),
                errmsg: Some(message),
            },
            result,
        ),
    };
    let envelope = Envelope {
        id: response_id(path),
        ver: response_version(path),
        ts: sunbird_timestamp(chrono::Local::now()),
        params,
        response_code: response_code_name(status),
        result,
    };
    // Serializing maps of JSON values with string keys cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn the_envelope_keeps_sunbird_key_order_and_nulls() {
        let mut result = Map::new();
        result.insert("response".into(), Value::from("SUCCESS"));
        let bytes = render(
            "/v1/user/read/u-1",
            "req-1",
            200,
            &EnvelopeBody::Success(result),
            None,
        );
        let success: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            keys(&success),
            ["id", "ver", "ts", "params", "responseCode", "result"]
        );
        assert_eq!(
            keys(&success["params"]),
            ["resmsgid", "msgid", "err", "status", "errmsg"]
        );
        assert_eq!(success["id"], "api.user.read.u-1");
        assert_eq!(success["ver"], "v1");
        assert_eq!(success["responseCode"], "OK");
        assert_eq!(success["params"]["err"], Value::Null);
        assert_eq!(success["params"]["errmsg"], Value::Null);
        assert_eq!(success["params"]["status"], "SUCCESS");
        assert_eq!(success["result"]["response"], "SUCCESS");

        let failure = EnvelopeBody::Failure {
            code: ErrorCode::invalidRequestData,
            message: "Invalid request data".into(),
            result: Map::new(),
            bare: false,
            legacy: None,
        };
        let bytes = render("/v1/user/create", "req-2", 400, &failure, Some("USR"));
        let failure: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(failure["params"]["status"], "FAILED");
        assert_eq!(failure["params"]["errmsg"], "Invalid request data");
        assert_eq!(failure["params"]["msgid"], "req-2");
        assert_eq!(failure["responseCode"], "CLIENT_ERROR");
        assert_eq!(failure["result"], serde_json::json!({}));
        assert_eq!(failure["params"]["err"], "UOS_USR0028", "{failure}");
    }

    #[test]
    fn ids_follow_sunbird() {
        assert_eq!(response_id("/v1/user/create"), "api.user.create");
        assert_eq!(response_id("/v3/user/update"), "api.user.update");
        assert_eq!(
            response_id("/v1/user/read/abc-123"),
            "api.user.read.abc-123"
        );
        assert_eq!(
            response_id("/private/user/v1/lookup"),
            ".private.user.v1.lookup"
        );
        assert_eq!(response_id("/health"), "api.all.health");
        assert_eq!(response_id("/service/health"), "api.userorg.service.health");
        assert_eq!(response_id("/unknown/path"), "");
        assert_eq!(response_version("/v1/user/create"), "v1");
        assert_eq!(response_version("/private/user/v1/lookup"), "private");
    }

    #[test]
    fn error_codes_carry_the_operation() {
        assert_eq!(
            error_code_text(ErrorCode::mandatoryParamsMissing, Some("USRCRT")),
            "UOS_USRCRT0030"
        );
        assert_eq!(
            error_code_text(ErrorCode::unAuthorized, Some("USRRED")),
            "UOS_0070"
        );
        assert_eq!(
            error_code_text(ErrorCode::resourceNotFound, None),
            "UOS_0013"
        );
    }

    #[test]
    fn response_codes_are_named_by_status() {
        assert_eq!(response_code_name(200), "OK");
        assert_eq!(response_code_name(400), "CLIENT_ERROR");
        assert_eq!(response_code_name(401), "UNAUTHORIZED");
        assert_eq!(response_code_name(404), "RESOURCE_NOT_FOUND");
        assert_eq!(response_code_name(429), "TOO_MANY_REQUESTS");
        assert_eq!(response_code_name(500), "SERVER_ERROR");
        assert_eq!(response_code_name(206), "PARTIAL_SUCCESS_RESPONSE");
    }
}
