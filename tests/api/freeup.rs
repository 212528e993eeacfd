//! Identifier free-up: the email and phone move to the previously used ones, their claims go,
//! another user may take them, and the search index follows.

use serde_json::json;

use crate::helpers::{TestApp, unique_email, unique_phone};

#[tokio::test]
async fn freed_identifiers_can_be_taken_by_another_user() {
    let app = TestApp::spawn().await;
    let (email, phone) = (unique_email(), unique_phone());
    let first = app
        .create_user(json!({"firstName": "First", "email": email, "phone": phone}))
        .await;
    // Taken until freed.
    app.post(
        "/v1/user/create",
        json!({"firstName": "Second", "email": email}),
        Some(&app.admin_token),
    )
    .await
    .assert_error(400, "UOS_USRCRT0002", "email already exists");

    let reply = app
        .post_internal(
            "/private/user/v1/identifier/freeup",
            json!({"id": first, "identifier": ["email", "phone"]}),
        )
        .await;
    assert_eq!(reply.assert_ok()["response"], "SUCCESS");
    let read = app
        .get_internal(&format!("/private/user/v1/read/{first}"))
        .await;
    let profile = read.assert_ok()["response"].clone();
    assert_eq!(profile["email"], serde_json::Value::Null, "{profile}");
    assert_eq!(profile["phone"], serde_json::Value::Null, "{profile}");
    assert_eq!(profile["maskedEmail"], serde_json::Value::Null);
    assert_eq!(profile["maskedPhone"], serde_json::Value::Null);
    assert!(profile["prevUsedEmail"].is_string(), "{profile}");
    assert!(profile["prevUsedPhone"].is_string(), "{profile}");

    let second = app
        .create_user(json!({"firstName": "Second", "email": email, "phone": phone}))
        .await;
    let found = app
        .search_indexed(json!({"filters": {"email": email}}))
        .await;
    let content = found.assert_ok()["response"]["content"].clone();
    assert_eq!(content.as_array().map(Vec::len), Some(1), "{content}");
    assert_eq!(content[0]["id"], second.as_str());

    // Freeing again finds nothing to free and still answers SUCCESS.
    app.post_internal(
        "/private/user/v1/identifier/freeup",
        json!({"id": first, "identifier": ["email"]}),
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn free_up_requests_are_checked() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user(json!({"firstName": "Kept", "email": unique_email()}))
        .await;
    let free = |request: serde_json::Value| {
        let app = &app;
        async move {
            app.post_internal("/private/user/v1/identifier/freeup", request)
                .await
        }
    };
    free(json!({"identifier": ["email"]})).await.assert_error(
        400,
        "UOS_IDNTFREE0030",
        "Mandatory parameter id is missing.",
    );
    free(json!({"id": user})).await.assert_error(
        400,
        "UOS_IDNTFREE0030",
        "Mandatory parameter identifier is missing.",
    );
    free(json!({"id": user, "identifier": "email"}))
        .await
        .assert_error(
            400,
            "UOS_IDNTFREE0003",
            "Data type of identifier should be List.",
        );
    free(json!({"id": user, "identifier": ["userName"]}))
        .await
        .assert_error(
            400,
            "UOS_IDNTFREE0018",
            "Invalid identifier: userName. Valid values are: email, phone.",
        );
    free(json!({"id": "no-such-user", "identifier": ["email"]}))
        .await
        .assert_error(404, "UOS_IDNTFREE0013", "Requested user resource not found");
    // A private route: the public listener does not have it.
    let public = app
        .post(
            "/private/user/v1/identifier/freeup",
            json!({"id": user, "identifier": ["email"]}),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(public.status.as_u16(), 404);
}
