//! The gateway paths of Sunbird's Kong, row by row: each reaches the service route the
//! gateway table names (checked by answering exactly as that route answers the same request),
//! with Kong's prefix rules and its answer for a path no route matches.

use reqwest::Method;
use serde_json::{Value, json};

use userorg::storage::{Store, Table};

use crate::helpers::{Reply, TestApp, unique_email};
use crate::orgs::create_tenant;

/// Every gateway row of `sunbird-gateway.md` §2 (and the refresh API of §3): the gateway path
/// (`{id}` where a segment follows), the method of the service route, and the service path it
/// reaches. Written out from the reference, not from the service's own table.
const ROWS: &[(&str, &str, &str)] = &[
    ("/api/user/v1/create", "POST", "/v1/user/create"),
    ("/api/user/v2/create", "POST", "/v2/user/create"),
    ("/api/user/v3/create", "POST", "/v3/user/create"),
    ("/api/user/v4/create", "POST", "/v4/user/create"),
    ("/api/user/v1/sso/create", "POST", "/v1/ssouser/create"),
    ("/api/user/v1/signup", "POST", "/v1/user/signup"),
    ("/api/user/v2/signup", "POST", "/v2/user/signup"),
    (
        "/api/user/v1/managed/create",
        "POST",
        "/v1/manageduser/create",
    ),
    (
        "/api/user/v2/managed/create",
        "POST",
        "/v2/manageduser/create",
    ),
    ("/api/user/v1/read/{id}", "GET", "/v1/user/read/{id}"),
    ("/api/user/v2/read/{id}", "GET", "/v2/user/read/{id}"),
    ("/api/user/v3/read/{id}", "GET", "/v3/user/read/{id}"),
    ("/api/user/v4/read/{id}", "GET", "/v4/user/read/{id}"),
    ("/api/user/v5/read/{id}", "GET", "/v5/user/read/{id}"),
    (
        "/api/user/private/v1/read/{id}",
        "GET",
        "/private/user/v1/read/{id}",
    ),
    ("/api/user/v1/profile/read", "POST", "/v1/user/getuser"),
    (
        "/api/user/v1/get/email/{id}",
        "GET",
        "/v1/user/get/email/{id}",
    ),
    (
        "/api/user/v2/get/email/{id}",
        "GET",
        "/v2/user/get/email/{id}",
    ),
    (
        "/api/user/v1/exists/email/{id}",
        "GET",
        "/v1/user/exists/email/{id}",
    ),
    (
        "/api/user/v2/exists/email/{id}",
        "GET",
        "/v2/user/exists/email/{id}",
    ),
    ("/api/user/v1/managed/{id}", "GET", "/v1/user/managed/{id}"),
    ("/api/user/v1/search", "POST", "/v1/user/search"),
    ("/api/user/v2/search", "POST", "/v2/user/search"),
    ("/api/user/v3/search", "POST", "/v3/user/search"),
    ("/api/user/v1/update", "PATCH", "/v1/user/update"),
    ("/api/user/v2/update", "PATCH", "/v2/user/update"),
    ("/api/user/v3/update", "PATCH", "/v3/user/update"),
    ("/api/user/v1/block", "POST", "/v1/user/block"),
    ("/api/user/v1/unblock", "POST", "/v1/user/unblock"),
    ("/api/user/v1/delete", "POST", "/v1/user/delete"),
    ("/api/data/v1/role/read", "GET", "/v1/role/read"),
    (
        "/api/user/v1/role/read/{id}",
        "GET",
        "/v1/user/role/read/{id}",
    ),
    ("/api/user/v1/role/assign", "POST", "/v1/user/assign/role"),
    ("/api/user/v2/role/assign", "POST", "/v2/user/assign/role"),
    (
        "/api/user/private/v1/assign/role",
        "POST",
        "/private/user/v1/assign/role",
    ),
    ("/api/user/v1/tnc/accept", "POST", "/v1/user/tnc/accept"),
    (
        "/api/user/v1/consent/update",
        "POST",
        "/v1/user/consent/update",
    ),
    ("/api/user/v1/consent/read", "POST", "/v1/user/consent/read"),
    ("/api/user/v2/consent/read", "POST", "/v2/user/consent/read"),
    (
        "/api/user/v1/declarations",
        "PATCH",
        "/v1/user/declarations",
    ),
    (
        "/api/user/v1/account/merge",
        "PATCH",
        "/private/user/v1/account/merge",
    ),
    ("/api/user/v1/migrate", "POST", "/v1/user/migrate"),
    (
        "/api/private/user/v1/password/reset",
        "POST",
        "/private/user/v1/password/reset",
    ),
    ("/api/user/v1/feed/{id}", "GET", "/v1/user/feed/{id}"),
    ("/api/user/feed/v1/create", "POST", "/v1/user/feed/create"),
    ("/api/user/feed/v1/delete", "POST", "/v1/user/feed/delete"),
    ("/api/user/feed/v1/update", "PATCH", "/v1/user/feed/update"),
    ("/api/otp/v1/generate", "POST", "/v1/otp/generate"),
    ("/api/otp/v1/verify", "POST", "/v1/otp/verify"),
    ("/api/otp/v2/generate", "POST", "/v2/otp/generate"),
    ("/api/otp/v2/verify", "POST", "/v2/otp/verify"),
    ("/api/org/v1/create", "POST", "/v1/org/create"),
    ("/api/org/v1/update", "PATCH", "/v1/org/update"),
    (
        "/api/org/v1/status/update",
        "PATCH",
        "/v1/org/status/update",
    ),
    ("/api/org/v1/read", "POST", "/v1/org/read"),
    ("/api/org/v1/search", "POST", "/v1/org/search"),
    ("/api/org/v1/ext/search", "POST", "/v1/org/search"),
    ("/api/org/v2/search", "POST", "/v2/org/search"),
    ("/api/org/v1/assign/key", "PATCH", "/v1/org/assign/key"),
    (
        "/api/org/v1/update/encryptionkey",
        "PATCH",
        "/v1/org/update/encryptionkey",
    ),
    (
        "/api/org/v2/preferences/create",
        "POST",
        "/v2/org/preferences/create",
    ),
    (
        "/api/org/v2/preferences/update",
        "PATCH",
        "/v2/org/preferences/update",
    ),
    (
        "/api/org/v2/preferences/read",
        "POST",
        "/v2/org/preferences/read",
    ),
    (
        "/api/data/v1/location/create",
        "POST",
        "/v1/location/create",
    ),
    (
        "/api/data/v1/location/update",
        "PATCH",
        "/v1/location/update",
    ),
    (
        "/api/data/v1/location/search",
        "POST",
        "/v1/location/search",
    ),
    (
        "/api/data/v1/location/delete/{id}",
        "DELETE",
        "/v1/location/delete/{id}",
    ),
    ("/api/user/v1/upload", "POST", "/v1/user/upload"),
    ("/api/org/v1/upload", "POST", "/v1/org/upload"),
    (
        "/api/data/v1/bulk/location/upload",
        "POST",
        "/v1/bulk/location/upload",
    ),
    (
        "/api/data/v1/upload/status/{id}",
        "GET",
        "/v1/upload/status/{id}",
    ),
    ("/api/data/v1/index/sync", "POST", "/v1/data/sync"),
    (
        "/api/data/v1/system/settings/get/{id}",
        "GET",
        "/v1/system/settings/get/{id}",
    ),
    (
        "/api/data/v1/system/settings/list",
        "GET",
        "/v1/system/settings/list",
    ),
    (
        "/api/data/v1/system/settings/set",
        "POST",
        "/v1/system/settings/set",
    ),
    (
        "/api/user/v1/notification/email",
        "POST",
        "/v1/notification/email",
    ),
    ("/api/notes/v1/create", "POST", "/v1/note/create"),
    ("/api/notes/v1/read/{id}", "GET", "/v1/note/read/{id}"),
    ("/api/notes/v1/update/{id}", "PATCH", "/v1/note/update/{id}"),
    ("/api/notes/v1/search", "POST", "/v1/note/search"),
    (
        "/api/notes/v1/delete/{id}",
        "DELETE",
        "/v1/note/delete/{id}",
    ),
    ("/api/user/v1/badges/add", "POST", "/v1/user/badges/add"),
    ("/api/org/v1/badges/list", "POST", "/v1/badges/list"),
    (
        "/api/auth/v1/refresh/token",
        "POST",
        "/auth/v1/refresh/token",
    ),
    (
        "/api/user/v1/ownership/transfer",
        "POST",
        "/v1/user/ownership/transfer",
    ),
];

/// The envelope without what differs between two answers to the same request.
fn comparable(reply: &Reply) -> Value {
    let mut body = reply.body.clone();
    if let Some(object) = body.as_object_mut() {
        object.remove("ts");
    }
    if let Some(params) = body.get_mut("params").and_then(Value::as_object_mut) {
        params.remove("resmsgid");
        params.remove("msgid");
    }
    json!({"status": reply.status.as_u16(), "body": body})
}

async fn call(app: &TestApp, base: &str, method: &str, path: &str, token: &str) -> Reply {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let body = (method != Method::GET && method != Method::DELETE).then(|| json!({"request": {}}));
    app.send(method, format!("{base}{path}"), body, Some(token))
        .await
}

#[tokio::test]
async fn every_gateway_row_reaches_its_service_route() {
    let app = TestApp::spawn().await;
    let id = app.admin_id.clone();
    let token = app.admin_token.clone();
    assert_eq!(
        ROWS.len(),
        85,
        "83 gateway rows, the refresh API, ownership transfer"
    );
    let mut served = 0;
    for (gateway, method, service) in ROWS {
        let gateway = gateway.replace("{id}", &id);
        let service = service.replace("{id}", &id);
        // Private service paths are served on the internal listener only.
        let base = if service.starts_with("/private/") {
            &app.internal
        } else {
            &app.public
        };
        let through_gateway = call(&app, base, method, &gateway, &token).await;
        let direct = call(&app, base, method, &service, &token).await;
        assert_eq!(
            comparable(&through_gateway),
            comparable(&direct),
            "{method} {gateway} answers as {service}"
        );
        if through_gateway.status != 404 {
            served += 1;
        }
    }
    // Most rows reach a route that exists (the rest belong to capabilities still to come, and
    // answer the service's own 404 for the service path, as asserted above).
    assert!(served >= 40, "{served} rows reached a served route");
    app.stop().await;
}

#[tokio::test]
async fn the_v2_role_assignment_is_reached_through_its_gateway_path() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let tenant = create_tenant(
        &app,
        &format!("gw{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
    )
    .await;
    let user = app
        .create_user(json!({"firstName": "G", "email": unique_email()}))
        .await;
    let reply = app
        .post(
            "/api/user/v2/role/assign",
            json!({"userId": user, "roles": [{"role": "ORG_ADMIN", "operation": "add", "scope": [{"organisationId": tenant}]}]}),
            admin,
        )
        .await;
    assert_eq!(reply.assert_ok(), &json!({"response": "SUCCESS"}));
    assert_eq!(reply.body["id"], "api.user.assign.role");
    let read = app.get(&format!("/api/user/v5/read/{user}"), admin).await;
    let roles = &read.assert_ok()["response"]["roles"];
    assert_eq!(roles[0]["role"], "ORG_ADMIN");
    assert_eq!(roles[0]["scope"], json!([{"organisationId": tenant}]));
    app.stop().await;
}

#[tokio::test]
async fn kong_prefix_rules_and_its_answer_for_an_unknown_path() {
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();
    // `/api/user/v1/feed/create` also matches the `userFeed` prefix, and reaches the same
    // service route as the dedicated feed route.
    let quirk = call(
        &app,
        &app.public,
        "POST",
        "/api/user/v1/feed/create",
        &token,
    )
    .await;
    let direct = call(&app, &app.public, "POST", "/v1/user/feed/create", &token).await;
    assert_eq!(comparable(&quirk), comparable(&direct));
    // No `/` boundary: the rest is appended with a `/` put in front of it.
    let glued = app
        .get(&format!("/api/user/v5/read{}", app.admin_id), Some(&token))
        .await;
    assert_eq!(glued.assert_ok()["response"]["id"], app.admin_id.as_str());
    // A path no gateway route matches: Kong's own answer, byte for byte.
    for path in ["/api/unknown/v1/x", "/api/user/v1/lookup", "/api"] {
        let response = app
            .client
            .post(format!("{}{path}", app.public))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(
            response.text().await.expect("body"),
            "{\"message\":\"no route and no API found with those values\"}\n"
        );
    }
    app.stop().await;
}

/// The consumer key of the test apps with `require_api_key` (base64 of 32 bytes).
const CONSUMER_KEY: &str = "Z2F0ZXdheS1jb25zdW1lci1rZXktb2YtdGhlLXRlc3Q=";

/// [`CONSUMER_KEY`] as the 32 bytes the keys are derived from.
fn consumer_key() -> [u8; 32] {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(CONSUMER_KEY)
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

async fn app_requiring_keys() -> (TestApp, userorg::services::gateway::ConsumerKeys) {
    let app = TestApp::spawn_with(&[
        ("USERORG__GATEWAY__REQUIRE_API_KEY", "true"),
        ("USERORG__GATEWAY__CONSUMER_KEY", CONSUMER_KEY),
    ])
    .await;
    let key = consumer_key();
    let keys =
        userorg::services::gateway::ConsumerKeys::new(app.stored(), app.clock.clone(), key, true);
    (app, keys)
}

/// A raw answer to a request: status and body text.
async fn kong(
    app: &TestApp,
    method: Method,
    path: &str,
    consumer: Option<&str>,
    user: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let mut request = app.client.request(method, format!("{}{path}", app.public));
    if let Some(token) = consumer {
        request = request.bearer_auth(token);
    }
    if let Some(token) = user {
        request = request.header("x-authenticated-user-token", token);
    }
    if let Some(body) = body {
        request = request.json(&json!({ "request": body }));
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn kong_body(message: &str) -> String {
    format!("{}\n", json!({ "message": message }))
}

#[tokio::test]
async fn with_required_keys_the_gateway_refuses_as_kong_does() {
    let (app, keys) = app_requiring_keys().await;
    let reader = keys
        .create("portal_loggedin", &["userAccess".to_string()])
        .await
        .expect("consumer");
    let admin = app.admin_token.clone();
    let read = format!("/api/user/v1/read/{}", app.admin_id);
    use base64::Engine;
    let encode =
        |value: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let header = encode(json!({"alg": "HS256", "typ": "JWT"}));
    let parts: Vec<&str> = reader.split('.').collect();
    let unknown_iss = format!("{header}.{}.{}", encode(json!({"iss": "nobody"})), parts[2]);
    let no_iss = format!("{header}.{}.{}", encode(json!({"sub": "x"})), parts[2]);
    let rs256 = format!(
        "{}.{}.{}",
        encode(json!({"alg": "RS256", "typ": "JWT"})),
        parts[1],
        parts[2]
    );
    let bad_signature = format!("{}.{}.{}", parts[0], parts[1], "AAAA");
    let cases: Vec<(Option<&str>, u16, &str)> = vec![
        (None, 401, "Unauthorized"),
        (Some("not-a-jwt"), 401, "Unauthorized"),
        (Some(&no_iss), 401, "No mandatory 'iss' in claims"),
        (
            Some(&unknown_iss),
            403,
            "No credentials found for given 'iss'",
        ),
        (Some(&rs256), 403, "Invalid algorithm"),
        (Some(&bad_signature), 403, "Invalid signature"),
    ];
    for (consumer, status, message) in cases {
        assert_eq!(
            kong(&app, Method::GET, &read, consumer, Some(&admin), None).await,
            (status, kong_body(message)),
            "{consumer:?}"
        );
    }
    // A consumer outside the route's groups.
    let (status, body) = kong(
        &app,
        Method::POST,
        "/api/user/v1/search",
        Some(&reader),
        Some(&admin),
        Some(json!({"filters": {}})),
    )
    .await;
    assert_eq!(
        (status, body),
        (403, kong_body("You cannot consume this service"))
    );
    // The jwt query parameter twice.
    let twice = format!("{read}?jwt={reader}&jwt={reader}");
    assert_eq!(
        kong(&app, Method::GET, &twice, None, Some(&admin), None).await,
        (401, kong_body("Multiple tokens provided"))
    );
    // Admitted: the request goes on to the service, where the user token decides.
    let (status, body) = kong(&app, Method::GET, &read, Some(&reader), Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    let by_query = format!("{read}?jwt={reader}");
    assert_eq!(
        kong(&app, Method::GET, &by_query, None, Some(&admin), None)
            .await
            .0,
        200
    );
    // The organisation searches have no consumer; the service paths are not the gateway's.
    let (status, _) = kong(
        &app,
        Method::POST,
        "/api/org/v1/search",
        None,
        None,
        Some(json!({"filters": {}})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = kong(
        &app,
        Method::GET,
        &format!("/v1/user/read/{}", app.admin_id),
        None,
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_consumer_key_alone_authorises_the_routes_sunbird_leaves_to_the_gateway() {
    let (app, keys) = app_requiring_keys().await;
    let setter = keys
        .create("ops", &["appCreate".to_string(), "userAccess".to_string()])
        .await
        .expect("consumer");
    let setting = json!({"id": "consumerProbe", "field": "consumerProbe", "value": "on"});
    // Without a consumer key (service path, no user token): ADMIN is needed, as before.
    let (status, _) = kong(
        &app,
        Method::POST,
        "/v1/system/settings/set",
        None,
        None,
        Some(setting.clone()),
    )
    .await;
    assert_eq!(status, 401);
    // The consumer key alone, through the gateway.
    let (status, body) = kong(
        &app,
        Method::POST,
        "/api/data/v1/system/settings/set",
        Some(&setter),
        None,
        Some(setting),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = app.get("/v1/system/settings/get/consumerProbe", None).await;
    assert_eq!(got.assert_ok()["response"]["value"], "on");
    // Recorded in the audit trail as the consumer.
    let entries = app
        .stored()
        .scan(Table::Audit, "e\u{1f}", None, 1000)
        .await
        .expect("scan");
    assert!(
        entries
            .iter()
            .any(|entry| entry.doc["actor"] == "consumer:ops"
                && entry.doc["target"] == "consumerProbe"),
        "audited as the consumer"
    );
    // A route that needs a user: the consumer key is no user.
    let (status, _) = kong(
        &app,
        Method::GET,
        &format!("/api/user/v1/read/{}", app.admin_id),
        Some(&setter),
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn userorg_consumer_create_prints_a_key_the_gateway_admits() {
    if crate::helpers::skip_with_an_in_process_store("it runs `userorg consumer create`") {
        return;
    }
    let (app, _) = app_requiring_keys().await;
    let dir = app.stop_keeping_data().await;
    let data_dir = dir.path().join("data");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_userorg"))
        .args([
            "consumer",
            "create",
            "mobile_device",
            "--groups",
            "userAccess,appAccess",
        ])
        .env("USERORG__DATA_DIR", &data_dir)
        .envs(crate::helpers::engine_env(&data_dir))
        .env("USERORG__GATEWAY__CONSUMER_KEY", CONSUMER_KEY)
        .env("RUST_LOG", "warn")
        .output()
        .expect("consumer create runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let store: std::sync::Arc<dyn Store> = crate::helpers::open_stored(&data_dir).await;
    let key = consumer_key();
    let keys = userorg::services::gateway::ConsumerKeys::new(
        store,
        std::sync::Arc::new(userorg::clock::SystemClock),
        key,
        true,
    );
    let consumer = keys.admit(&token, &["appAccess"]).await.expect("admitted");
    assert_eq!(consumer.name, "mobile_device");
    assert_eq!(
        keys.admit(&token, &["userAdmin"]).await.map(|c| c.name),
        Err(userorg::services::gateway::KongRefusal {
            status: 403,
            message: "You cannot consume this service"
        })
    );
}

#[tokio::test]
async fn private_paths_the_gateway_exposes_answer_only_its_admitted_consumers() {
    let (app, keys) = app_requiring_keys().await;
    let super_access = keys
        .create("adminutil", &["userSuperAccess".to_string()])
        .await
        .expect("consumer");
    let reader = keys
        .create("reader", &["userAccess".to_string()])
        .await
        .expect("consumer");
    let through_gateway = format!("/api/user/private/v1/read/{}", app.admin_id);
    let (status, body) = kong(
        &app,
        Method::GET,
        &through_gateway,
        Some(&super_access),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["result"]["response"]["id"], app.admin_id.as_str());
    assert_eq!(
        kong(
            &app,
            Method::GET,
            &through_gateway,
            Some(&reader),
            None,
            None
        )
        .await,
        (403, kong_body("You cannot consume this service"))
    );
    assert_eq!(
        kong(
            &app,
            Method::GET,
            &through_gateway,
            None,
            Some(&app.admin_token),
            None
        )
        .await,
        (401, kong_body("Unauthorized"))
    );
    // The private path itself is not public, whatever the caller carries.
    let direct = format!("/private/user/v1/read/{}", app.admin_id);
    for (consumer, user) in [
        (Some(super_access.as_str()), None),
        (None, Some(app.admin_token.as_str())),
    ] {
        let (status, body) = kong(&app, Method::GET, &direct, consumer, user, None).await;
        assert_eq!(status, 404, "{body}");
    }
    app.stop().await;

    // Without consumer keys the gateway's private paths are not public either.
    let app = TestApp::spawn().await;
    let reply = app
        .get(
            &format!("/api/user/private/v1/read/{}", app.admin_id),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    app.stop().await;
}
