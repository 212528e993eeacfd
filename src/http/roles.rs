//! Role routes (reference §1.6).

use axum::extract::{RawPathParams, State};
use axum::routing::{get, post};

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    use Access::{Private, Public, Token};
    vec![
        route("/v1/role/read", "ROLERED", Public, get(catalogue)),
        route(
            "/v1/user/role/read/{uid}",
            "UROLERED",
            Public,
            get(user_roles),
        ),
        route("/v1/user/assign/role", "ROLUPD", Token, post(assign_v1)),
        route(
            "/private/user/v1/assign/role",
            "ROLUPD",
            Private,
            post(assign_v1),
        ),
        route("/v2/user/assign/role", "ROLUPD", Token, post(assign_v2)),
        route(
            "/private/user/v2/assign/role",
            "ROLUPD",
            Private,
            post(assign_v2),
        ),
    ]
}

async fn catalogue(State(state): State<AppState>) -> ApiResponse {
    Ok(ApiResult(state.roles.catalogue().await?))
}

async fn user_roles(State(state): State<AppState>, params: RawPathParams) -> ApiResponse {
    let uid = params
        .iter()
        .find(|(key, _)| *key == "uid")
        .map(|(_, value)| value.to_string())
        .unwrap_or_default();
    Ok(ApiResult(state.roles.user_roles(&uid).await?))
}

async fn assign_v1(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(state.roles.assign_v1(&caller, &body.0).await?))
}

async fn assign_v2(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(state.roles.assign_v2(&caller, &body.0).await?))
}
