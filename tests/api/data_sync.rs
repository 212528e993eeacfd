//! POST /v1/data/sync: re-index given ids, or rebuild a whole index, as ADMIN.

use serde_json::{Value, json};

use userorg::search::IndexName;

use crate::helpers::{TestApp, unique_email};

/// Takes a document out of the index behind the app's back, as a lost or corrupt index would.
async fn drop_from_index(app: &TestApp, index: IndexName, id: &str) {
    app.wait_for_index().await;
    app.index
        .delete(index, vec![id.to_string()])
        .await
        .expect("index delete");
}

async fn location_count(app: &TestApp, id: &str) -> Value {
    let reply = app
        .post("/v1/location/search", json!({"filters": {"id": id}}), None)
        .await;
    reply.assert_ok()["count"].clone()
}

async fn wait_for_location(app: &TestApp, id: &str) {
    app.wait_for_index().await;
    assert_eq!(location_count(app, id).await, 1, "the location is indexed");
}

#[tokio::test]
async fn sync_reindexes_given_ids_and_reports_them() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let email = unique_email();
    let user = app
        .create_user(json!({"firstName": "Sync", "email": email}))
        .await;
    drop_from_index(&app, IndexName::User, &user).await;
    let missing = app
        .search_indexed(json!({"filters": {"email": email}}))
        .await;
    assert_eq!(
        missing.assert_ok()["response"]["count"],
        0,
        "gone from the index"
    );
    let reply = app
        .post(
            "/v1/data/sync",
            json!({"objectType": "user", "objectIds": [user, "no-such-user"], "operationType": "sync"}),
            admin,
        )
        .await;
    assert_eq!(reply.body["id"], "api.data.sync");
    // Unknown ids are skipped, as Sunbird skips ids it cannot read.
    assert_eq!(
        reply.assert_ok().clone(),
        json!({"esSyncResponse": {user.clone(): true}, "response": "SUCCESS"})
    );
    let back = app
        .search_indexed(json!({"filters": {"email": email}}))
        .await;
    assert_eq!(
        back.assert_ok()["response"]["count"],
        1,
        "the sync put it back"
    );

    let created = app
        .post(
            "/v1/location/create",
            json!({"name": "Synced", "code": format!("SY-{}", uuid::Uuid::new_v4().simple()), "type": "state"}),
            admin,
        )
        .await;
    let location = created.assert_ok()["id"].as_str().expect("id").to_string();
    drop_from_index(&app, IndexName::Location, &location).await;
    assert_eq!(location_count(&app, &location).await, 0);
    let reply = app
        .post(
            "/api/data/v1/index/sync",
            json!({"objectType": "location", "objectIds": [location]}),
            admin,
        )
        .await;
    assert_eq!(reply.assert_ok().clone(), json!({"response": "SUCCESS"}));
    assert_eq!(location_count(&app, &location).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn sync_without_ids_rebuilds_the_index() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let created = app
        .post(
            "/v1/location/create",
            json!({"name": "Rebuilt", "code": format!("RB-{}", uuid::Uuid::new_v4().simple()), "type": "state"}),
            admin,
        )
        .await;
    let location = created.assert_ok()["id"].as_str().expect("id").to_string();
    wait_for_location(&app, &location).await;
    drop_from_index(&app, IndexName::Location, &location).await;
    assert_eq!(location_count(&app, &location).await, 0);
    let reply = app
        .post(
            "/v1/data/sync",
            json!({"objectType": "location", "objectIds": [], "operationType": "sync"}),
            admin,
        )
        .await;
    // No ids, no `esSyncResponse`, as in Sunbird.
    assert_eq!(reply.assert_ok().clone(), json!({"response": "SUCCESS"}));
    assert_eq!(
        location_count(&app, &location).await,
        1,
        "the rebuild restored it"
    );

    // Without an operation type the rebuild runs in the background.
    let reply = app
        .post(
            "/v1/data/sync",
            json!({"objectType": "organisation"}),
            admin,
        )
        .await;
    assert_eq!(reply.assert_ok().clone(), json!({"response": "SUCCESS"}));
    app.stop().await;
}

#[tokio::test]
async fn sync_validates_and_needs_an_admin() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"objectIds": ["a"]}),
            "UOS_ESSYNC0003",
            "Data type of {0} should be {1}.",
        ),
        (
            json!({"objectType": "course", "objectIds": ["a"]}),
            "UOS_ESSYNC0072",
            "Invalid Object Type.",
        ),
        (
            json!({"objectType": "User", "objectIds": ["a"]}),
            "UOS_ESSYNC0072",
            "Invalid Object Type.",
        ),
        (
            json!({"objectType": "user", "objectIds": "a"}),
            "UOS_ESSYNC0003",
            "Data type of objectIds should be List.",
        ),
        (
            json!({"objectType": "user", "objectIds": [1]}),
            "UOS_ESSYNC0003",
            "Data type of objectIds should be List of String.",
        ),
        (
            json!({"objectType": "user", "objectIds": ["a"], "operationType": "later"}),
            "UOS_ESSYNC0018",
            "Invalid operationType: later. Valid values are: [sync].",
        ),
    ];
    for (request, err, message) in cases {
        app.post("/v1/data/sync", request, admin)
            .await
            .assert_error(400, err, message);
    }
    let request = json!({"objectType": "user", "objectIds": ["a"]});
    app.post("/v1/data/sync", request.clone(), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    let plain = app
        .create_user(json!({"firstName": "Plain", "email": unique_email()}))
        .await;
    app.post("/v1/data/sync", request, Some(&app.token_for(&plain)))
        .await
        .assert_error(
            403,
            "UOS_ESSYNC0071",
            "You are forbidden from accessing specified resource.",
        );
    app.stop().await;
}
