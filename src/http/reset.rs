//! The password reset: `/private/user/v1/password/reset` (the link, in the envelope) and the
//! page the link opens, `/password/reset/{token}`: plain HTML with no script, a form protected
//! against cross-site submission (a random value in a `SameSite=Strict` cookie that the form
//! must repeat), the password policy shown, and headers that keep the page out of frames,
//! caches and referrers (the token is in its address).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::oidc::RawAnswer;
use super::{Access, AppState, RouteSpec, route};
use crate::domain::ErrorCode;
use crate::services::access::Caller;
use crate::services::reset::ResetOutcome;

const CSRF_COOKIE: &str = "userorg_reset_csrf";

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route(
            "/private/user/v1/password/reset",
            "PASSRST",
            Access::Private,
            post(create),
        ),
        route(
            "/password/reset/{token}",
            "PASSRST",
            Access::Public,
            get(page).post(submit),
        ),
    ]
}

async fn create(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.reset.create(&caller, &body.0).await?))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A whole page with the headers every answer of the page carries.
fn html(status: StatusCode, title: &str, content: &str, cookie: Option<&str>) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}\
         label,input,button{{display:block;width:100%;margin:.4rem 0}}input{{padding:.4rem}}\
         .error{{color:#a00}}</style></head>\n<body><h1>{title}</h1>\n{content}\n</body></html>\n",
        title = escape(title)
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    if let Some(cookie) = cookie.and_then(|value| HeaderValue::from_str(value).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response.extensions_mut().insert(RawAnswer);
    response
}

fn invalid_link() -> Response {
    html(
        StatusCode::BAD_REQUEST,
        "Link not valid",
        "<p>This link is not valid: it was used already, it has expired, or it was changed. Ask for a new one.</p>",
        None,
    )
}

fn form(status: StatusCode, csrf: &str, error: Option<&str>) -> Response {
    let policy = ErrorCode::passwordValidation.template();
    let error = error
        .map(|text| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(text)))
        .unwrap_or_default();
    let content = format!(
        "{error}<p id=\"policy\">{}</p>\n<form method=\"post\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"password\">New password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required>\
         <button type=\"submit\">Set password</button></form>",
        escape(policy),
        csrf = escape(csrf)
    );
    let cookie = format!(
        "{CSRF_COOKIE}={csrf}; Path=/password/reset; HttpOnly; SameSite=Strict; Max-Age=3600"
    );
    html(status, "Set your password", &content, Some(&cookie))
}

async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.reset.check(&token).await {
        Ok(Some(_)) => form(StatusCode::OK, &new_csrf(), None),
        Ok(None) => invalid_link(),
        Err(error) => unavailable(error),
    }
}

fn new_csrf() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn unavailable(error: crate::domain::DomainError) -> Response {
    tracing::warn!(error = %error, "password reset page failed");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "<p>The service cannot set passwords right now. Try again in a moment.</p>",
        None,
    )
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

async fn submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    let (csrf, password) = (field("csrf"), field("password"));
    let cookie = cookie_value(&headers, CSRF_COOKIE).unwrap_or_default();
    if csrf.is_empty() || !bool::from(csrf.as_bytes().ct_eq(cookie.as_bytes())) {
        return html(
            StatusCode::FORBIDDEN,
            "Form expired",
            "<p>This form was not sent from the page it belongs to. Open the link again.</p>",
            None,
        );
    }
    match state.reset.submit(&token, &password).await {
        Ok(ResetOutcome::Done) => html(
            StatusCode::OK,
            "Password set",
            "<p id=\"done\">Your password is set. Sign in with it from now on; you were signed out everywhere else.</p>",
            None,
        ),
        Ok(ResetOutcome::Refused) => form(
            StatusCode::BAD_REQUEST,
            &new_csrf(),
            Some("This password does not meet the policy below."),
        ),
        Ok(ResetOutcome::InvalidLink) => invalid_link(),
        Err(error) => unavailable(error),
    }
}
