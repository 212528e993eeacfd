//! Tenant preference v2 routes (reference §1.15): thin handlers over
//! [`crate::services::preferences::PreferenceService`].
//!
//! Reads are public as in Sunbird. Writes are public in Sunbird too (behind its gateway); here
//! the service requires ADMIN or ORG_ADMIN of the organisation. The routes stay `Public` so the
//! service answers anonymous callers with 401 and internal callers are trusted.

use axum::extract::State;
use axum::routing::{patch, post};

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    use Access::{Private, Public};
    vec![
        route(
            "/v2/org/preferences/create",
            "TPREFCRT",
            Public,
            post(create),
        ),
        route(
            "/v2/org/preferences/update",
            "TPREFUPD",
            Public,
            patch(update),
        ),
        route("/v2/org/preferences/read", "TPREFRED", Public, post(read)),
        route(
            "/private/v2/org/preferences/read",
            "TPREFRED",
            Private,
            post(read),
        ),
    ]
}

async fn create(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.preferences.create(&caller, &body.0).await?))
}

async fn update(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.preferences.update(&caller, &body.0).await?))
}

async fn read(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.preferences.read(&body.0).await?))
}
