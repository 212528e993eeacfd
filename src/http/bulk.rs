//! Bulk upload routes (reference §1.10): the user upload (a multipart file part, or the CSV
//! text as `data` in a form or in the JSON request) and the process status. Thin handlers over
//! [`crate::services::bulk::BulkService`].

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header;
use axum::routing::{get, post};
use serde_json::Value;

use super::envelope::{ApiResponse, ApiResult};
use super::{Access, AppState, RouteSpec, route, upload_route};
use crate::domain::bulk::ObjectType;
use crate::domain::{DomainError, ErrorCode};
use crate::services::access::Caller;
use crate::services::bulk::Upload;

pub fn routes() -> Vec<RouteSpec> {
    use Access::Token;
    vec![
        upload_route("/v1/user/upload", "USRUPLD", Token, post(upload_users)),
        upload_route("/v1/org/upload", "ORGUPLD", Token, post(upload_orgs)),
        route("/v1/upload/status/{pid}", "BLKSTSRED", Token, get(status)),
    ]
}

fn invalid_request() -> DomainError {
    DomainError::rule(ErrorCode::invalidRequestData, &[])
}

/// The file of an upload, read up to one byte past `limit` (the service refuses the rest).
async fn read_upload(
    state: &AppState,
    request: Request,
    limit: usize,
) -> Result<Upload, DomainError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|_| invalid_request())?;
        let mut data: Option<Vec<u8>> = None;
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|_| invalid_request())?
        {
            let is_file = field.file_name().is_some();
            if !is_file && field.name() != Some("data") {
                continue;
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|_| invalid_request())? {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > limit {
                    break;
                }
            }
            // The first file part wins over a `data` field.
            if is_file {
                return Ok(Upload { bytes: Some(bytes) });
            }
            data.get_or_insert(bytes);
        }
        return Ok(Upload { bytes: data });
    }
    let body = axum::body::to_bytes(request.into_body(), limit + 64 * 1024)
        .await
        .map_err(|_| invalid_request())?;
    let data = if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .map_err(|_| invalid_request())?
            .into_iter()
            .find(|(key, _)| key == "data")
            .map(|(_, value)| value)
    } else {
        let json: Value = serde_json::from_slice(&body).map_err(|_| invalid_request())?;
        json.pointer("/request/data")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(Upload {
        bytes: data.filter(|d| !d.is_empty()).map(String::into_bytes),
    })
}

async fn upload(
    state: AppState,
    caller: Caller,
    request: Request,
    kind: ObjectType,
) -> ApiResponse {
    let upload = read_upload(&state, request, state.bulk.max_bytes()).await?;
    Ok(ApiResult(state.bulk.upload(&caller, upload, kind).await?))
}

async fn upload_users(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> ApiResponse {
    upload(state, caller, request, ObjectType::User).await
}

async fn upload_orgs(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> ApiResponse {
    upload(state, caller, request, ObjectType::Organisation).await
}

async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResponse {
    Ok(ApiResult(state.bulk.status(&caller, &id).await?))
}
