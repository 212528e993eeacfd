//! File routes (reference §1.10): the upload (multipart: text fields such as `container` and
//! the first file part) and the data-dir engine's files served back. Thin handlers over
//! [`crate::services::files::FileService`].

use axum::extract::{Multipart, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::envelope::{ApiError, ApiResponse, ApiResult};
use super::{Access, AppState, RouteSpec, route, upload_route};
use crate::domain::{DomainError, ErrorCode};
use crate::services::access::Caller;
use crate::services::files::FileUpload;

pub fn routes() -> Vec<RouteSpec> {
    use Access::{Public, Token};
    vec![
        upload_route("/v1/file/upload", "STRGSER", Token, post(upload)),
        route("/files/{container}/{key}", "STRGSER", Public, get(read)),
    ]
}

fn invalid_request() -> DomainError {
    DomainError::rule(ErrorCode::invalidRequestData, &[])
}

async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResponse {
    let mut multipart = multipart.map_err(|_| invalid_request())?;
    let (mut container, mut file) = (None, None);
    let limit = state.files.max_bytes();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|_| invalid_request())?
    {
        match field.file_name().map(str::to_string) {
            Some(file_name) if file.is_none() => {
                let content_type = field.content_type().map(str::to_string);
                // Read chunk by chunk so an oversized file is refused at the limit.
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|_| invalid_request())? {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > limit {
                        break;
                    }
                }
                file = Some(FileUpload {
                    container: None,
                    file_name,
                    content_type,
                    bytes,
                });
            }
            Some(_) => {}
            None if field.name() == Some("container") => {
                container = Some(field.text().await.map_err(|_| invalid_request())?);
            }
            None => {}
        }
    }
    let file = file.map(|mut file| {
        file.container = container;
        file
    });
    Ok(ApiResult(state.files.upload(&caller, file).await?))
}

async fn read(
    State(state): State<AppState>,
    Path((container, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let blob = state.files.read(&container, &key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, blob.content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_string(),
            ),
        ],
        blob.bytes,
    )
        .into_response())
}
