//! Consent, terms-and-conditions and self-declaration routes (reference §1.7, §8.13): thin
//! handlers over [`crate::services::consent::ConsentService`],
//! [`crate::services::tnc::TncService`] and
//! [`crate::services::declarations::DeclarationService`].
//!
//! `/v1/user/consent/read` answers a missing consent with Sunbird's legacy name
//! (`USER_CONSENT_NOT_FOUND` in `err` and `status`); `/v2` with `UOS_UCNSTRED0013`.

use axum::extract::State;
use axum::routing::{patch, post};

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::domain::ErrorCode;
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    use Access::Token;
    vec![
        route("/v1/user/consent/update", "UCNSNTUPD", Token, post(update)),
        route("/v1/user/consent/read", "UCNSTRED", Token, post(read_v1)),
        route("/v2/user/consent/read", "UCNSTRED", Token, post(read_v2)),
        route("/v1/user/tnc/accept", "TNCACCPT", Token, post(accept_tnc)),
        route(
            "/v1/user/declarations",
            "UDECLUPD",
            Token,
            patch(declarations),
        ),
    ]
}

async fn update(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.consent.update(&caller, &body.0).await?))
}

async fn read_v1(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(
        state
            .consent
            .read(&caller, &body.0)
            .await
            .map_err(|error| {
                error.legacy_name(ErrorCode::resourceNotFound, "USER_CONSENT_NOT_FOUND")
            })?,
    ))
}

async fn read_v2(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.consent.read(&caller, &body.0).await?))
}

async fn accept_tnc(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(state.tnc.accept(&caller, &body.0).await?))
}

async fn declarations(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state.declarations.update(&caller, &body.0).await?,
    ))
}
