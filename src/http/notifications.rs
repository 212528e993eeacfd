//! Notification and OTP routes (reference §1.8, §1.11): thin handlers over
//! [`crate::services::notifications::NotificationService`] and
//! [`crate::services::otp::OtpService`].
//!
//! On `/v1/otp/*` Sunbird answers two failures with legacy names in `params.err` and
//! `params.status` (`ERROR_RATE_LIMIT_EXCEEDED`, `OTP_VERIFICATION_FAILED`); `/v2/otp/*`
//! answer the `UOS_...` codes.

use axum::extract::State;
use axum::routing::post;

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::domain::ErrorCode;
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    use Access::{Private, Public};
    vec![
        route("/v1/notification/email", "EMAILNOTI", Public, post(email)),
        route(
            "/private/user/v1/notification/email",
            "EMAILNOTI",
            Private,
            post(email),
        ),
        route("/v2/notification", "NOTI", Public, post(notification_v2)),
        route("/v1/otp/generate", "OTPCRT", Public, post(generate_v1)),
        route("/v2/otp/generate", "OTPCRT", Public, post(generate_v2)),
        route("/v1/otp/verify", "OTPVERFY", Public, post(verify_v1)),
        route("/v2/otp/verify", "OTPVERFY", Public, post(verify_v2)),
    ]
}

async fn email(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(
        state.notifications.send_email(&caller, &body.0).await?,
    ))
}

async fn notification_v2(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state.notifications.send_v2(&caller, &body.0).await?,
    ))
}

async fn generate_v1(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    let outcome = state.otp.generate(&body.0).await;
    Ok(ApiResult(outcome.map_err(|error| {
        error.legacy_name(
            ErrorCode::errorRateLimitExceeded,
            "ERROR_RATE_LIMIT_EXCEEDED",
        )
    })?))
}

async fn generate_v2(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.otp.generate(&body.0).await?))
}

async fn verify_v1(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    let outcome = state.otp.verify(&body.0).await;
    Ok(ApiResult(outcome.map_err(|error| {
        error.legacy_name(ErrorCode::otpVerificationFailed, "OTP_VERIFICATION_FAILED")
    })?))
}

async fn verify_v2(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.otp.verify(&body.0).await?))
}
