//! Concurrency and authorisation freshness through the real router: one user's updates are
//! ordered, a race for one email has one winner, and revoked rights, blocks and deletes take
//! effect on the very next request.

use serde_json::json;

use crate::helpers::{TestApp, unique_email};

#[tokio::test]
async fn concurrent_updates_of_one_user_all_apply_in_some_order() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "Racer", "email": unique_email()}))
        .await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let (client, url, token) = (
            app.client.clone(),
            format!("{}/v1/user/update", app.public),
            app.admin_token.clone(),
        );
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let reply = client
                .patch(url)
                .header("x-authenticated-user-token", token)
                .json(
                    &json!({"request": {"userId": id, "firstName": format!("Name{n}"),
                                          "profileSummary": format!("summary {n}")}}),
                )
                .send()
                .await
                .expect("sent");
            reply.status().as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.expect("task"),
            200,
            "no update is lost or refused"
        );
    }
    let user = app
        .get(&format!("/v1/user/read/{id}"), Some(&app.admin_token))
        .await;
    let user = user.assert_ok()["response"].clone();
    let name = user["firstName"].as_str().expect("name").to_string();
    let n: u32 = name
        .trim_start_matches("Name")
        .parse()
        .expect("one of the updates");
    assert_eq!(
        user["profileSummary"],
        format!("summary {n}"),
        "the last update applied whole, not mixed with another"
    );
    app.stop().await;
}

#[tokio::test]
async fn two_users_racing_for_one_new_email_through_update_have_one_winner() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(
            app.create_user(json!({"firstName": "Claimer", "email": unique_email()}))
                .await,
        );
    }
    let contested = unique_email();
    let mut tasks = Vec::new();
    for id in &ids {
        let (client, url, token) = (
            app.client.clone(),
            format!("{}/v1/user/update", app.public),
            app.admin_token.clone(),
        );
        let (id, email) = (id.clone(), contested.clone());
        tasks.push(tokio::spawn(async move {
            let reply = client
                .patch(url)
                .header("x-authenticated-user-token", token)
                .json(&json!({"request": {"userId": id, "email": email}}))
                .send()
                .await
                .expect("sent");
            let status = reply.status().as_u16();
            let body: serde_json::Value = reply.json().await.expect("json");
            (status, body["params"]["errmsg"].clone())
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("task") {
            (200, _) => winners += 1,
            (400, message) => assert_eq!(message, "email already exists"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one user gets the email");
    let owner = app
        .get(&format!("/v1/user/exists/email/{contested}"), None)
        .await;
    assert_eq!(owner.assert_ok()["exists"], true);
    app.stop().await;
}

/// An ORG_ADMIN of the custodian organisation, with a token.
async fn org_admin(app: &TestApp) -> (String, String) {
    let id = app
        .create_user(json!({"firstName": "Admin", "email": unique_email(), "roles": ["ORG_ADMIN"]}))
        .await;
    (id.clone(), app.token_for(&id))
}

async fn rights_end_when_the_role_is_revoked(app: &TestApp) {
    let (admin_id, admin_token) = org_admin(app).await;
    let target = app
        .create_user(json!({"firstName": "Target", "email": unique_email()}))
        .await;
    let block = |user: &str| json!({"userId": user});
    app.post("/v1/user/block", block(&target), Some(&admin_token))
        .await
        .assert_ok();
    let custodian = app
        .get(&format!("/v5/user/read/{admin_id}"), Some(&app.admin_token))
        .await
        .assert_ok()["response"]["rootOrgId"]
        .as_str()
        .expect("root org")
        .to_string();
    app.post(
        "/v2/user/assign/role",
        json!({"userId": admin_id, "roles": [{"role": "ORG_ADMIN", "operation": "remove",
                                               "scope": [{"organisationId": custodian}]}]}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    app.post("/v1/user/unblock", block(&target), Some(&admin_token))
        .await
        .assert_error(
            403,
            "UOS_USRUNBLOK0071",
            "You are forbidden from accessing specified resource.",
        );
}

#[tokio::test]
async fn rights_end_at_once_when_a_role_is_revoked() {
    let app = TestApp::spawn().await;
    rights_end_when_the_role_is_revoked(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn rights_end_at_once_when_a_role_is_revoked_on_the_redis_cache() {
    let Some(url) = userorg::test_tiers::redis() else {
        return;
    };
    let prefix = format!("userorg-rights-test:{}:", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(&[
        ("USERORG__CACHE__ENGINE", "redis"),
        ("USERORG__CACHE__REDIS_URL", &url),
        ("USERORG__CACHE__REDIS_KEY_PREFIX", &prefix),
    ])
    .await;
    rights_end_when_the_role_is_revoked(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_users_token_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "Leaving", "email": unique_email()}))
        .await;
    let token = app.token_for(&id);
    app.get(&format!("/v1/user/read/{id}"), Some(&token))
        .await
        .assert_ok();
    app.post("/v1/user/delete", json!({"userId": id}), Some(&token))
        .await
        .assert_ok();
    app.get(&format!("/v1/user/read/{id}"), Some(&token))
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    app.stop().await;
}
