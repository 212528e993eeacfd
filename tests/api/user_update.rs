use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email, unique_phone};

#[tokio::test]
async fn update_changes_the_profile_and_moves_identifiers() {
    let app = TestApp::spawn().await;
    let old_email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Old", "email": old_email}))
        .await;
    let token = app.token_for(&id);
    let new_email = unique_email();
    let new_phone = unique_phone();
    for path in ["/v1/user/update", "/v2/user/update", "/v3/user/update"] {
        let reply = app
            .patch(
                path,
                json!({"userId": id, "firstName": "New", "language": ["English"]}),
                Some(&token),
            )
            .await;
        let result = reply.assert_ok().clone();
        assert_eq!(reply.body["id"], "api.user.update");
        assert_eq!(result, json!({"response": "SUCCESS", "errors": []}));
    }
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "email": new_email, "phone": new_phone}),
        Some(&token),
    )
    .await
    .assert_ok();
    let user = app
        .get(&format!("/v1/user/read/{id}"), Some(&token))
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(user["firstName"], "New");
    assert_eq!(user["language"], json!(["English"]));
    assert_eq!(user["phone"], format!("******{}", &new_phone[6..]).as_str());
    assert_ne!(user["updatedDate"], Value::Null);
    assert_eq!(user["updatedBy"], id.as_str());
    // The old email is free again, the new one is taken.
    app.create_user(json!({"firstName": "Reuse", "email": old_email}))
        .await;
    app.post(
        "/v1/user/create",
        json!({"firstName": "Dup", "email": new_email}),
        Some(&app.admin_token),
    )
    .await
    .assert_error(400, "UOS_USRCRT0002", "email already exists");
    app.stop().await;
}

#[tokio::test]
async fn update_errors_match_sunbird() {
    let app = TestApp::spawn().await;
    let taken = unique_email();
    app.create_user(json!({"firstName": "Holder", "email": taken}))
        .await;
    let id = app
        .create_user(json!({"firstName": "U", "email": unique_email()}))
        .await;
    let token = app.token_for(&id);
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"userId": id, "managedBy": "x"}),
            400,
            "UOS_USRUPD0065",
            "managedBy cannot be updated.",
        ),
        (
            json!({"userId": id, "email": ""}),
            400,
            "UOS_USRUPD0017",
            "Invalid value  for parameter email. Please provide a valid value.",
        ),
        (
            json!({"userId": id, "channel": "x"}),
            400,
            "UOS_USRUPD0021",
            "Invalid parameter channel in request.",
        ),
        (
            json!({"userId": id, "userName": "x"}),
            400,
            "UOS_USRUPD0021",
            "Invalid parameter userName in request.",
        ),
        (
            json!({"firstName": "x"}),
            400,
            "UOS_USRUPD0030",
            "Mandatory parameter userId or externalId, externalIdType and externalIdProvider is missing.",
        ),
        (
            json!({"userId": id, "firstName": ""}),
            400,
            "UOS_USRUPD0030",
            "Mandatory parameter firstName is missing.",
        ),
        (
            json!({"userId": id, "email": "bad"}),
            400,
            "UOS_USRUPD0009",
            "Invalid format for given email.",
        ),
        (
            json!({"userId": id, "roles": []}),
            400,
            "UOS_USRUPD0019",
            "Please provide valid role.",
        ),
        (
            json!({"userId": id, "organisations": []}),
            400,
            "UOS_USRUPD0051",
            "Unsupported field organisations.",
        ),
        (
            json!({"userId": id, "email": taken}),
            400,
            "UOS_USRUPD0002",
            "email already exists",
        ),
        (
            json!({"userId": id, "organisationId": "nope"}),
            400,
            "UOS_USRUPD0017",
            "Invalid value nope for parameter organisationId. Please provide a valid value.",
        ),
    ];
    for (request, status, err, errmsg) in cases {
        let reply = app
            .patch("/v1/user/update", request.clone(), Some(&token))
            .await;
        assert_eq!(reply.status.as_u16(), status, "{request} -> {}", reply.body);
        reply.assert_error(status, err, errmsg);
    }
    app.patch(
        "/v1/user/update",
        json!({"userId": "00000000-0000-0000-0000-000000000000", "firstName": "X"}),
        Some(&app.admin_token),
    )
    .await
    .assert_error(404, "UOS_USRUPD0013", "Requested user resource not found");
    // Mass assignment: status and rootOrgId are not client-settable.
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "status": 0, "isDeleted": true}),
        Some(&token),
    )
    .await
    .assert_ok();
    let user = app
        .get(&format!("/v1/user/read/{id}"), Some(&token))
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(user["status"], 1);
    assert_eq!(user["isDeleted"], false);
    app.stop().await;
}

#[tokio::test]
async fn the_private_update_needs_no_token_on_the_internal_listener() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "Int", "email": unique_email()}))
        .await;
    let reply = app
        .send(
            reqwest::Method::PATCH,
            format!("{}/private/user/v1/update", app.internal),
            Some(json!({"request": {"userId": id, "lastName": "Ernal"}})),
            None,
        )
        .await;
    reply.assert_ok();
    assert_eq!(reply.body["id"], ".private.user.v1.update");
    let user = app
        .get(&format!("/v1/user/read/{id}"), Some(&app.admin_token))
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(user["lastName"], "Ernal");
    app.stop().await;
}
