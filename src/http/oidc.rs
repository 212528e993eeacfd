//! Keycloak's OpenID Connect endpoints for Sunbird clients, and Sunbird's refresh API: thin
//! handlers over [`crate::services::signin::SignInService`]. Their answers are Keycloak's JSON,
//! not the Sunbird envelope ([`RawAnswer`] tells the envelope middleware to leave them), except
//! `/auth/v1/refresh/token`, which answers Sunbird's `api.refresh.token` envelope.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use super::{Access, AppState, RouteSpec, route};
use crate::clock::sunbird_timestamp;
use crate::services::access::Caller;
use crate::services::signin::{OidcError, OidcRequest};

/// Marks a response written in full by its handler: the envelope middleware adds its headers
/// and log line but leaves the status and body alone.
#[derive(Debug, Clone, Copy)]
pub struct RawAnswer;

const OPERATION: &str = "OIDC";
const REALM: &str = "/auth/realms/{realm}";

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route(
            "/auth/realms/{realm}/protocol/openid-connect/token",
            OPERATION,
            Access::Public,
            post(token),
        ),
        route(
            "/auth/realms/{realm}/protocol/openid-connect/certs",
            OPERATION,
            Access::Public,
            get(certs),
        ),
        route(
            "/auth/realms/{realm}/protocol/openid-connect/logout",
            OPERATION,
            Access::Public,
            post(logout),
        ),
        route(
            "/auth/realms/{realm}/protocol/openid-connect/userinfo",
            OPERATION,
            Access::Public,
            get(userinfo).post(userinfo),
        ),
        route(
            "/auth/realms/{realm}/.well-known/openid-configuration",
            OPERATION,
            Access::Public,
            get(discovery),
        ),
        route(
            "/auth/admin/realms/{realm}/attack-detection/brute-force/users/{user_id}",
            OPERATION,
            Access::Public,
            get(lockout_status).delete(unlock),
        ),
        route(
            "/auth/v1/refresh/token",
            "REFRESHTKN",
            Access::Public,
            post(sunbird_refresh),
        ),
    ]
}

/// A JSON answer written as is: `Cache-Control: no-store` as RFC 6749 asks of token answers.
fn raw(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(super::envelope::JSON_CONTENT_TYPE),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response.extensions_mut().insert(RawAnswer);
    response
}

/// Keycloak's 204 for a done logout or unlock.
fn no_content() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(RawAnswer);
    response
}

fn answer(result: Result<Value, OidcError>) -> Response {
    match result {
        Ok(body) => raw(200, &body),
        Err(error) => refusal(&error),
    }
}

fn refusal(error: &OidcError) -> Response {
    let mut response = raw(error.status, &error.body());
    if error.status == 401 && error.error == "invalid_token" {
        let challenge = format!(
            "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
            REALM.trim_start_matches('/'),
            error.description.unwrap_or_default()
        );
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// The form fields of the body (the first of a repeated one) and the client of an
/// `Authorization: Basic` header, whose parts are form-encoded (RFC 6749 §2.3.1).
fn oidc_request(headers: &HeaderMap, body: &Bytes) -> OidcRequest {
    let mut form = std::collections::HashMap::new();
    if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
        for (name, value) in pairs {
            form.entry(name).or_insert(value);
        }
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
        })
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|text| {
            let (id, secret) = text.split_once(':')?;
            let decode = |part: &str| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={part}"))
                    .ok()
                    .and_then(|mut pairs| pairs.pop())
                    .map(|(_, value)| value)
            };
            Some((decode(id)?, decode(secret)?))
        });
    OidcRequest { form, basic }
}

async fn token(
    State(state): State<AppState>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = oidc_request(&headers, &body);
    answer(state.signin.token(&realm, &request).await)
}

async fn logout(
    State(state): State<AppState>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = oidc_request(&headers, &body);
    match state.signin.logout(&realm, &request).await {
        Ok(()) => no_content(),
        Err(error) => refusal(&error),
    }
}

/// The access token comes as `Authorization: Bearer`, or in a POST body's `access_token`
/// field (RFC 6750 §2.2), which wins: on the internal listener the header carries the service
/// credential.
async fn userinfo(
    State(state): State<AppState>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = oidc_request(&HeaderMap::new(), &body);
    let bearer = match form.form.get("access_token") {
        Some(token) => Some(format!("Bearer {token}")),
        None => headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
    };
    answer(state.signin.userinfo(&realm, bearer.as_deref()).await)
}

async fn certs(State(state): State<AppState>, Path(realm): Path<String>) -> Response {
    answer(state.signin.certs(&realm))
}

async fn discovery(State(state): State<AppState>, Path(realm): Path<String>) -> Response {
    answer(state.signin.discovery(&realm))
}

async fn lockout_status(
    State(state): State<AppState>,
    caller: Caller,
    Path((realm, user_id)): Path<(String, String)>,
) -> Response {
    answer(state.signin.lockout_status(&realm, &caller, &user_id).await)
}

async fn unlock(
    State(state): State<AppState>,
    caller: Caller,
    Path((realm, user_id)): Path<(String, String)>,
) -> Response {
    match state.signin.unlock(&realm, &caller, &user_id).await {
        Ok(()) => no_content(),
        Err(error) => refusal(&error),
    }
}

/// Sunbird's refresh API answers its own envelope: `id` `api.refresh.token`, `ver` `1.0` and a
/// lower-case `params.status`.
async fn sunbird_refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = oidc_request(&headers, &body);
    let message_id = uuid::Uuid::new_v4().to_string();
    let (status, body) = match state.signin.sunbird_refresh(&request).await {
        Ok(result) => (
            200,
            json!({
                "id": "api.refresh.token",
                "ver": "1.0",
                "ts": sunbird_timestamp(chrono::Local::now()),
                "params": {
                    "resmsgid": message_id,
                    "msgid": Value::Null,
                    "status": "successful",
                    "err": Value::Null,
                    "errmsg": Value::Null,
                },
                "responseCode": "OK",
                "result": result,
            }),
        ),
        Err(error) => (
            error.status,
            json!({
                "id": "api.refresh.token",
                "ver": "1.0",
                "ts": sunbird_timestamp(chrono::Local::now()),
                "params": {
                    "resmsgid": message_id,
                    "msgid": Value::Null,
                    "status": "failed",
                    "err": error.error,
                    "errmsg": error.description,
                },
                "responseCode": match error.status {
                    401 => "UNAUTHORIZED",
                    404 => "RESOURCE_NOT_FOUND",
                    503 => "SERVICE_UNAVAILABLE",
                    _ => "CLIENT_ERROR",
                },
                "result": {},
            }),
        ),
    };
    raw(status, &body)
}
