use serde_json::{Map, json};
use userorg::auth::MintClaims;

use crate::helpers::{Reply, TestApp, unique_email};

const UNAUTHORIZED: &str = "You are not authorized.";

#[tokio::test]
async fn token_routes_refuse_missing_and_bad_tokens() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "T", "email": unique_email()}))
        .await;
    let path = format!("/v1/user/read/{id}");

    let reply = app.get(&path, None).await;
    reply.assert_error(401, "UOS_0070", UNAUTHORIZED);
    assert_eq!(reply.body["responseCode"], "UNAUTHORIZED");

    for bad in ["garbage", "a.b.c", "", "Bearer "] {
        let reply = app.get(&path, Some(bad)).await;
        reply.assert_error(401, "UOS_0070", UNAUTHORIZED);
    }

    // Wrong issuer, expired, and a token for a user that does not exist.
    let wrong_issuer = app
        .signer
        .mint(MintClaims::new(
            id.clone(),
            "https://evil.example/realms/x",
            3600,
        ))
        .expect("mint");
    app.get(&path, Some(&wrong_issuer))
        .await
        .assert_error(401, "UOS_0070", UNAUTHORIZED);
    let two_hours_ago = chrono::Utc::now().timestamp() - 7200;
    let expired = app
        .signer
        .mint_at(
            MintClaims::new(id.clone(), app.issuer.clone(), 600),
            two_hours_ago,
        )
        .expect("mint");
    app.get(&path, Some(&expired))
        .await
        .assert_error(401, "UOS_0070", UNAUTHORIZED);
    let ghost = app.token_for("00000000-0000-0000-0000-000000000000");
    app.get(&path, Some(&ghost))
        .await
        .assert_error(401, "UOS_0070", UNAUTHORIZED);

    // A federated subject resolves to the last segment.
    let mut claims = MintClaims::new(
        format!("f:5a8a3f2b-3409-42e0-9001-f913bc0fde31:{id}"),
        app.issuer.clone(),
        600,
    );
    claims.extra = Map::new();
    let federated = app.signer.mint(claims).expect("mint");
    app.get(&path, Some(&federated)).await.assert_ok();

    // The same body for every reason.
    let token_ok = app.token_for(&id);
    app.get(&path, Some(&token_ok)).await.assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn private_routes_are_served_only_on_the_internal_listener() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "P", "email": unique_email()}))
        .await;
    let path = format!("/private/user/v1/read/{id}");

    let public = app.get(&path, Some(&app.admin_token)).await;
    public.assert_error(
        404,
        "UOS_0013",
        &format!("Requested {path} resource not found"),
    );

    let internal = app.get_internal(&path).await;
    let result = internal.assert_ok();
    assert_eq!(result["response"]["id"], id.as_str());
    assert!(
        result["response"]["encEmail"]
            .as_str()
            .is_some_and(|e| e.starts_with("v2."))
    );
    assert_eq!(internal.body["id"], format!(".private.user.v1.read.{id}"));
    assert_eq!(internal.body["ver"], "private");

    let lookup = app
        .post(
            "/private/user/v1/lookup",
            json!({"key": "id", "value": id}),
            None,
        )
        .await;
    assert_eq!(lookup.status, 404);
    app.stop().await;
}

#[tokio::test]
async fn public_routes_treat_a_bad_token_as_anonymous() {
    let app = TestApp::spawn().await;
    let reply = app
        .post(
            "/v1/user/signup",
            json!({"firstName": "Anon", "email": unique_email()}),
            Some("not-a-token"),
        )
        .await;
    reply.assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn a_blocked_users_token_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "B", "email": unique_email()}))
        .await;
    let token = app.token_for(&id);
    app.get(&format!("/v1/user/read/{id}"), Some(&token))
        .await
        .assert_ok();
    app.post(
        "/v1/user/block",
        json!({"userId": id}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    app.get(&format!("/v1/user/read/{id}"), Some(&token))
        .await
        .assert_error(401, "UOS_0070", UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn a_stranger_gets_403_before_the_id_is_looked_up() {
    let app = TestApp::spawn().await;
    let alice = app
        .create_user(json!({"firstName": "Alice", "email": unique_email()}))
        .await;
    let bob = app
        .create_user(json!({"firstName": "Bob", "email": unique_email()}))
        .await;
    let alice_token = app.token_for(&alice);
    let forbidden = "You are forbidden from accessing specified resource.";
    let nobody = uuid::Uuid::new_v4().to_string();
    // The same answer for an existing stranger and for an id nobody has.
    for target in [&bob, &nobody] {
        app.get(&format!("/v5/user/read/{target}"), Some(&alice_token))
            .await
            .assert_error(403, "UOS_USRRED0071", forbidden);
        app.patch(
            "/v1/user/update",
            json!({"userId": target, "firstName": "Probe"}),
            Some(&alice_token),
        )
        .await
        .assert_error(403, "UOS_USRUPD0071", forbidden);
    }
    // An administrator still learns that the id does not exist.
    let missing = app
        .get(&format!("/v5/user/read/{nobody}"), Some(&app.admin_token))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    app.stop().await;
}

#[tokio::test]
async fn users_cannot_read_or_change_other_users() {
    let app = TestApp::spawn().await;
    let alice = app
        .create_user(json!({"firstName": "Alice", "email": unique_email()}))
        .await;
    let bob = app
        .create_user(json!({"firstName": "Bob", "email": unique_email()}))
        .await;
    let alice_token = app.token_for(&alice);
    let forbidden = "You are forbidden from accessing specified resource.";
    app.get(&format!("/v1/user/read/{bob}"), Some(&alice_token))
        .await
        .assert_error(403, "UOS_USRRED0071", forbidden);
    app.patch(
        "/v1/user/update",
        json!({"userId": bob, "firstName": "Hacked"}),
        Some(&alice_token),
    )
    .await
    .assert_error(403, "UOS_USRUPD0071", forbidden);
    app.post("/v1/user/block", json!({"userId": bob}), Some(&alice_token))
        .await
        .assert_error(403, "UOS_USRBLOK0071", forbidden);
    app.post(
        "/v1/user/delete",
        json!({"userId": bob}),
        Some(&alice_token),
    )
    .await
    .assert_error(403, "UOS_USRDLT0071", forbidden);
    // Anonymous callers may not grant roles or place users in a tenant; a user may not either.
    app.post(
        "/v1/user/create",
        json!({"firstName": "X", "email": unique_email(), "roles": ["ADMIN"]}),
        None,
    )
    .await
    .assert_error(401, "UOS_0070", "You are not authorized.");
    app.post(
        "/v1/user/create",
        json!({"firstName": "X", "email": unique_email(), "roles": ["ADMIN"]}),
        Some(&alice_token),
    )
    .await
    .assert_error(403, "UOS_USRCRT0071", forbidden);
    // Alice can read herself.
    app.get(&format!("/v1/user/read/{alice}"), Some(&alice_token))
        .await
        .assert_ok();
    app.stop().await;
}

/// The internal listener is not an open admin API: it answers only the holder of the service
/// credential, and a user token there acts as that user, never as the service.
#[tokio::test]
async fn the_internal_listener_needs_the_service_credential() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "Inside", "email": unique_email()}))
        .await;
    let custodian = app
        .get("/v1/system/settings/get/custodianOrgId", None)
        .await
        .assert_ok()["response"]["value"]
        .as_str()
        .expect("custodian id")
        .to_string();
    let assign =
        json!({"request": {"userId": id, "organisationId": custodian, "roles": ["ADMIN"]}});
    let raw = |path: &str| format!("{}{path}", app.internal);
    // No credential: refused, on private and on public routes alike (health aside).
    for (path, body) in [
        ("/private/user/v1/assign/role", Some(assign.clone())),
        ("/v1/system/settings/list", None),
    ] {
        let request = match &body {
            Some(body) => app.client.post(raw(path)).json(body),
            None => app.client.get(raw(path)),
        };
        let reply = request.send().await.expect("sent");
        let reply = Reply {
            status: reply.status(),
            body: reply.json().await.expect("envelope"),
        };
        assert_eq!(reply.status.as_u16(), 401, "{path}: {}", reply.body);
        assert_eq!(reply.err(), "UOS_0070", "{path}");
    }
    // A wrong credential is refused too.
    let wrong = app
        .client
        .get(raw("/v1/system/settings/list"))
        .bearer_auth(format!("{}x", app.service_credential))
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status().as_u16(), 401);
    // Probes need nothing.
    let health = app.client.get(raw("/health")).send().await.expect("sent");
    assert_eq!(health.status().as_u16(), 200);
    // With the credential and an invalid user token: refused, not upgraded to the service.
    let upgraded = app
        .client
        .get(raw("/v1/system/settings/list"))
        .bearer_auth(&app.service_credential)
        .header("x-authenticated-user-token", "not-a-token")
        .send()
        .await
        .expect("sent");
    assert_eq!(upgraded.status().as_u16(), 401);
    // With the credential and a user token: that user's rights, so no ADMIN for a PUBLIC user.
    let user_token = app.token_for(&id);
    let as_user = app
        .send(
            reqwest::Method::POST,
            raw("/private/user/v1/assign/role"),
            Some(assign.clone()),
            Some(&user_token),
        )
        .await;
    assert_eq!(as_user.status.as_u16(), 403, "{}", as_user.body);
    // The credential alone is the calling service.
    app.get_internal("/v1/system/settings/list")
        .await
        .assert_ok();
    app.stop().await;
}
