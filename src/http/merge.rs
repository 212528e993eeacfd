//! `PATCH /private/user/v1/account/merge` (gateway `/api/user/v1/account/merge`): a thin
//! handler over [`crate::services::merge::MergeService`]; the mergee's token comes in
//! `x-source-user-token`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::patch;

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    vec![route(
        "/private/user/v1/account/merge",
        "USRMRG",
        Access::Private,
        patch(merge),
    )]
}

async fn merge(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: SunbirdBody,
) -> ApiResponse {
    let source = headers
        .get("x-source-user-token")
        .and_then(|value| value.to_str().ok());
    Ok(ApiResult(
        state.merge.merge(&caller, source, &body.0).await?,
    ))
}
