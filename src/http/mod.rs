//! The HTTP facade: Sunbird's routes on two listeners (public, and internal with `/private`),
//! the envelope, authentication, gateway path aliases and the access log.
//!
//! Handlers stay thin: extract, call one service, wrap the result. Every route is declared once
//! in [`routes`] with its operation code (for `UOS_<OPCODE><NNNN>` error codes) and its access
//! class; the middleware looks the matched route up to authenticate and to write errors.

pub mod bulk;
pub mod consent;
pub mod data_sync;
pub mod envelope;
pub mod extract;
pub mod feed;
pub mod files;
pub mod gateway;
pub mod health;
pub mod locations;
pub mod merge;
pub mod notes;
pub mod notifications;
pub mod oidc;
pub mod orgs;
pub mod policy;
pub mod preferences;
pub mod protocol_errors;
pub mod reset;
pub mod roles;
pub mod server;
pub mod settings;
pub mod tls;
pub mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use crate::domain::{DomainError, ErrorCode};
use crate::services::access::{Caller, CallerResolver};
use crate::services::consent::ConsentService;
use crate::services::data_sync::DataSyncService;
use crate::services::declarations::DeclarationService;
use crate::services::feed::FeedService;
use crate::services::files::FileService;
use crate::services::gateway::ConsumerKeys;
use crate::services::health::HealthService;
use crate::services::locations::LocationService;
use crate::services::managed::ManagedUserService;
use crate::services::merge::MergeService;
use crate::services::migration::MigrationService;
use crate::services::network::{NetworkPolicy, Side};
use crate::services::notes::NoteService;
use crate::services::notifications::NotificationService;
use crate::services::organisations::OrgService;
use crate::services::otp::OtpService;
use crate::services::ownership::OwnershipService;
use crate::services::preferences::PreferenceService;
use crate::services::reset::ResetService;
use crate::services::roles::RoleService;
use crate::services::settings::SettingsService;
use crate::services::signin::SignInService;
use crate::services::tnc::TncService;
use crate::services::users::UserService;
use envelope::{ApiError, EnvelopeBody, InternalCause, JSON_CONTENT_TYPE, render};

/// Who may call a route without more checks in the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A token is optional (Sunbird's public allow-list); an invalid one counts as none.
    Public,
    /// A valid user token is required; otherwise 401 `UOS_0070`.
    Token,
    /// Served on the internal listener only; callers there are trusted services.
    Private,
}

#[derive(Debug, Clone, Copy)]
pub struct RouteMeta {
    pub operation: &'static str,
    pub access: Access,
}

/// Which listener a router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Internal,
}

pub struct AppInner {
    pub callers: CallerResolver,
    pub network: NetworkPolicy,
    pub health: HealthService,
    pub users: UserService,
    pub orgs: OrgService,
    pub roles: RoleService,
    pub locations: LocationService,
    pub preferences: PreferenceService,
    pub settings: SettingsService,
    pub data_sync: DataSyncService,
    pub signin: SignInService,
    pub notifications: NotificationService,
    pub otp: OtpService,
    pub reset: ResetService,
    pub merge: MergeService,
    pub feed: FeedService,
    pub managed: ManagedUserService,
    pub migration: MigrationService,
    pub notes: NoteService,
    pub files: FileService,
    pub bulk: crate::services::bulk::BulkService,
    pub ownership: OwnershipService,
    pub consent: ConsentService,
    pub declarations: DeclarationService,
    pub tnc: TncService,
    pub consumers: ConsumerKeys,
    pub request_timeout: Duration,
    pub body_limit: usize,
    pub json_body_limit: usize,
    pub max_concurrent_requests: usize,
    /// Origins browsers may call from (`*`: any); empty sends no CORS headers.
    pub cors_allowed_origins: Vec<String>,
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// One route: path template, operation code, access class and handlers.
pub struct RouteSpec {
    pub path: &'static str,
    pub operation: &'static str,
    pub access: Access,
    pub handlers: MethodRouter<AppState>,
    /// A file upload: its body may reach `http.body_limit_bytes`; every other route takes at
    /// most `http.json_body_limit_bytes` of JSON.
    pub upload: bool,
}

pub fn route(
    path: &'static str,
    operation: &'static str,
    access: Access,
    handlers: MethodRouter<AppState>,
) -> RouteSpec {
    RouteSpec {
        path,
        operation,
        access,
        handlers,
        upload: false,
    }
}

/// A route taking a multipart file upload (the larger body limit).
pub fn upload_route(
    path: &'static str,
    operation: &'static str,
    access: Access,
    handlers: MethodRouter<AppState>,
) -> RouteSpec {
    RouteSpec {
        upload: true,
        ..route(path, operation, access, handlers)
    }
}

/// Every route of the service.
pub fn routes() -> Vec<RouteSpec> {
    let mut all = Vec::new();
    all.extend(health::routes());
    all.extend(users::routes());
    all.extend(orgs::routes());
    all.extend(roles::routes());
    all.extend(locations::routes());
    all.extend(preferences::routes());
    all.extend(settings::routes());
    all.extend(data_sync::routes());
    all.extend(oidc::routes());
    all.extend(notifications::routes());
    all.extend(reset::routes());
    all.extend(merge::routes());
    all.extend(feed::routes());
    all.extend(consent::routes());
    all.extend(notes::routes());
    all.extend(files::routes());
    all.extend(bulk::routes());
    all
}

#[derive(Clone)]
struct RouterContext {
    state: AppState,
    listener: Listener,
    meta: Arc<HashMap<&'static str, RouteMeta>>,
}

/// The router of one listener, ready to serve (gateway aliases included).
pub fn build_router(state: AppState, listener: Listener) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mut meta = HashMap::new();
    // The public listener routes the private paths too, but answers them only to a consumer the
    // gateway admitted on one of the three gateway routes that expose them (Sunbird's Kong does
    // the same); to anyone else they do not exist there (the middleware answers 404).
    for spec in routes() {
        meta.insert(
            spec.path,
            RouteMeta {
                operation: spec.operation,
                access: spec.access,
            },
        );
        // JSON is parsed whole into memory (at many times its size): most routes get a small
        // limit, uploads the large one.
        let limit = if spec.upload {
            state.body_limit
        } else {
            state.json_body_limit
        };
        router = router.route(spec.path, spec.handlers.layer(DefaultBodyLimit::max(limit)));
    }
    let context = RouterContext {
        state: state.clone(),
        listener,
        meta: Arc::new(meta),
    };
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.json_body_limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            state.request_timeout,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        // Past the concurrency limit a request is shed with 503 at once (the middleware puts it
        // in the envelope), not queued. `Router::layer` wraps every route on its own, so the
        // limit is a global one (one semaphore shared by all routes): a per-route limit would
        // let each route take `max_concurrent_requests` at once.
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async { StatusCode::SERVICE_UNAVAILABLE },
                ))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    state.max_concurrent_requests.max(1),
                )),
        )
        .layer(middleware::from_fn_with_state(context, sunbird_middleware))
        .layer(cors_layer(&state.cors_allowed_origins))
        .with_state(state)
}

/// The CORS policy of `http.cors_allowed_origins`; it also answers browsers' preflights. Tokens
/// travel in headers, never cookies, so no credentials are allowed.
fn cors_layer(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    let layer = CorsLayer::new()
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PATCH,
            axum::http::Method::DELETE,
        ])
        .allow_headers(Any)
        .expose_headers([HeaderName::from_static("x-request-id")]);
    if origins.iter().any(|origin| origin == "*") {
        return layer.allow_origin(Any);
    }
    let listed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(listed))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError(DomainError::rule(
        ErrorCode::resourceNotFound,
        &[uri.path()],
    ))
}

fn request_id_of(request: &Request) -> String {
    for header in ["x-request-id", "x-msgid"] {
        if let Some(value) = request.headers().get(header).and_then(|v| v.to_str().ok()) {
            let value = value.trim();
            // A request id is echoed back: keep it short and printable.
            if !value.is_empty()
                && value.len() <= 128
                && value.chars().all(|c| c.is_ascii_graphic())
            {
                return value.to_string();
            }
        }
    }
    uuid::Uuid::new_v4().to_string()
}

/// Authenticates the request for its route, runs it, and writes the Sunbird envelope and the
/// access log line.
async fn sunbird_middleware(
    State(context): State<RouterContext>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id_of(&request);
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let meta = template
        .as_deref()
        .and_then(|t| context.meta.get(t))
        .copied();
    let peer_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let forwarded_for = header_value(&request, "x-forwarded-for");
    let client = context
        .state
        .network
        .addressing
        .client(peer_ip, forwarded_for.as_deref());
    let peer = client.to_string();
    let side = match context.listener {
        Listener::Public => Side::Public,
        Listener::Internal => Side::Internal,
    };
    let user_agent = request
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect::<String>();

    let token = header_value(&request, "x-authenticated-user-token");
    let service = header_value(&request, "authorization");
    let managed_token = header_value(&request, "x-authenticated-for");
    let credentials = Credentials {
        user_token: token.as_deref(),
        managed_token: managed_token.as_deref(),
        service: service.as_deref(),
    };
    let mut retry_after = None;
    let consumer = request
        .extensions()
        .get::<gateway::GatewayConsumer>()
        .map(|consumer| consumer.0.clone());
    let private_on_public =
        context.listener == Listener::Public && meta.is_some_and(|m| m.access == Access::Private);
    let admitted = if !context.state.network.addressing.admits(side, client) {
        tracing::info!(client.ip = %client, "address refused");
        Err(ApiError(DomainError::forbidden()))
    } else if private_on_public {
        match &consumer {
            Some(name) => Ok(Caller::Consumer(name.clone())),
            None => Err(ApiError(DomainError::rule(
                ErrorCode::resourceNotFound,
                &[&path],
            ))),
        }
    } else {
        match authenticate(&context, credentials, meta).await {
            // A gateway consumer on a route Sunbird leaves to the gateway's ACL, with no user
            // token: trusted there as a service.
            Ok(Caller::Anonymous) => match &consumer {
                Some(name)
                    if template
                        .as_deref()
                        .is_some_and(|t| gateway::CONSUMER_AUTHORISED.contains(&t)) =>
                {
                    Ok(Caller::Consumer(name.clone()))
                }
                _ => Ok(Caller::Anonymous),
            },
            other => other,
        }
    };
    // A private path refused on the public listener answers exactly as an unknown path does.
    let meta = if private_on_public && consumer.is_none() {
        None
    } else {
        meta
    };
    let admitted = match admitted {
        Ok(caller) => {
            let anonymous = matches!(caller, Caller::Anonymous);
            match context
                .state
                .network
                .admit_request(side, template.as_deref(), &path, client, anonymous)
                .await
            {
                Ok(()) => Ok(caller),
                Err(refusal) => {
                    retry_after = Some(refusal.retry_after_seconds);
                    Err(ApiError(DomainError::rule(
                        ErrorCode::errorRateLimitExceeded,
                        &["minute"],
                    )))
                }
            }
        }
        Err(error) => Err(error),
    };
    let (mut response, caller) = match admitted {
        Ok(caller) => {
            request.extensions_mut().insert(caller.clone());
            (next.run(request).await, Some(caller))
        }
        Err(error) => (error.into_response(), None),
    };

    let (answered, body) = match response.extensions_mut().remove::<EnvelopeBody>() {
        Some(body) => (response.status(), Some(body)),
        None if response.status().is_success() => (response.status(), None),
        None if response.extensions().get::<oidc::RawAnswer>().is_some() => {
            (response.status(), None)
        }
        None => {
            let (status, body) = envelope_for_bare_status(response.status());
            (status, Some(body))
        }
    };
    let status = answered.as_u16();
    if let Some(cause) = response.extensions().get::<InternalCause>() {
        tracing::error!(
            request.id = %request_id,
            http.route = template.as_deref().unwrap_or("unmatched"),
            error = %cause.0,
            "request failed"
        );
    }
    let user_id = caller
        .as_ref()
        .and_then(|c| c.user_id().map(str::to_string));
    tracing::info!(
        log.kind = "access",
        request.id = %request_id,
        client.ip = %peer,
        user_agent = %user_agent,
        user.id = user_id.as_deref().unwrap_or("-"),
        http.method = %method,
        http.route = template.as_deref().unwrap_or("unmatched"),
        http.status = status,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    let mut response = match body {
        Some(body) => {
            let bytes = render(&path, &request_id, status, &body, meta.map(|m| m.operation));
            let length = bytes.len();
            let mut rendered = (answered, bytes).into_response();
            let headers = rendered.headers_mut();
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static(JSON_CONTENT_TYPE),
            );
            if let Ok(value) = HeaderValue::from_str(&length.to_string()) {
                headers.insert(HeaderName::from_static("x-response-length"), value);
            }
            rendered
        }
        None => response,
    };
    let headers = response.headers_mut();
    // A handler that set its own (the reset page's CSP, a stored file's sandbox) keeps it.
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(HeaderName::from_static(name))
            .or_insert(HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
    if let Some(seconds) = retry_after {
        headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The headers every answer carries, the router's and the protocol-error envelopes alike.
/// The service answers JSON only: a browser that is made to render an answer as a page runs
/// nothing from it and frames it nowhere; answers carry profiles and tokens, so no shared or
/// browser cache keeps them.
pub(crate) const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
];

/// Status and envelope for responses produced without one (axum's wrong method, the timeout
/// layer's 504, a panic). A wrong method is Sunbird's `invalidOperationName`, answered 400 as
/// the §9 catalogue has it.
fn envelope_for_bare_status(status: StatusCode) -> (StatusCode, EnvelopeBody) {
    let status = match status {
        StatusCode::METHOD_NOT_ALLOWED => StatusCode::BAD_REQUEST,
        other => other,
    };
    let (code, message) = match status.as_u16() {
        404 => (
            ErrorCode::resourceNotFound,
            ErrorCode::resourceNotFound.format(&[""]),
        ),
        413 => (
            ErrorCode::dataSizeError,
            ErrorCode::dataSizeError.format(&["the configured limit"]),
        ),
        504 => (
            ErrorCode::operationTimeout,
            ErrorCode::operationTimeout.template().to_string(),
        ),
        503 => (
            ErrorCode::serviceUnAvailable,
            ErrorCode::serviceUnAvailable.template().to_string(),
        ),
        400 => (
            ErrorCode::invalidOperationName,
            ErrorCode::invalidOperationName.template().to_string(),
        ),
        401..=499 => (
            ErrorCode::invalidRequestData,
            ErrorCode::invalidRequestData.template().to_string(),
        ),
        _ => (
            ErrorCode::serverError,
            ErrorCode::serverError.template().to_string(),
        ),
    };
    (
        status,
        EnvelopeBody::Failure {
            code,
            message,
            result: serde_json::Map::new(),
            bare: false,
            legacy: None,
        },
    )
}

fn header_value(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What a request presents: a user token (`x-authenticated-user-token`) and, on the internal
/// listener, the service credential (`Authorization`).
struct Credentials<'a> {
    user_token: Option<&'a str>,
    /// A parent's managed token for one child (`x-authenticated-for`).
    managed_token: Option<&'a str>,
    service: Option<&'a str>,
}

/// The caller of a request, by listener and route. A user token counts only while its user
/// exists and is active (the resolver decides), so a blocked or deleted user's token stops
/// working at once.
///
/// The internal listener answers only callers with the service credential (health checks
/// aside, for probes). There a request with no user token is the calling service itself
/// (`Caller::Internal`); one with a user token acts as that user, and an invalid user token is
/// refused, never treated as the service.
async fn authenticate(
    context: &RouterContext,
    credentials: Credentials<'_>,
    meta: Option<RouteMeta>,
) -> Result<Caller, ApiError> {
    let unauthorized = || ApiError(DomainError::unauthorized());
    let health = meta.is_some_and(|m| m.operation == health::OPERATION);
    let internal = context.listener == Listener::Internal;
    if internal && !health && !context.state.callers.is_service(credentials.service) {
        tracing::info!(
            reason = "missing_or_wrong_service_credential",
            "internal request refused"
        );
        return Err(unauthorized());
    }
    let presented = credentials.user_token.is_some_and(|t| !t.trim().is_empty());
    let user = context
        .state
        .callers
        .user_acting_for(credentials.user_token, credentials.managed_token)
        .await
        .map_err(ApiError)?;
    match (user, meta.map(|m| m.access)) {
        (Some(principal), _) => Ok(Caller::User(principal)),
        (None, _) if internal && presented && !health => Err(unauthorized()),
        (None, _) if internal => Ok(Caller::Internal),
        (None, Some(Access::Token | Access::Private)) => Err(unauthorized()),
        (None, _) => Ok(Caller::Anonymous),
    }
}
