//! Extractors that answer bad input in the Sunbird envelope instead of axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde_json::{Map, Value};

use super::envelope::ApiError;
use crate::domain::{DomainError, ErrorCode, validation};
use crate::services::access::Caller;

/// The `request` object of a Sunbird request body (`{"request": {...}}`); `id`, `ver`, `ts` and
/// `params` around it are accepted and ignored.
pub struct SunbirdBody(pub Map<String, Value>);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5 && essence.to_ascii_lowercase().ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for SunbirdBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        // Only JSON is accepted: a form or text body cannot be sent cross-site without a
        // preflight, which is what keeps state-changing routes safe from CSRF. Answered 400, the
        // status of `mandatoryHeaderParamsMissing` in the §9 catalogue.
        if !is_json(&content_type) {
            return Err(ApiError(DomainError::rule(
                ErrorCode::mandatoryHeaderParamsMissing,
                &["Content-Type with value application/json"],
            )));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError(
                        DomainError::rule(ErrorCode::dataSizeError, &["the configured limit"])
                            .with_status(413),
                    )
                } else {
                    ApiError(DomainError::rule(ErrorCode::invalidRequestData, &[]))
                }
            })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ApiError(DomainError::rule(ErrorCode::invalidRequestData, &[])))?;
        let Value::Object(mut envelope) = value else {
            return Err(ApiError(DomainError::rule(
                ErrorCode::invalidRequestData,
                &[],
            )));
        };
        match envelope.remove("request") {
            Some(Value::Object(request)) => {
                validation::check_request(&request).map_err(ApiError)?;
                Ok(SunbirdBody(request))
            }
            None | Some(Value::Null) => Err(ApiError(DomainError::mandatory_missing("request"))),
            Some(_) => Err(ApiError(DomainError::data_type("request", "Map"))),
        }
    }
}

/// The caller established by the auth middleware.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous))
    }
}

/// Query parameters as a plain map (unknown ones ignored); a malformed query is an envelope
/// error, never axum's text.
pub struct QueryMap(pub std::collections::HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query);
        Ok(QueryMap(pairs.into_iter().collect()))
    }
}

fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query).unwrap_or_default()
}

impl QueryMap {
    /// A parameter, when given and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// A boolean parameter as Java's `Boolean.valueOf` reads it: `true` in any case is true,
    /// anything else (or nothing) false.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    /// A comma-separated list parameter (`?fields=a,b`).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.0
            .get(name)
            .map(|value| {
                value
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            serde_urlencoded_pairs("fields=a%2Cb&x=1+2"),
            vec![
                ("fields".to_string(), "a,b".to_string()),
                ("x".to_string(), "1 2".to_string()),
            ]
        );
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
