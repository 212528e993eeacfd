//! The user feed, stored natively: create (public and private), read newest first, update,
//! delete, who may touch whose feed, and the request rules.

use serde_json::json;

use crate::helpers::{TestApp, unique_email};

#[tokio::test]
async fn a_users_feed_is_created_read_updated_and_deleted() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user(json!({"firstName": "Feed", "email": unique_email()}))
        .await;
    let token = app.token_for(&user);
    let first = app
        .post(
            "/v1/user/feed/create",
            json!({"userId": user, "category": "Notification", "priority": 1,
                   "data": {"message": "first"}}),
            Some(&token),
        )
        .await;
    let first_id = first.assert_ok()["id"].as_str().expect("id").to_string();
    app.clock.advance(chrono::Duration::seconds(1));
    app.post_internal(
        "/private/user/feed/v1/create",
        json!({"userId": user, "category": "Notification", "priority": 2,
               "data": {"message": "second"}}),
    )
    .await
    .assert_ok();
    let read = app
        .get(&format!("/v1/user/feed/{user}"), Some(&token))
        .await;
    let feed = read.assert_ok()["response"]["userFeed"]
        .as_array()
        .expect("a list")
        .clone();
    assert_eq!(feed.len(), 2);
    assert_eq!(feed[0]["data"]["message"], "second", "newest first");
    assert_eq!(feed[1]["id"], first_id.as_str());
    assert_eq!(feed[1]["status"], "unread");
    assert_eq!(feed[1]["createdBy"], user.as_str());
    app.patch(
        "/v1/user/feed/update",
        json!({"userId": user, "feedId": first_id, "status": "read"}),
        Some(&token),
    )
    .await
    .assert_ok();
    let read = app
        .get(&format!("/v1/user/feed/{user}"), Some(&token))
        .await;
    assert_eq!(
        read.assert_ok()["response"]["userFeed"][1]["status"],
        "read"
    );
    app.post(
        "/v1/user/feed/delete",
        json!({"userId": user, "feedId": first_id, "category": "Notification"}),
        Some(&token),
    )
    .await
    .assert_ok();
    let read = app
        .get(&format!("/v1/user/feed/{user}"), Some(&token))
        .await;
    assert_eq!(
        read.assert_ok()["response"]["userFeed"]
            .as_array()
            .expect("list")
            .len(),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn feeds_are_their_users_and_bad_requests_get_sunbirds_codes() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user(json!({"firstName": "Feed", "email": unique_email()}))
        .await;
    let other = app
        .create_user(json!({"firstName": "Other", "email": unique_email()}))
        .await;
    let other_token = app.token_for(&other);
    app.get(&format!("/v1/user/feed/{user}"), Some(&other_token))
        .await
        .assert_error(
            403,
            "UOS_FEEDRED0071",
            "You are forbidden from accessing specified resource.",
        );
    app.get(&format!("/v1/user/feed/{user}"), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    let admin = Some(app.admin_token.as_str());
    let cases = [
        (
            json!({"category": "c", "priority": 1}),
            "UOS_FEEDCRT0030",
            "Mandatory parameter userId is missing.",
        ),
        (
            json!({"userId": user, "priority": 1}),
            "UOS_FEEDCRT0030",
            "Mandatory parameter category is missing.",
        ),
        (
            json!({"userId": user, "category": "c"}),
            "UOS_FEEDCRT0030",
            "Mandatory parameter priority is missing.",
        ),
        (
            json!({"userId": user, "category": "c", "priority": "high"}),
            "UOS_FEEDCRT0003",
            "Data type of priority should be Integer.",
        ),
        (
            json!({"userId": user, "category": "c", "priority": 1, "data": [1]}),
            "UOS_FEEDCRT0003",
            "Data type of data should be Map.",
        ),
    ];
    for (request, err, message) in cases {
        app.post("/v1/user/feed/create", request, admin)
            .await
            .assert_error(400, err, message);
    }
    app.patch(
        "/v1/user/feed/update",
        json!({"userId": user, "feedId": "nope", "status": "read"}),
        admin,
    )
    .await
    .assert_error(404, "UOS_FEEDUPD0013", "Requested feed resource not found");
    app.patch(
        "/v1/user/feed/update",
        json!({"userId": user, "feedId": "nope", "status": "gone"}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_FEEDUPD0017",
        "Invalid value gone for parameter status. Please provide a valid value.",
    );
    app.post("/v1/user/feed/delete", json!({"userId": user}), admin)
        .await
        .assert_error(
            400,
            "UOS_FEEDDEL0030",
            "Mandatory parameter feedId is missing.",
        );
    app.stop().await;
}
