//! User feed routes (reference §1.9): thin handlers over
//! [`crate::services::feed::FeedService`].

use axum::extract::{Path, State};
use axum::routing::{get, patch, post};

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    use Access::{Private, Token};
    vec![
        route("/v1/user/feed/{userId}", "FEEDRED", Token, get(read)),
        route("/v1/user/feed/create", "FEEDCRT", Token, post(create)),
        route(
            "/private/user/feed/v1/create",
            "FEEDCRT",
            Private,
            post(create),
        ),
        route("/v1/user/feed/delete", "FEEDDEL", Token, post(delete)),
        route("/v1/user/feed/update", "FEEDUPD", Token, patch(update)),
    ]
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResponse {
    Ok(ApiResult(state.feed.read(&caller, &user_id).await?))
}

async fn create(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.feed.create(&caller, &body.0).await?))
}

async fn update(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.feed.update(&caller, &body.0).await?))
}

async fn delete(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.feed.delete(&caller, &body.0).await?))
}
