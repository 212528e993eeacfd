use serde_json::json;

use crate::helpers::{Reply, TestApp, assert_envelope_shape};

#[tokio::test]
async fn health_answers_in_the_envelope() {
    let app = TestApp::spawn().await;
    let reply = app.get("/health", None).await;
    let result = reply.assert_ok().clone();
    assert_eq!(reply.body["id"], "api.all.health");
    assert_eq!(reply.body["ver"], "health");
    assert_eq!(result["response"]["healthy"], true);
    let reply = app.get("/service/health", None).await;
    reply.assert_ok();
    assert_eq!(reply.body["id"], "api.userorg.service.health");
    assert_eq!(reply.body["result"]["response"]["healthy"], true);
    app.stop().await;
}

#[tokio::test]
async fn the_named_health_routes_check_their_dependency_for_a_token_holder() {
    let app = TestApp::spawn().await;
    let token = Some(app.admin_token.as_str());
    let check = |name: &str, healthy: bool| json!({"name": name, "healthy": healthy, "err": "", "errmsg": ""});
    for (service, name, checks) in [
        (
            "actor",
            "Actor health check api",
            vec![check("UserOrg service", true), check("Actor service", true)],
        ),
        (
            "cassandra",
            "cassandra health check api",
            vec![
                check("UserOrg service", true),
                check("Actor service", true),
                check("Cassandra service", true),
            ],
        ),
        (
            "es",
            "ES health check api",
            vec![
                check("Actor service", true),
                check("Elastic search service", true),
            ],
        ),
    ] {
        let reply = app.get(&format!("/{service}/health"), token).await;
        assert_eq!(
            reply.assert_ok()["response"],
            json!({"name": name, "healthy": true, "checks": checks}),
            "{service}"
        );
        assert_eq!(reply.body["id"], "");
        assert_eq!(reply.body["ver"], service);
        // As in Sunbird, only /health and /service/health answer without a token.
        app.get(&format!("/{service}/health"), None)
            .await
            .assert_error(401, "UOS_0070", "You are not authorized.");
    }
    // Any other name answers as /service/health.
    let other = app.get("/learner/health", token).await;
    assert_eq!(
        other.assert_ok()["response"]["name"],
        "UserOrg service health"
    );
    // A failing index shows on /es/health, not on /actor/health.
    app.search_faults.set_unavailable(true);
    let es = app.get("/es/health", token).await;
    assert_eq!(es.assert_ok()["response"]["healthy"], false);
    assert_eq!(
        es.body["result"]["response"]["checks"][1],
        check("Elastic search service", false)
    );
    let actor = app.get("/actor/health", token).await;
    assert_eq!(actor.assert_ok()["response"]["healthy"], true);
    app.search_faults.set_unavailable(false);
    app.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_and_ids_follow_the_path() {
    let app = TestApp::spawn().await;
    let reply = app
        .client
        .post(format!("{}/v1/user/create", app.public))
        .header("x-request-id", "req-123")
        .json(&json!({"request": {"firstName": "A"}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(reply.headers()["access-control-allow-origin"], "*");
    assert_eq!(reply.headers()["cache-control"], "no-store");
    assert_eq!(reply.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        reply.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(reply.headers()["x-frame-options"], "DENY");
    // Exactly this string, no charset: Sunbird's clients compare the header with it.
    assert_eq!(reply.headers()["content-type"], "application/json");
    let body: serde_json::Value = reply.json().await.expect("json");
    assert_envelope_shape(&body);
    assert_eq!(body["id"], "api.user.create");
    assert_eq!(body["ver"], "v1");
    assert_eq!(body["params"]["msgid"], "req-123");
    assert_eq!(body["params"]["resmsgid"], "req-123");

    let reply = app
        .client
        .get(format!("{}/v5/user/read/abc", app.public))
        .header("X-msgId", "msg-9")
        .header("x-authenticated-user-token", &app.admin_token)
        .send()
        .await
        .expect("sent");
    let body: serde_json::Value = reply.json().await.expect("json");
    assert_eq!(body["id"], "api.user.read.abc");
    assert_eq!(body["ver"], "v5");
    assert_eq!(body["params"]["msgid"], "msg-9");
    app.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_answered_in_the_envelope() {
    let app = TestApp::spawn().await;
    let url = format!("{}/v1/user/create", app.public);

    let not_json = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(not_json.status(), 400);
    let body: serde_json::Value = not_json.json().await.expect("envelope, not text");
    assert_envelope_shape(&body);
    assert_eq!(body["params"]["err"], "UOS_USRCRT0028");
    assert_eq!(
        body["params"]["errmsg"],
        "Requested data for this operation is not valid."
    );
    assert_eq!(body["responseCode"], "CLIENT_ERROR");

    let reply = app
        .send(
            reqwest::Method::POST,
            url.clone(),
            Some(json!({"firstName": "A"})),
            None,
        )
        .await;
    reply.assert_error(
        400,
        "UOS_USRCRT0030",
        "Mandatory parameter request is missing.",
    );

    let reply = app
        .send(
            reqwest::Method::POST,
            url.clone(),
            Some(json!({"request": "x"})),
            None,
        )
        .await;
    reply.assert_error(400, "UOS_USRCRT0003", "Data type of request should be Map.");

    let reply = app
        .post(
            "/v1/user/create",
            json!({"firstName": ["A"], "email": "a@b.co"}),
            None,
        )
        .await;
    reply.assert_error(
        400,
        "UOS_USRCRT0003",
        "Data type of firstName should be String.",
    );

    let text = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{\"request\":{}}")
        .send()
        .await
        .expect("sent");
    // §9: mandatoryHeaderParamsMissing is a 400 (this answered 415 before).
    let reply = Reply {
        status: text.status(),
        body: text.json().await.expect("envelope"),
    };
    reply.assert_error(
        400,
        "UOS_USRCRT0061",
        "Mandatory header parameter Content-Type with value application/json is missing.",
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_answered_in_the_envelope() {
    let app = TestApp::spawn().await;
    let reply = app.get("/v1/no/such/route", None).await;
    reply.assert_error(
        404,
        "UOS_0013",
        "Requested /v1/no/such/route resource not found",
    );
    assert_eq!(reply.body["responseCode"], "RESOURCE_NOT_FOUND");

    // §9: invalidOperationName is a 400 (this answered axum's 405 before).
    let reply = app.get("/v1/user/create", None).await;
    reply.assert_error(
        400,
        "UOS_USRCRT0027",
        "Operation name is invalid. Please provide a valid operation name",
    );
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_in_the_envelope() {
    let app = TestApp::spawn_with(&[("USERORG__HTTP__JSON_BODY_LIMIT_BYTES", "2048")]).await;
    let big = "x".repeat(4096);
    let reply = app
        .post("/v1/user/create", json!({"firstName": big}), None)
        .await;
    // Not in §9: a body over the limit keeps HTTP's 413 (README "Where this differs").
    reply.assert_error(
        413,
        "UOS_USRCRT0007",
        "Maximum upload data size should be the configured limit",
    );
    app.stop().await;
}

#[tokio::test]
async fn gateway_paths_are_served_as_aliases() {
    let app = TestApp::spawn().await;
    let email = crate::helpers::unique_email();
    let reply = app
        .post(
            "/api/user/v1/create",
            json!({"firstName": "Gate", "email": email}),
            Some(&app.admin_token),
        )
        .await;
    let result = reply.assert_ok().clone();
    assert_eq!(
        reply.body["id"], "api.user.create",
        "id of the service path"
    );
    let id = result["userId"].as_str().expect("id");
    let read = app
        .get(&format!("/api/user/v5/read/{id}"), Some(&app.admin_token))
        .await;
    read.assert_ok();
    assert_eq!(read.body["result"]["response"]["id"], id);
    // The merge alias points at a private route: never served on the public listener.
    let merge = app
        .post("/api/user/v1/account/merge", json!({}), None)
        .await;
    assert_eq!(merge.status, 404);
    app.stop().await;
}

/// JSON routes take at most `http.json_body_limit_bytes` (64 KiB by default); file uploads keep
/// the larger `http.body_limit_bytes`.
#[tokio::test]
async fn json_bodies_have_a_small_limit_and_uploads_a_large_one() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(100 * 1024);
    let reply = app
        .post("/v1/user/create", json!({"firstName": big}), None)
        .await;
    reply.assert_error(
        413,
        "UOS_USRCRT0007",
        "Maximum upload data size should be the configured limit",
    );
    let form = reqwest::multipart::Form::new()
        .text("organisationId", "no-such-org")
        .part(
            "fileName",
            reqwest::multipart::Part::bytes(big.into_bytes()).file_name("key.pem"),
        );
    let upload = app
        .client
        .patch(format!("{}/v1/org/update/encryptionkey", app.public))
        .header("x-authenticated-user-token", &app.admin_token)
        .multipart(form)
        .send()
        .await
        .expect("sent");
    assert_ne!(
        upload.status().as_u16(),
        413,
        "an upload of 100 KiB is read"
    );
    app.stop().await;
}

#[tokio::test]
async fn cors_follows_the_configured_origins_and_answers_preflights() {
    let app =
        TestApp::spawn_with(&[("USERORG__HTTP__CORS_ALLOWED_ORIGINS", "https://portal.test")])
            .await;
    let from = |origin: &'static str| {
        app.client
            .get(format!("{}/v1/system/settings/list", app.public))
            .header("origin", origin)
            .send()
    };
    let allowed = from("https://portal.test").await.expect("sent");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://portal.test"
    );
    let other = from("https://evil.test").await.expect("sent");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/user/create", app.public),
        )
        .header("origin", "https://portal.test")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "x-authenticated-user-token",
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(preflight.status().as_u16(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://portal.test"
    );
    app.stop().await;
}

/// A client that never finishes its request head is disconnected after
/// `http.header_read_timeout_seconds`, instead of holding a connection for as long as it likes.
#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(&[("USERORG__HTTP__HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let address = app.public.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: slow\r\n")
        .await
        .expect("partial head");
    let started = std::time::Instant::now();
    let mut buffer = Vec::new();
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        slow.read_to_end(&mut buffer),
    )
    .await
    .expect("the server closes the connection well before 10 s");
    assert!(
        outcome.is_err() || buffer.is_empty() || buffer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buffer)
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    // Meanwhile, and after, ordinary requests are served.
    app.get("/health", None).await.assert_ok();
    app.stop().await;
}

/// Sends `raw` on a fresh connection to `base` and reads the whole answer (the server closes
/// the connection after a protocol error).
async fn raw_exchange(base: &str, raw: &[u8]) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(raw).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8(answer).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status: u16 = head[9..12].parse().expect("status");
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .expect("content-length")
        .trim()
        .parse()
        .expect("length");
    assert_eq!(length, body.len(), "{head}");
    assert!(
        head.lines()
            .any(|line| line.eq_ignore_ascii_case("content-type: application/json")),
        "{head}"
    );
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|_| panic!("envelope: {body:?}")),
    )
}

#[tokio::test]
async fn requests_hyper_cannot_parse_are_answered_in_the_envelope() {
    let app = TestApp::spawn().await;
    let long_query = format!(
        "GET /health?x={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(100_000)
    );
    let many_headers = format!(
        "POST /v1/user/search HTTP/1.1\r\nhost: x\r\n{}content-length: 2\r\n\r\n{{}}",
        (0..200)
            .map(|n| format!("x-h{n}: v\r\n"))
            .collect::<String>()
    );
    let negative_length =
        "POST /v1/org/read HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n{\"request\":{}}";
    let huge_length = "POST /v1/org/read HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999\r\n\r\n{\"request\":{}}";
    for (raw, status, url) in [
        (long_query.as_str(), 414, &app.public),
        (many_headers.as_str(), 431, &app.public),
        (negative_length, 400, &app.public),
        (huge_length, 400, &app.public),
        (long_query.as_str(), 414, &app.internal),
    ] {
        let (answered, body) = raw_exchange(url, raw.as_bytes()).await;
        assert_eq!(answered, status, "{body}");
        assert_envelope_shape(&body);
        assert_eq!(body["responseCode"], "CLIENT_ERROR", "{body}");
        assert_eq!(body["params"]["err"], "UOS_0028", "{body}");
        assert_eq!(body["params"]["status"], "FAILED");
    }
    // The same connection handling still answers ordinary requests.
    app.get("/health", None).await.assert_ok();
    app.stop().await;
}
