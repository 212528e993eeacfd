//! POST /v1/data/sync (reference §1.10): a thin handler over
//! [`crate::services::data_sync::DataSyncService`].
//!
//! Public in Sunbird; it rewrites search indexes, so here the service requires ADMIN. The route
//! stays `Public` so anonymous callers get 401 from the service and internal callers are trusted.
//!
//! Sunbird validates this body before it sets the operation, so its validation errors carry no
//! operation code (`UOS_0003`, `UOS_0072`); here every error of the route carries `ESSYNC`.

use axum::extract::State;
use axum::routing::post;

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    vec![route("/v1/data/sync", "ESSYNC", Access::Public, post(sync))]
}

async fn sync(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.data_sync.sync(&caller, &body.0).await?))
}
