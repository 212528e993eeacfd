//! The identity provider for Sunbird clients: the token endpoint of Keycloak (password,
//! refresh-token and client-credentials grants), logout, userinfo, the JWKS and discovery
//! documents, and Sunbird's own refresh API, with Keycloak's answers and error bodies.
//!
//! A password attempt is counted by the user's owner before the password is compared (so
//! concurrent guesses never pass the lockout budget), the comparison runs on the blocking pool,
//! and an unknown, locked or password-less account is compared against a decoy hash and gets
//! the wrong-password answer, byte for byte. Sessions live in the store with the digest of the
//! one refresh token that may be used next; a spent one presented again ends the session.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::actors::user_owner::{Rotation, SignInCommand, SignInGate, SignInReply, UserOwners};
use crate::auth::{LocalSigner, MintClaims};
use crate::clock::Clock;
use crate::domain::DomainError;
use crate::domain::signin::{LockoutPolicy, SessionRecord};
use crate::services::access::{Authority, Caller};
use crate::services::audit;
use crate::services::users::UserService;
use crate::storage::audit::AuditNote;
use crate::storage::{Store, Table, compose_key};

/// The `typ` of refresh and ID tokens, as Keycloak writes them.
const REFRESH_TOKEN_TYPE: &str = "Refresh";
const ID_TOKEN_TYPE: &str = "ID";
/// The row the decoy commit of an uncounted attempt writes: starts with the key separator, so
/// no user's session prefix (`userId␟`) reaches it.
const DECOY_KEY: &str = "\u{1f}signin-decoy";
/// The scope granted when none is asked for (Keycloak's default client scopes).
const DEFAULT_SCOPE: &str = "profile email";

/// A client of the realm: public (no secret) or confidential.
#[derive(Clone)]
pub struct OidcClient {
    pub id: String,
    secret_digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("id", &self.id)
            .field("confidential", &self.secret_digest.is_some())
            .finish()
    }
}

impl OidcClient {
    /// `id` (public) or `id:secret` (confidential), as configured.
    pub fn parse(text: &str) -> OidcClient {
        match text.split_once(':') {
            Some((id, secret)) => OidcClient {
                id: id.to_string(),
                secret_digest: Some(Sha256::digest(secret.as_bytes()).into()),
            },
            None => OidcClient {
                id: text.to_string(),
                secret_digest: None,
            },
        }
    }

    pub fn confidential(&self) -> bool {
        self.secret_digest.is_some()
    }

    /// Whether `presented` authenticates this client (constant time).
    fn accepts(&self, presented: Option<&str>) -> bool {
        match (&self.secret_digest, presented) {
            (None, _) => true,
            (Some(expected), Some(secret)) => {
                let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
                bool::from(expected.ct_eq(&digest))
            }
            (Some(_), None) => false,
        }
    }
}

/// What the sign-in is configured with.
#[derive(Debug, Clone)]
pub struct SignInOptions {
    /// realm name -> the issuer of its tokens.
    pub realms: Vec<(String, String)>,
    pub federation_id: String,
    pub access_ttl_seconds: i64,
    pub refresh_ttl_seconds: i64,
    pub session_max_seconds: i64,
    pub rotate_refresh_tokens: bool,
    pub clients: Vec<OidcClient>,
    pub lockout: LockoutPolicy,
}

/// A refusal in Keycloak's shape: the status, `error` and `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcError {
    pub status: u16,
    pub error: &'static str,
    pub description: Option<&'static str>,
}

impl OidcError {
    const fn new(status: u16, error: &'static str, description: &'static str) -> Self {
        OidcError {
            status,
            error,
            description: Some(description),
        }
    }

    /// The JSON body Keycloak answers with.
    pub fn body(&self) -> Value {
        match self.description {
            Some(description) => json!({"error": self.error, "error_description": description}),
            None => json!({"error": self.error}),
        }
    }
}

pub const REALM_NOT_FOUND: OidcError = OidcError {
    status: 404,
    error: "Realm does not exist",
    description: None,
};
pub const INVALID_CREDENTIALS: OidcError =
    OidcError::new(401, "invalid_grant", "Invalid user credentials");
const INVALID_CLIENT: OidcError = OidcError::new(
    401,
    "invalid_client",
    "Invalid client or Invalid client credentials",
);
const UNSUPPORTED_GRANT: OidcError =
    OidcError::new(400, "unsupported_grant_type", "Unsupported grant_type");
const MISSING_GRANT: OidcError =
    OidcError::new(400, "invalid_request", "Missing form parameter: grant_type");
const MISSING_USERNAME: OidcError =
    OidcError::new(400, "invalid_request", "Missing parameter: username");
const MISSING_REFRESH: OidcError =
    OidcError::new(400, "invalid_request", "Missing parameter: refresh_token");
pub const INVALID_REFRESH: OidcError =
    OidcError::new(400, "invalid_grant", "Invalid refresh token");
/// An expired refresh token: past the idle timeout or the session's absolute end.
const TOKEN_NOT_ACTIVE: OidcError = OidcError::new(400, "invalid_grant", "Token is not active");
const SESSION_NOT_ACTIVE: OidcError = OidcError::new(400, "invalid_grant", "Session not active");
const REFRESH_REUSED: OidcError = OidcError::new(
    400,
    "invalid_grant",
    "Maximum allowed refresh token reuse exceeded",
);
const CLIENT_MISMATCH: OidcError = OidcError::new(
    400,
    "invalid_grant",
    "Invalid refresh token. Token client and authorized client don't match",
);
const NO_SERVICE_ACCOUNT: OidcError = OidcError::new(
    400,
    "unauthorized_client",
    "Client not enabled to retrieve service account",
);
pub const INVALID_TOKEN: OidcError =
    OidcError::new(401, "invalid_token", "Token verification failed");
const NOT_AVAILABLE: OidcError = OidcError::new(
    503,
    "temporarily_unavailable",
    "The sign-in cannot be served now",
);

/// A failure of the service below (store, actors) answered as Keycloak's 503 body; the cause
/// goes to the log, never to the client.
fn unavailable(error: DomainError) -> OidcError {
    tracing::warn!(error = %error, "sign-in failed");
    NOT_AVAILABLE
}

type OidcResult<T> = Result<T, OidcError>;

/// The form of a token, logout or refresh request, and the client credentials of its
/// `Authorization: Basic` header, if any.
#[derive(Debug, Default)]
pub struct OidcRequest {
    pub form: HashMap<String, String>,
    pub basic: Option<(String, String)>,
}

impl OidcRequest {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

#[derive(Clone)]
pub struct SignInService {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    options: SignInOptions,
    signer: LocalSigner,
    users: UserService,
    owners: UserOwners,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// The `f:<federation>:<userId>` subject of a user's tokens (read back with
/// [`crate::auth::user_id_of_subject`]).
fn subject_of(federation: &str, user_id: &str) -> String {
    format!("f:{federation}:{user_id}")
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// 256 random bits, URL-safe: the `jti` of a refresh token, the one secret of a session.
fn random_id() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SignInService {
    /// The sign-in of this instance; `signer: None` leaves it off (every route then answers
    /// that the realm does not exist).
    pub fn new(
        options: SignInOptions,
        signer: Option<LocalSigner>,
        users: UserService,
        owners: UserOwners,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        SignInService {
            inner: signer.map(|signer| {
                Arc::new(Inner {
                    options,
                    signer,
                    users,
                    owners,
                    store,
                    clock,
                })
            }),
        }
    }

    fn realm(&self, realm: &str) -> OidcResult<(&Inner, String)> {
        let inner = self.inner.as_deref().ok_or(REALM_NOT_FOUND)?;
        let issuer = inner
            .options
            .realms
            .iter()
            .find(|(name, _)| name == realm)
            .map(|(_, issuer)| issuer.clone())
            .ok_or(REALM_NOT_FOUND)?;
        Ok((inner, issuer))
    }

    /// `POST /auth/realms/{realm}/protocol/openid-connect/token`.
    pub async fn token(&self, realm: &str, request: &OidcRequest) -> OidcResult<Value> {
        let (inner, issuer) = self.realm(realm)?;
        let grant = request.field("grant_type").ok_or(MISSING_GRANT)?;
        let client = inner.client(request)?;
        match grant {
            "password" => inner.password_grant(&issuer, realm, client, request).await,
            "refresh_token" => {
                let token = request.field("refresh_token").ok_or(MISSING_REFRESH)?;
                inner.refresh(&issuer, Some(client), token).await
            }
            "client_credentials" => inner.client_credentials(&issuer, client, request),
            _ => Err(UNSUPPORTED_GRANT),
        }
    }

    /// Sunbird's `POST /auth/v1/refresh/token` (form field `refresh_token`), for the first
    /// realm: the refresh of the token's own client, which must be a public one unless its
    /// secret is given.
    pub async fn sunbird_refresh(&self, request: &OidcRequest) -> OidcResult<Value> {
        let inner = self.inner.as_deref().ok_or(REALM_NOT_FOUND)?;
        let (_, issuer) = inner.options.realms.first().ok_or(REALM_NOT_FOUND)?;
        let token = request.field("refresh_token").ok_or(MISSING_REFRESH)?;
        let client = match request.field("client_id") {
            Some(_) => Some(inner.client(request)?),
            None => None,
        };
        let answer = inner.refresh(issuer, client, token).await?;
        let mut result = Map::new();
        for field in [
            "access_token",
            "expires_in",
            "refresh_expires_in",
            "refresh_token",
        ] {
            if let Some(value) = answer.get(field) {
                result.insert(field.into(), value.clone());
            }
        }
        Ok(Value::Object(result))
    }

    /// `POST .../protocol/openid-connect/logout`: ends the refresh token's session.
    pub async fn logout(&self, realm: &str, request: &OidcRequest) -> OidcResult<()> {
        let (inner, issuer) = self.realm(realm)?;
        let client = inner.client(request)?;
        let token = request.field("refresh_token").ok_or(MISSING_REFRESH)?;
        let claims = inner.open_refresh(&issuer, token)?;
        if claims.client != client.id {
            return Err(CLIENT_MISMATCH);
        }
        inner
            .owners
            .sign_in(
                &claims.user_id,
                SignInCommand::End {
                    session_id: claims.session_id,
                },
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// `GET|POST .../protocol/openid-connect/userinfo` with the access token as bearer.
    pub async fn userinfo(&self, realm: &str, bearer: Option<&str>) -> OidcResult<Value> {
        let (inner, issuer) = self.realm(realm)?;
        let token = bearer
            .and_then(|header| {
                header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(INVALID_TOKEN)?;
        let now = inner.clock.now().timestamp();
        let claims = inner
            .signer
            .open_own(token, crate::auth::ACCESS_TOKEN_TYPE, &issuer, now)
            .map_err(|error| {
                tracing::info!(reason = error.reason(), "userinfo token rejected");
                INVALID_TOKEN
            })?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(INVALID_TOKEN)?;
        let user_id = crate::auth::user_id_of_subject(subject).ok_or(INVALID_TOKEN)?;
        let session = claims
            .get("sid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let live = inner
            .store
            .get(Table::UserSession, &compose_key(&[user_id, session]))
            .await
            .map_err(|error| unavailable(error.into()))?
            .is_some();
        let profile = match live {
            true => inner
                .users
                .sign_in_profile(user_id)
                .await
                .map_err(unavailable)?,
            false => None,
        };
        let profile = profile.ok_or(OidcError::new(
            401,
            "invalid_token",
            "User session not found or doesn't have client attached on it",
        ))?;
        let mut info = Map::new();
        info.insert("sub".into(), subject.into());
        info.insert("email_verified".into(), profile.email_verified.into());
        let name = [profile.first_name.as_deref(), profile.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            info.insert("name".into(), name.into());
        }
        if let Some(user_name) = profile.user_name {
            info.insert("preferred_username".into(), user_name.into());
        }
        if let Some(first) = profile.first_name {
            info.insert("given_name".into(), first.into());
        }
        if let Some(last) = profile.last_name {
            info.insert("family_name".into(), last.into());
        }
        if let Some(email) = profile.email {
            info.insert("email".into(), email.into());
        }
        Ok(Value::Object(info))
    }

    /// `GET .../protocol/openid-connect/certs`.
    pub fn certs(&self, realm: &str) -> OidcResult<Value> {
        let (inner, _) = self.realm(realm)?;
        Ok(json!({"keys": [inner.signer.jwk()]}))
    }

    /// `GET /auth/realms/{realm}/.well-known/openid-configuration`.
    pub fn discovery(&self, realm: &str) -> OidcResult<Value> {
        let (_, issuer) = self.realm(realm)?;
        let endpoint = |name: &str| format!("{issuer}/protocol/openid-connect/{name}");
        Ok(json!({
            "issuer": issuer,
            "authorization_endpoint": endpoint("auth"),
            "token_endpoint": endpoint("token"),
            "userinfo_endpoint": endpoint("userinfo"),
            "end_session_endpoint": endpoint("logout"),
            "jwks_uri": endpoint("certs"),
            "grant_types_supported": ["password", "refresh_token", "client_credentials"],
            // No browser sign-in (authorization endpoint) is served: see the README.
            "response_types_supported": ["none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "profile", "email"],
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "name", "given_name", "family_name",
                "preferred_username", "email", "email_verified"
            ],
        }))
    }

    /// An administrator lifts a user's lockout (Keycloak's
    /// `DELETE /auth/admin/realms/{realm}/attack-detection/brute-force/users/{id}`).
    pub async fn unlock(&self, realm: &str, caller: &Caller, user_id: &str) -> OidcResult<()> {
        let (inner, _) = self.realm(realm)?;
        inner.require_admin(caller).await?;
        let note: AuditNote = audit::note(caller, "signin.unlock", user_id, json!({}));
        match inner
            .owners
            .sign_in(user_id, SignInCommand::Unlock(Box::new(note)))
            .await
        {
            Ok(_) => Ok(()),
            Err(DomainError::Rule(rule))
                if rule.code == crate::domain::ErrorCode::resourceNotFound =>
            {
                Err(OidcError {
                    status: 404,
                    error: "User not found",
                    description: None,
                })
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Keycloak's brute-force status of a user (`GET` of the same path), for administrators.
    pub async fn lockout_status(
        &self,
        realm: &str,
        caller: &Caller,
        user_id: &str,
    ) -> OidcResult<Value> {
        let (inner, _) = self.realm(realm)?;
        inner.require_admin(caller).await?;
        let record = crate::storage::records::credential(&inner.store, user_id)
            .await
            .map_err(unavailable)?
            .map(|found| found.record)
            .unwrap_or_default();
        let now = inner.clock.now().timestamp_millis();
        Ok(json!({
            "numFailures": record.num_failures,
            "disabled": record.is_locked(&inner.options.lockout, now),
            "lastIPFailure": "n/a",
            "lastFailure": record.last_failure_ms,
        }))
    }
}

/// What a valid refresh token says.
struct RefreshClaims {
    user_id: String,
    session_id: String,
    client: String,
    jti: String,
    scope: String,
}

impl Inner {
    fn client(&self, request: &OidcRequest) -> OidcResult<&OidcClient> {
        let (id, secret) = match &request.basic {
            Some((id, secret)) => (Some(id.as_str()), Some(secret.as_str())),
            None => (request.field("client_id"), request.field("client_secret")),
        };
        let id = id.ok_or(INVALID_CLIENT)?;
        let client = self
            .options
            .clients
            .iter()
            .find(|client| client.id == id)
            .ok_or(INVALID_CLIENT)?;
        if !client.accepts(secret) {
            return Err(INVALID_CLIENT);
        }
        Ok(client)
    }

    async fn require_admin(&self, caller: &Caller) -> OidcResult<()> {
        let forbidden = OidcError {
            status: 403,
            error: "unknown_error",
            description: None,
        };
        if matches!(caller, Caller::Anonymous) {
            return Err(OidcError {
                status: 401,
                error: "HTTP 401 Unauthorized",
                description: None,
            });
        }
        let authority = Authority::of(caller).await.map_err(unavailable)?;
        if authority.is_admin() {
            Ok(())
        } else {
            Err(forbidden)
        }
    }

    async fn password_grant(
        &self,
        issuer: &str,
        realm: &str,
        client: &OidcClient,
        request: &OidcRequest,
    ) -> OidcResult<Value> {
        let username = request.field("username").ok_or(MISSING_USERNAME)?;
        let password = request.field("password").unwrap_or_default().to_string();
        let user_id = self
            .users
            .user_id_by_login(username)
            .await
            .map_err(unavailable)?;
        let gate = match &user_id {
            Some(user_id) => {
                let now_ms = self.clock.now().timestamp_millis();
                let command = SignInCommand::Begin {
                    policy: self.options.lockout,
                    now_ms,
                };
                match self.owners.sign_in(user_id, command).await {
                    Ok(SignInReply::Gate(gate)) => gate,
                    Ok(_) => SignInGate::NoCredential,
                    Err(error) => return Err(unavailable(error)),
                }
            }
            None => SignInGate::NoCredential,
        };
        let hash = match gate {
            SignInGate::Compare(hash) => Some(hash),
            SignInGate::Locked | SignInGate::NoCredential => {
                // A counted attempt costs a durable commit before the comparison; an attempt
                // that counts nothing makes one of the same size, so the answer's time does not
                // tell an unknown or locked account from a wrong password.
                self.decoy_commit().await.map_err(unavailable)?;
                None
            }
        };
        let matched = self
            .users
            .verify_password(hash, password)
            .await
            .map_err(unavailable)?;
        let Some(user_id) = user_id.filter(|_| matched) else {
            tracing::info!(reason = "invalid_user_credentials", "sign-in refused");
            return Err(INVALID_CREDENTIALS);
        };
        self.owners
            .sign_in(&user_id, SignInCommand::Succeeded)
            .await
            .map_err(unavailable)?;
        let scope = request.field("scope").unwrap_or(DEFAULT_SCOPE).to_string();
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let jti = random_id();
        let session = SessionRecord {
            session_id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.clone(),
            realm: realm.to_string(),
            client_id: client.id.clone(),
            scope: scope.clone(),
            started_ms: now_ms,
            refreshed_ms: now_ms,
            expires_ms: now_ms + self.options.session_max_seconds * 1000,
            refresh_digest: digest(&jti),
        };
        match self
            .owners
            .sign_in(&user_id, SignInCommand::Open(Box::new(session.clone())))
            .await
        {
            Ok(SignInReply::Opened(true)) => {}
            Ok(_) => return Err(INVALID_CREDENTIALS),
            Err(error) => return Err(unavailable(error)),
        }
        self.answer(issuer, &session, &jti, &scope)
    }

    /// One durable commit of the decoy row (`user_session`, a key no user's prefix reaches).
    async fn decoy_commit(&self) -> Result<(), DomainError> {
        let mut transaction = crate::storage::Transaction::default();
        // A session row like any other, so the table holds one shape of row.
        let decoy = SessionRecord {
            session_id: DECOY_KEY.to_string(),
            refreshed_ms: self.clock.now().timestamp_millis(),
            ..SessionRecord::default()
        };
        transaction.put_record(
            Table::UserSession,
            DECOY_KEY,
            &decoy,
            crate::storage::Expect::Any,
        )?;
        self.store.commit(transaction).await?;
        Ok(())
    }

    fn open_refresh(&self, issuer: &str, token: &str) -> OidcResult<RefreshClaims> {
        let now = self.clock.now().timestamp();
        let claims = self
            .signer
            .open_own(token, REFRESH_TOKEN_TYPE, issuer, now)
            .map_err(|error| {
                tracing::info!(reason = error.reason(), "refresh token rejected");
                match error {
                    crate::auth::AuthError::Expired => TOKEN_NOT_ACTIVE,
                    _ => INVALID_REFRESH,
                }
            })?;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(INVALID_REFRESH)
        };
        Ok(RefreshClaims {
            user_id: crate::auth::user_id_of_subject(&text("sub")?)
                .ok_or(INVALID_REFRESH)?
                .to_string(),
            session_id: text("sid")?,
            client: text("azp")?,
            jti: text("jti")?,
            scope: text("scope").unwrap_or_default(),
        })
    }

    async fn refresh(
        &self,
        issuer: &str,
        client: Option<&OidcClient>,
        token: &str,
    ) -> OidcResult<Value> {
        let claims = self.open_refresh(issuer, token)?;
        match client {
            Some(client) if client.id != claims.client => return Err(CLIENT_MISMATCH),
            Some(_) => {}
            None => {
                // Sunbird's refresh API names no client: the token's own, if it needs no secret.
                let own = self
                    .options
                    .clients
                    .iter()
                    .find(|known| known.id == claims.client)
                    .ok_or(INVALID_CLIENT)?;
                if own.confidential() {
                    return Err(INVALID_CLIENT);
                }
            }
        }
        let next = random_id();
        let command = SignInCommand::Rotate {
            session_id: claims.session_id.clone(),
            presented: digest(&claims.jti),
            next: digest(&next),
            rotate: self.options.rotate_refresh_tokens,
            now_ms: self.clock.now().timestamp_millis(),
        };
        match self.owners.sign_in(&claims.user_id, command).await {
            Ok(SignInReply::Rotation(Rotation::Rotated(session))) => {
                let jti = if self.options.rotate_refresh_tokens {
                    next
                } else {
                    random_id()
                };
                let scope = if claims.scope.is_empty() {
                    session.scope.clone()
                } else {
                    claims.scope
                };
                self.answer(issuer, &session, &jti, &scope)
            }
            Ok(SignInReply::Rotation(Rotation::Reused)) => {
                tracing::warn!(
                    reason = "refresh_token_reused",
                    "a spent refresh token was presented: its session is ended"
                );
                Err(REFRESH_REUSED)
            }
            Ok(_) => Err(SESSION_NOT_ACTIVE),
            Err(error) => Err(unavailable(error)),
        }
    }

    fn client_credentials(
        &self,
        issuer: &str,
        client: &OidcClient,
        request: &OidcRequest,
    ) -> OidcResult<Value> {
        if !client.confidential() {
            return Err(NO_SERVICE_ACCOUNT);
        }
        let scope = request.field("scope").unwrap_or(DEFAULT_SCOPE).to_string();
        let now = self.clock.now().timestamp();
        let mut claims = MintClaims::new(
            format!("service-account-{}", client.id),
            issuer,
            self.options.access_ttl_seconds,
        );
        claims.extra.insert("azp".into(), client.id.clone().into());
        claims
            .extra
            .insert("clientId".into(), client.id.clone().into());
        claims.extra.insert("scope".into(), scope.clone().into());
        let access = self.signer.mint_at(claims, now).map_err(|error| {
            tracing::error!(error = %error, "token signing failed");
            NOT_AVAILABLE
        })?;
        Ok(json!({
            "access_token": access,
            "expires_in": self.options.access_ttl_seconds,
            "refresh_expires_in": 0,
            "token_type": "bearer",
            "not-before-policy": 0,
            "scope": scope,
        }))
    }

    /// The token answer for `session`, whose next refresh token has `jti`.
    fn answer(
        &self,
        issuer: &str,
        session: &SessionRecord,
        jti: &str,
        scope: &str,
    ) -> OidcResult<Value> {
        let now = self.clock.now();
        let now_s = now.timestamp();
        let subject = subject_of(&self.options.federation_id, &session.user_id);
        let left = (session.expires_ms - now.timestamp_millis()) / 1000;
        let refresh_ttl = self.options.refresh_ttl_seconds.min(left).max(1);
        let signing_failed = |error: crate::auth::AuthError| {
            tracing::error!(error = %error, "token signing failed");
            NOT_AVAILABLE
        };
        let claims = |ttl: i64, token_type: &'static str| {
            let mut claims = MintClaims::new(subject.clone(), issuer, ttl);
            claims.token_type = token_type;
            claims
                .extra
                .insert("azp".into(), session.client_id.clone().into());
            claims
                .extra
                .insert("sid".into(), session.session_id.clone().into());
            claims
                .extra
                .insert("session_state".into(), session.session_id.clone().into());
            claims.extra.insert("scope".into(), scope.into());
            claims
        };
        let access_ttl = self.options.access_ttl_seconds.min(left).max(1);
        let mut access = claims(access_ttl, crate::auth::ACCESS_TOKEN_TYPE);
        access.audience = Some("account".into());
        let access = self.signer.mint_at(access, now_s).map_err(signing_failed)?;
        let mut refresh = claims(refresh_ttl, REFRESH_TOKEN_TYPE);
        refresh.audience = Some(issuer.to_string());
        refresh.id = Some(jti.to_string());
        let refresh = self
            .signer
            .mint_at(refresh, now_s)
            .map_err(signing_failed)?;
        let mut answer = json!({
            "access_token": access,
            "expires_in": access_ttl,
            "refresh_expires_in": refresh_ttl,
            "refresh_token": refresh,
            "token_type": "bearer",
            "not-before-policy": 0,
            "session_state": session.session_id,
            "scope": scope,
        });
        if scope.split_whitespace().any(|part| part == "openid") {
            let mut id = claims(access_ttl, ID_TOKEN_TYPE);
            id.audience = Some(session.client_id.clone());
            let id = self.signer.mint_at(id, now_s).map_err(signing_failed)?;
            answer["id_token"] = id.into();
        }
        Ok(answer)
    }
}
