//! System settings routes (reference §1.17): thin handlers over
//! [`crate::services::settings::SettingsService`].
//!
//! Sunbird serves all three without authentication (`set` included, behind its gateway); here
//! `set` requires ADMIN in the service. The routes stay `Public` so anonymous callers get 401
//! from the service and internal callers are trusted.

use axum::extract::{RawPathParams, State};
use axum::routing::{get, post};

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    use Access::Public;
    vec![
        route(
            "/v1/system/settings/get/{field}",
            "SYSRED",
            Public,
            get(read),
        ),
        route("/v1/system/settings/list", "SYSRED", Public, get(list)),
        route("/v1/system/settings/set", "SYSCRT", Public, post(set)),
    ]
}

async fn read(State(state): State<AppState>, params: RawPathParams) -> ApiResponse {
    let field = params
        .iter()
        .find(|(key, _)| *key == "field")
        .map(|(_, value)| value.to_string())
        .unwrap_or_default();
    Ok(ApiResult(state.settings.get(&field).await?))
}

async fn list(State(state): State<AppState>) -> ApiResponse {
    Ok(ApiResult(state.settings.list().await?))
}

async fn set(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.settings.set(&caller, &body.0).await?))
}
