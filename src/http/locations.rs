//! Location routes (reference §1.16): thin handlers over
//! [`crate::services::locations::LocationService`].
//!
//! All four are public in Sunbird (its gateway guards the writes); here search stays public and
//! the service requires ADMIN for create, update and delete. The routes are `Public` so callers
//! on the internal listener (other services of the cluster) may write without a user token.

use axum::extract::{RawPathParams, State};
use axum::routing::{delete, patch, post};

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    use Access::Public;
    vec![
        route("/v1/location/create", "LOCCRT", Public, post(create)),
        route("/v1/location/update", "LOCUPD", Public, patch(update)),
        route(
            "/v1/location/delete/{locationId}",
            "LOCDEL",
            Public,
            delete(remove),
        ),
        route("/v1/location/search", "LOCSER", Public, post(search)),
    ]
}

async fn create(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.locations.create(&caller, &body.0).await?))
}

async fn update(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.locations.update(&caller, &body.0).await?))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> ApiResponse {
    let location_id = params
        .iter()
        .find(|(key, _)| *key == "locationId")
        .map(|(_, value)| value.to_string())
        .unwrap_or_default();
    Ok(ApiResult(
        state.locations.delete(&caller, &location_id).await?,
    ))
}

async fn search(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.locations.search(&body.0).await?))
}
