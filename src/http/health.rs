//! `/health` (store, search and actors checked) and `/service/health` (liveness).

use axum::extract::State;
use axum::routing::get;
use serde_json::{Map, json};

use super::envelope::{ApiError, ApiResponse, ApiResult};
use super::{Access, AppState, RouteSpec, route};
use crate::domain::DomainError;

/// The operation code of the health routes, the only ones the internal listener answers
/// without the service credential (probes).
pub const OPERATION: &str = "HLTHCHK";

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route("/health", OPERATION, Access::Public, get(health)),
        route(
            "/service/health",
            OPERATION,
            Access::Public,
            get(service_health),
        ),
    ]
}

fn check(name: &str, healthy: bool) -> serde_json::Value {
    json!({"name": name, "healthy": healthy, "err": "", "errmsg": ""})
}

async fn health(State(state): State<AppState>) -> ApiResponse {
    let report = state.health.check().await;
    let (store, search, actors) = (report.store, report.search, report.actors);
    let healthy = report.healthy();
    if !healthy {
        return Err(ApiError(DomainError::Unavailable(format!(
            "health check failed: store={store} search={search} actors={actors}"
        ))));
    }
    let mut result = Map::new();
    result.insert(
        "response".into(),
        json!({
            "name": "Complete health check api",
            "healthy": healthy,
            "checks": [check("store", store), check("search", search), check("actors", actors)],
        }),
    );
    Ok(ApiResult(result))
}

async fn service_health() -> ApiResponse {
    let mut result = Map::new();
    result.insert(
        "response".into(),
        json!({
            "name": "UserOrg service health",
            "healthy": true,
            "checks": [check("UserOrg service", true)],
        }),
    );
    Ok(ApiResult(result))
}
