//! The sign-in as Sunbird clients use Keycloak: a real OpenID Connect client end to end, refresh
//! rotation and its replay, sessions ended by a block, Keycloak's lockout on an injected clock,
//! exact counting under concurrency, Keycloak's error bodies, and Sunbird's refresh API.

use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessToken, ClientId, IssuerUrl, OAuth2TokenResponse, RefreshToken, ResourceOwnerPassword,
    ResourceOwnerUsername, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, keys_of, unique_email};

/// The fields of a form body.
type Form = Vec<(&'static str, &'static str)>;

pub(crate) const PASSWORD: &str = "S3cret!pass";
const REALM: &str = "/auth/realms/sunbird/protocol/openid-connect";

/// A raw answer: status, content type and body text.
pub(crate) struct Raw {
    pub(crate) status: StatusCode,
    content_type: String,
    cache_control: String,
    pub(crate) text: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| json!({"raw": self.text}))
    }
}

async fn form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Raw {
    let response = app
        .client
        .post(format!("{}{path}", app.public))
        .form(fields)
        .send()
        .await
        .expect("sent");
    raw(response).await
}

async fn raw(response: reqwest::Response) -> Raw {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (content_type, cache_control) = (header("content-type"), header("cache-control"));
    let status = response.status();
    let text = response.text().await.expect("body");
    Raw {
        status,
        content_type,
        cache_control,
        text,
    }
}

pub(crate) async fn password_grant(app: &TestApp, username: &str, password: &str) -> Raw {
    form(
        app,
        &format!("{REALM}/token"),
        &[
            ("grant_type", "password"),
            ("client_id", "portal"),
            ("username", username),
            ("password", password),
        ],
    )
    .await
}

pub(crate) async fn refresh(app: &TestApp, token: &str) -> Raw {
    form(
        app,
        &format!("{REALM}/token"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "portal"),
            ("refresh_token", token),
        ],
    )
    .await
}

/// A user with a password: id and email.
async fn password_user(app: &TestApp) -> (String, String) {
    let email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Sign", "lastName": "In", "email": email,
                            "userName": format!("s{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
                            "password": PASSWORD}))
        .await;
    (id, email)
}

async fn signed_in(app: &TestApp, email: &str) -> Value {
    let answer = password_grant(app, email, PASSWORD).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

fn assert_keycloak_error(answer: &Raw, status: u16, error: &str, description: &str) {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.text);
    assert_eq!(
        answer.json(),
        json!({"error": error, "error_description": description})
    );
    assert_eq!(answer.content_type, "application/json");
}

/// An app whose public listener is at a port chosen before it starts, so the issuer of its
/// realm is its own address (what a real OpenID Connect client checks).
async fn app_at_own_address(extra: &[(&str, &str)]) -> (TestApp, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let mut env = vec![
        ("USERORG__HTTP__LISTEN", listen.as_str()),
        ("USERORG__SIGNIN__PUBLIC_BASE_URL", base.as_str()),
    ];
    env.extend_from_slice(extra);
    let app = TestApp::spawn_with(&env).await;
    (app, base)
}

#[tokio::test]
async fn a_real_openid_connect_client_signs_in_refreshes_and_logs_out() {
    let (app, base) = app_at_own_address(&[]).await;
    let (id, email) = password_user(&app).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let issuer = IssuerUrl::new(format!("{base}/auth/realms/sunbird")).expect("issuer");
    let metadata = CoreProviderMetadata::discover_async(issuer, &http)
        .await
        .expect("discovery and JWKS");
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new("portal".into()), None);
    let username = ResourceOwnerUsername::new(email.to_uppercase());
    let password = ResourceOwnerPassword::new(PASSWORD.into());
    let tokens = client
        .exchange_password(&username, &password)
        .expect("token endpoint")
        .add_scope(Scope::new("openid".into()))
        .request_async(&http)
        .await
        .expect("password grant");
    assert!(tokens.id_token().is_some(), "openid scope: an ID token");
    assert_eq!(
        tokens.expires_in(),
        Some(std::time::Duration::from_secs(300))
    );
    let access = tokens.access_token().secret().clone();

    // The access token is a Sunbird user token: the service takes it like Keycloak's.
    let read = app.get(&format!("/v1/user/read/{id}"), Some(&access)).await;
    assert_eq!(read.assert_ok()["response"]["id"], id.as_str());

    let info: openidconnect::core::CoreUserInfoClaims = client
        .user_info(AccessToken::new(access.clone()), None)
        .expect("userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(
        info.subject().as_str(),
        format!("f:cassandrafederationid:{id}")
    );
    assert_eq!(
        info.email().map(|e| e.as_str().to_string()),
        Some(email.clone())
    );

    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().expect("refresh token"))
        .expect("token endpoint")
        .request_async(&http)
        .await
        .expect("refresh grant");
    let next_access = refreshed.access_token().secret().clone();
    assert_ne!(next_access, access);
    app.get(&format!("/v1/user/read/{id}"), Some(&next_access))
        .await
        .assert_ok();

    let next_refresh = refreshed.refresh_token().expect("rotated").secret().clone();
    let logout = form(
        &app,
        &format!("{REALM}/logout"),
        &[("client_id", "portal"), ("refresh_token", &next_refresh)],
    )
    .await;
    assert_eq!(logout.status, 204, "{}", logout.text);
    assert_keycloak_error(
        &refresh(&app, &next_refresh).await,
        400,
        "invalid_grant",
        "Session not active",
    );
    let after: Result<openidconnect::core::CoreUserInfoClaims, _> = client
        .user_info(AccessToken::new(next_access), None)
        .expect("userinfo endpoint")
        .request_async(&http)
        .await;
    assert!(after.is_err(), "no userinfo for an ended session");
    let refused = client
        .exchange_refresh_token(&RefreshToken::new(next_refresh))
        .expect("token endpoint")
        .request_async(&http)
        .await;
    assert!(refused.is_err());
    app.stop().await;
}

#[tokio::test]
async fn the_username_is_an_email_a_phone_or_a_user_name() {
    let app = TestApp::spawn().await;
    let phone = crate::helpers::unique_phone();
    let user_name = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    app.create_user(
        json!({"firstName": "Phone", "phone": phone, "userName": user_name,
                           "password": PASSWORD}),
    )
    .await;
    for login in [phone.clone(), user_name.to_uppercase()] {
        let answer = password_grant(&app, &login, PASSWORD).await;
        assert_eq!(answer.status, 200, "{login}: {}", answer.text);
    }
    // A user without a password cannot sign in, and is not told so.
    let email = unique_email();
    app.create_user(json!({"firstName": "NoPassword", "email": email}))
        .await;
    assert_keycloak_error(
        &password_grant(&app, &email, PASSWORD).await,
        401,
        "invalid_grant",
        "Invalid user credentials",
    );
    app.stop().await;
}

#[tokio::test]
async fn the_token_answer_has_keycloaks_fields() {
    let app = TestApp::spawn().await;
    let (_, email) = password_user(&app).await;
    let answer = password_grant(&app, &email, PASSWORD).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.cache_control, "no-store");
    let body = answer.json();
    assert_eq!(
        keys_of(&body),
        [
            "access_token",
            "expires_in",
            "refresh_expires_in",
            "refresh_token",
            "token_type",
            "not-before-policy",
            "session_state",
            "scope"
        ]
    );
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["refresh_expires_in"], 1800);
    assert_eq!(body["scope"], "profile email");
    // The access token's claims, as Sunbird's Keycloak federation writes them.
    let payload = body["access_token"]
        .as_str()
        .expect("jwt")
        .split('.')
        .nth(1)
        .expect("payload");
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("claims");
    assert_eq!(claims["iss"], "http://localhost:9000/auth/realms/sunbird");
    assert_eq!(claims["typ"], "Bearer");
    assert_eq!(claims["azp"], "portal");
    assert_eq!(claims["sid"], body["session_state"]);
    assert!(
        claims["sub"]
            .as_str()
            .expect("sub")
            .starts_with("f:cassandrafederationid:")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_spent_refresh_token_is_refused_and_its_replay_ends_the_session() {
    let app = TestApp::spawn().await;
    let (_, email) = password_user(&app).await;
    let first = signed_in(&app, &email).await;
    let first_refresh = first["refresh_token"].as_str().expect("rt").to_string();
    let second = refresh(&app, &first_refresh).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let second_refresh = second.json()["refresh_token"]
        .as_str()
        .expect("rt")
        .to_string();
    assert_ne!(second_refresh, first_refresh);
    // The spent token again: refused, and the session is over for everyone.
    assert_keycloak_error(
        &refresh(&app, &first_refresh).await,
        400,
        "invalid_grant",
        "Maximum allowed refresh token reuse exceeded",
    );
    assert_keycloak_error(
        &refresh(&app, &second_refresh).await,
        400,
        "invalid_grant",
        "Session not active",
    );
    // Other sessions of the user are untouched.
    let other = signed_in(&app, &email).await;
    assert_eq!(
        refresh(&app, other["refresh_token"].as_str().expect("rt"))
            .await
            .status,
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn refresh_tokens_end_with_the_idle_timeout_and_the_session_maximum() {
    let app = TestApp::spawn_with(&[
        ("USERORG__SIGNIN__REFRESH_TOKEN_TTL_SECONDS", "300"),
        ("USERORG__SIGNIN__SESSION_MAX_SECONDS", "500"),
    ])
    .await;
    let (_, email) = password_user(&app).await;
    // Idle: a refresh token unused for longer than its lifetime.
    let idle = signed_in(&app, &email).await;
    app.clock.advance(chrono::Duration::seconds(301));
    assert_keycloak_error(
        &refresh(&app, idle["refresh_token"].as_str().expect("rt")).await,
        400,
        "invalid_grant",
        "Token is not active",
    );
    // Kept alive by refreshes, the session still ends at its maximum.
    let mut token = signed_in(&app, &email).await["refresh_token"]
        .as_str()
        .expect("rt")
        .to_string();
    for _ in 0..2 {
        app.clock.advance(chrono::Duration::seconds(200));
        let next = refresh(&app, &token).await;
        assert_eq!(next.status, 200, "{}", next.text);
        let body = next.json();
        assert!(body["refresh_expires_in"].as_i64().expect("ttl") <= 300);
        token = body["refresh_token"].as_str().expect("rt").to_string();
    }
    // 400 s in: 100 s left, whatever the idle timeout says.
    app.clock.advance(chrono::Duration::seconds(101));
    assert_keycloak_error(
        &refresh(&app, &token).await,
        400,
        "invalid_grant",
        "Token is not active",
    );
    app.stop().await;
}

#[tokio::test]
async fn reusable_refresh_tokens_when_rotation_is_off() {
    let app = TestApp::spawn_with(&[("USERORG__SIGNIN__ROTATE_REFRESH_TOKENS", "false")]).await;
    let (_, email) = password_user(&app).await;
    let first = signed_in(&app, &email).await;
    let token = first["refresh_token"].as_str().expect("rt");
    for _ in 0..3 {
        let again = refresh(&app, token).await;
        assert_eq!(again.status, 200, "{}", again.text);
    }
    app.stop().await;
}

#[tokio::test]
async fn blocking_a_user_ends_their_sessions_at_once() {
    let app = TestApp::spawn().await;
    let (id, email) = password_user(&app).await;
    let tokens = signed_in(&app, &email).await;
    signed_in(&app, &email).await;
    let sessions = |app: &TestApp, id: String| {
        let store = app.stored();
        async move {
            store
                .scan(
                    userorg::storage::Table::UserSession,
                    &userorg::storage::key_prefix(&id),
                    None,
                    100,
                )
                .await
                .expect("scan")
                .len()
        }
    };
    assert_eq!(sessions(&app, id.clone()).await, 2);
    app.post(
        "/v1/user/block",
        json!({"userId": id}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    assert_eq!(sessions(&app, id.clone()).await, 0, "both sessions ended");
    let access = tokens["access_token"].as_str().expect("at");
    app.get(&format!("/v1/user/read/{id}"), Some(access))
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    assert_keycloak_error(
        &refresh(&app, tokens["refresh_token"].as_str().expect("rt")).await,
        400,
        "invalid_grant",
        "Session not active",
    );
    // A blocked user cannot sign in either, and learns nothing more than a wrong password.
    assert_keycloak_error(
        &password_grant(&app, &email, PASSWORD).await,
        401,
        "invalid_grant",
        "Invalid user credentials",
    );
    app.stop().await;
}

async fn lockout_status(app: &TestApp, id: &str) -> Value {
    let response = app
        .client
        .get(format!(
            "{}/auth/admin/realms/sunbird/attack-detection/brute-force/users/{id}",
            app.public
        ))
        .header("x-authenticated-user-token", &app.admin_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_for_the_wait_on_the_injected_clock() {
    let app = TestApp::spawn_with(&[
        ("USERORG__SIGNIN__BRUTE_FORCE__FAILURE_FACTOR", "3"),
        ("USERORG__SIGNIN__BRUTE_FORCE__WAIT_INCREMENT_SECONDS", "60"),
    ])
    .await;
    let (id, email) = password_user(&app).await;
    let wrong = password_grant(&app, &email, "Wrong#pass1").await;
    assert_keycloak_error(&wrong, 401, "invalid_grant", "Invalid user credentials");
    // Case variants of the name share one counter.
    password_grant(&app, &email.to_uppercase(), "Wrong#pass2").await;
    password_grant(&app, &email, "Wrong#pass3").await;
    let status = lockout_status(&app, &id).await;
    assert_eq!(status["numFailures"], 3);
    assert_eq!(status["disabled"], true);
    // Locked: the right password gets the wrong-password answer, byte for byte.
    let locked = password_grant(&app, &email, PASSWORD).await;
    assert_eq!((locked.status, &locked.text), (wrong.status, &wrong.text));
    app.clock.advance(chrono::Duration::seconds(59));
    let still = password_grant(&app, &email, PASSWORD).await;
    assert_eq!((still.status, &still.text), (wrong.status, &wrong.text));
    app.clock.advance(chrono::Duration::seconds(2));
    let after = password_grant(&app, &email, PASSWORD).await;
    assert_eq!(after.status, 200, "accepted after the wait: {}", after.text);
    // A success starts the count again.
    assert_eq!(lockout_status(&app, &id).await["numFailures"], 0);

    // An unknown account answers exactly as a wrong password does.
    let unknown = password_grant(&app, &unique_email(), "Wrong#pass1").await;
    assert_eq!(
        (unknown.status, &unknown.content_type, &unknown.text),
        (wrong.status, &wrong.content_type, &wrong.text)
    );
    app.stop().await;
}

#[tokio::test]
async fn an_administrator_lifts_a_lockout() {
    let app = TestApp::spawn_with(&[
        ("USERORG__SIGNIN__BRUTE_FORCE__FAILURE_FACTOR", "2"),
        ("USERORG__SIGNIN__BRUTE_FORCE__PERMANENT_LOCKOUT", "true"),
    ])
    .await;
    let (id, email) = password_user(&app).await;
    password_grant(&app, &email, "Wrong#pass1").await;
    password_grant(&app, &email, "Wrong#pass1").await;
    app.clock.advance(chrono::Duration::days(30));
    assert_eq!(password_grant(&app, &email, PASSWORD).await.status, 401);
    let path = format!(
        "{}/auth/admin/realms/sunbird/attack-detection/brute-force/users/{id}",
        app.public
    );
    let (other, _) = password_user(&app).await;
    let by_user = app
        .client
        .delete(&path)
        .header("x-authenticated-user-token", app.token_for(&other))
        .send()
        .await
        .expect("sent");
    assert_eq!(by_user.status(), 403);
    let by_admin = app
        .client
        .delete(&path)
        .header("x-authenticated-user-token", &app.admin_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(by_admin.status(), 204);
    assert_eq!(password_grant(&app, &email, PASSWORD).await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_wrong_passwords_are_all_counted() {
    let app =
        TestApp::spawn_with(&[("USERORG__SIGNIN__BRUTE_FORCE__FAILURE_FACTOR", "1000")]).await;
    let (id, email) = password_user(&app).await;
    let attempts = (0..64).map(|_| password_grant(&app, &email, "Wrong#pass1"));
    let answers = futures::future::join_all(attempts).await;
    assert!(answers.iter().all(|answer| answer.status == 401));
    assert_eq!(lockout_status(&app, &id).await["numFailures"], 64);
    app.stop().await;
}

#[tokio::test]
async fn clients_grants_and_realms_are_refused_as_keycloak_refuses_them() {
    let app = TestApp::spawn_with(&[(
        "USERORG__SIGNIN__CLIENTS",
        "portal,android,reports:s3cret-x",
    )])
    .await;
    let (_, email) = password_user(&app).await;
    let token = format!("{REALM}/token");
    let cases: Vec<(Form, u16, &str, &str)> = vec![
        (
            vec![("client_id", "portal")],
            400,
            "invalid_request",
            "Missing form parameter: grant_type",
        ),
        (
            vec![("grant_type", "password"), ("client_id", "nobody")],
            401,
            "invalid_client",
            "Invalid client or Invalid client credentials",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "reports"),
                ("client_secret", "bad"),
            ],
            401,
            "invalid_client",
            "Invalid client or Invalid client credentials",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "portal"),
            ],
            400,
            "unsupported_grant_type",
            "Unsupported grant_type",
        ),
        (
            vec![("grant_type", "password"), ("client_id", "portal")],
            400,
            "invalid_request",
            "Missing parameter: username",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", "portal"),
                ("refresh_token", "x.y.z"),
            ],
            400,
            "invalid_grant",
            "Invalid refresh token",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "portal"),
            ],
            400,
            "unauthorized_client",
            "Client not enabled to retrieve service account",
        ),
    ];
    for (fields, status, error, description) in cases {
        assert_keycloak_error(
            &form(&app, &token, &fields).await,
            status,
            error,
            description,
        );
    }
    // A refresh token of one client is not another's.
    let tokens = signed_in(&app, &email).await;
    let other_client = form(
        &app,
        &token,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "android"),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().expect("rt"),
            ),
        ],
    )
    .await;
    assert_keycloak_error(
        &other_client,
        400,
        "invalid_grant",
        "Invalid refresh token. Token client and authorized client don't match",
    );
    // A confidential client: client credentials with HTTP Basic, no refresh token.
    let service = app
        .client
        .post(format!("{}{token}", app.public))
        .basic_auth("reports", Some("s3cret-x"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("sent");
    let service = raw(service).await;
    assert_eq!(service.status, 200, "{}", service.text);
    let body = service.json();
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none());
    // An unknown realm.
    let realm = app
        .client
        .get(format!(
            "{}/auth/realms/nowhere/.well-known/openid-configuration",
            app.public
        ))
        .send()
        .await
        .expect("sent");
    let realm = raw(realm).await;
    assert_eq!(realm.status, 404);
    assert_eq!(realm.json(), json!({"error": "Realm does not exist"}));
    app.stop().await;
}

#[tokio::test]
async fn sunbirds_refresh_api_answers_its_envelope_also_through_the_gateway() {
    let app = TestApp::spawn().await;
    let (_, email) = password_user(&app).await;
    let tokens = signed_in(&app, &email).await;
    let mut token = tokens["refresh_token"].as_str().expect("rt").to_string();
    for path in ["/auth/v1/refresh/token", "/api/auth/v1/refresh/token"] {
        let answer = form(&app, path, &[("refresh_token", &token)]).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        assert_eq!(answer.content_type, "application/json");
        let body = answer.json();
        assert_eq!(body["id"], "api.refresh.token");
        assert_eq!(body["ver"], "1.0");
        assert_eq!(body["params"]["status"], "successful");
        assert_eq!(body["responseCode"], "OK");
        assert_eq!(
            keys_of(&body["result"]),
            [
                "access_token",
                "expires_in",
                "refresh_expires_in",
                "refresh_token"
            ]
        );
        token = body["result"]["refresh_token"]
            .as_str()
            .expect("rt")
            .to_string();
    }
    let refused = form(&app, "/auth/v1/refresh/token", &[("refresh_token", "nope")]).await;
    assert_eq!(refused.status, 400);
    let body = refused.json();
    assert_eq!(body["params"]["status"], "failed");
    assert_eq!(body["params"]["err"], "invalid_grant");
    assert_eq!(body["params"]["errmsg"], "Invalid refresh token");
    assert_eq!(body["responseCode"], "CLIENT_ERROR");
    app.stop().await;
}
