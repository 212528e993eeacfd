use serde_json::json;

use crate::helpers::{TestApp, unique_email};

#[tokio::test]
async fn block_and_unblock_change_the_status() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "Blk", "email": unique_email()}))
        .await;
    let admin = Some(app.admin_token.as_str());
    let reply = app
        .post("/v1/user/block", json!({"userId": id}), admin)
        .await;
    assert_eq!(reply.assert_ok(), &json!({"response": "SUCCESS"}));
    assert_eq!(reply.body["id"], "api.user.block");
    let user = app
        .get(&format!("/v1/user/read/{id}"), admin)
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(user["status"], 0);
    assert_eq!(user["isBlocked"], true);
    app.post("/v1/user/block", json!({"userId": id}), admin)
        .await
        .assert_error(400, "UOS_USRBLOK0008", "User is already inactive.");
    let found = app
        .search_indexed(json!({"filters": {"id": id, "status": 0}}))
        .await;
    assert_eq!(
        found.body["result"]["response"]["count"], 1,
        "the index follows the status"
    );
    app.post("/v1/user/unblock", json!({"userId": id}), admin)
        .await
        .assert_ok();
    app.post("/v1/user/unblock", json!({"userId": id}), admin)
        .await
        .assert_error(400, "UOS_USRUNBLOK0008", "User is already active.");
    let user = app
        .get(&format!("/v1/user/read/{id}"), admin)
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(user["status"], 1);
    app.post("/v1/user/block", json!({}), admin)
        .await
        .assert_error(
            400,
            "UOS_USRBLOK0030",
            "Mandatory parameter userId is missing.",
        );
    app.post("/v1/user/block", json!({"userId": "nobody"}), admin)
        .await
        .assert_error(404, "UOS_USRBLOK0013", "user");
    app.stop().await;
}

#[tokio::test]
async fn delete_scrubs_pii_and_frees_identifiers() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Del", "lastName": "Me", "email": email, "phone": "9123456780", "userName": "del_me"}))
        .await;
    let token = app.token_for(&id);
    let reply = app
        .post("/v1/user/delete", json!({"userId": id}), Some(&token))
        .await;
    assert_eq!(reply.assert_ok(), &json!({"response": "SUCCESS"}));
    let private = app
        .get_internal(&format!("/private/user/v1/read/{id}"))
        .await;
    private.assert_error(400, "UOS_USRRED0006", "User account has been blocked .");
    // Every identifier can be used again.
    let again = app
        .create_user(json!({"firstName": "Again", "email": email, "phone": "9123456780", "userName": "del_me"}))
        .await;
    assert_ne!(again, id);
    app.post(
        "/v1/user/delete",
        json!({"userId": id}),
        Some(&app.admin_token),
    )
    .await
    .assert_error(400, "UOS_USRDLT0008", "User is already deleted.");
    let found = app.search_indexed(json!({"filters": {"id": id}})).await;
    let hit = found.body["result"]["response"]["content"][0].clone();
    assert_eq!(hit["status"], 2);
    assert_eq!(hit["firstName"], "");
    assert_eq!(hit["email"], "");
    app.stop().await;
}

#[tokio::test]
async fn users_holding_other_roles_cannot_delete_themselves() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(
            json!({"firstName": "Creator", "email": unique_email(), "roles": ["CONTENT_CREATOR"]}),
        )
        .await;
    app.post(
        "/v1/user/delete",
        json!({"userId": id}),
        Some(&app.token_for(&id)),
    )
    .await
    .assert_error(
        400,
        "UOS_USRDLT0083",
        "User is restricted from deleting account based on roles!",
    );
    app.stop().await;
}
