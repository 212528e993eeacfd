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
        // Sunbird's `/:service/health`: `actor`, `cassandra` (the store, whichever engine) and
        // `es` (the search index, whichever engine); any other name answers as
        // `/service/health`. A token is needed, as in Sunbird.
        route(
            "/{service}/health",
            OPERATION,
            Access::Token,
            get(named_health),
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

async fn named_health(
    State(state): State<AppState>,
    axum::extract::Path(service): axum::extract::Path<String>,
) -> ApiResponse {
    let (name, checks) = match service.as_str() {
        "actor" | "cassandra" | "es" => {
            let report = state.health.check().await;
            let userorg = check("UserOrg service", true);
            let actors = check("Actor service", report.actors);
            match service.as_str() {
                "actor" => ("Actor health check api", vec![userorg, actors]),
                "cassandra" => (
                    "cassandra health check api",
                    vec![userorg, actors, check("Cassandra service", report.store)],
                ),
                _ => (
                    "ES health check api",
                    vec![actors, check("Elastic search service", report.search)],
                ),
            }
        }
        _ => return service_health().await,
    };
    let healthy = checks.iter().all(|c| c["healthy"] == true);
    let mut result = Map::new();
    result.insert(
        "response".into(),
        json!({"name": name, "healthy": healthy, "checks": checks}),
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
