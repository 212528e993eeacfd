//! Organisation routes (reference §1.12): thin handlers over
//! [`crate::services::organisations::OrgService`].

use axum::extract::{Multipart, State};
use axum::routing::{patch, post};
use serde_json::{Map, Value};

use super::envelope::{ApiError, ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route, upload_route};
use crate::domain::{DomainError, ErrorCode};
use crate::services::access::Caller;
use crate::services::organisations::OrgSearchVersion;

pub fn routes() -> Vec<RouteSpec> {
    use Access::{Private, Public, Token};
    vec![
        route("/v1/org/create", "ORGCRT", Public, post(create)),
        route("/v1/org/update", "ORGUPD", Token, patch(update)),
        route(
            "/v1/org/status/update",
            "OSTSUPD",
            Token,
            patch(update_status),
        ),
        route("/v1/org/read", "ORGRED", Public, post(read)),
        route("/v1/org/search", "ORGSER", Public, post(search_v1)),
        route("/v2/org/search", "ORGSER", Public, post(search_v2)),
        route("/private/v2/org/search", "ORGSER", Private, post(search_v2)),
        route("/v1/org/assign/key", "ASSGNK", Public, patch(assign_keys)),
        upload_route(
            "/v1/org/update/encryptionkey",
            "ADENCKEY",
            Public,
            patch(add_encryption_key),
        ),
    ]
}

async fn create(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.orgs.create(&caller, &body.0).await?))
}

async fn update(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.orgs.update(&caller, &body.0).await?))
}

async fn update_status(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(state.orgs.update_status(&caller, &body.0).await?))
}

async fn read(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.orgs.read(&body.0).await?))
}

async fn search_v1(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(
        state.orgs.search(OrgSearchVersion::V1, &body.0).await?,
    ))
}

async fn search_v2(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(
        state.orgs.search(OrgSearchVersion::V2, &body.0).await?,
    ))
}

async fn assign_keys(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(state.orgs.assign_keys(&caller, &body.0).await?))
}

fn invalid_request() -> ApiError {
    ApiError(DomainError::rule(ErrorCode::invalidRequestData, &[]))
}

/// Multipart: text fields (`organisationId`) and the first file part (the PEM public key).
async fn add_encryption_key(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResponse {
    let mut multipart = multipart.map_err(|_| invalid_request())?;
    let mut fields = Map::new();
    let mut file = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|_| invalid_request())?
    {
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name().map(str::to_string) {
            Some(file_name) if file.is_none() => {
                let bytes = field.bytes().await.map_err(|_| invalid_request())?;
                file = Some((file_name, bytes.to_vec()));
            }
            Some(_) => {}
            None => {
                let text = field.text().await.map_err(|_| invalid_request())?;
                fields.insert(name, Value::String(text));
            }
        }
    }
    Ok(ApiResult(
        state
            .orgs
            .add_encryption_key(&caller, &fields, file)
            .await?,
    ))
}
