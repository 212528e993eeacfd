//! System settings: get, list and set, Sunbird's messages, and a set visible at once.

use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email};

#[tokio::test]
async fn seeded_settings_are_read_and_listed() {
    let app = TestApp::spawn().await;
    let reply = app
        .get("/v1/system/settings/get/custodianOrgChannel", None)
        .await;
    assert_eq!(
        reply.body["id"],
        "api.system.settings.get.custodianOrgChannel"
    );
    assert_eq!(
        reply.assert_ok().clone(),
        json!({"response": {"id": "custodianOrgChannel", "field": "custodianOrgChannel", "value": "sunbird"}})
    );

    let list = app.get("/v1/system/settings/list", None).await;
    let settings = list.assert_ok()["response"]
        .as_array()
        .cloned()
        .expect("a list");
    for required in [
        "phoneUnique",
        "emailUnique",
        "custodianOrgId",
        "userProfileConfig",
    ] {
        let setting = settings
            .iter()
            .find(|s| s["id"] == required)
            .unwrap_or_else(|| panic!("{required} listed"));
        assert_eq!(setting["field"], required);
    }
    for setting in &settings {
        let keys: Vec<&str> = setting
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["id", "field", "value"], "{setting}");
        assert!(
            setting["value"].is_string(),
            "values are raw strings: {setting}"
        );
    }
    // JSON settings are returned as JSON text.
    let profile = settings
        .iter()
        .find(|s| s["id"] == "userProfileConfig")
        .and_then(|s| s["value"].as_str())
        .expect("userProfileConfig");
    let parsed: Value = serde_json::from_str(profile).expect("JSON text");
    assert!(parsed["privateFields"].is_array());

    let phone = app.get("/v1/system/settings/get/phoneUnique", None).await;
    assert_eq!(phone.assert_ok()["response"]["value"], "true");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_setting_is_a_404_with_the_unformatted_message() {
    let app = TestApp::spawn().await;
    let reply = app.get("/v1/system/settings/get/noSuchSetting", None).await;
    reply.assert_error(404, "UOS_SYSRED0013", "Requested {0} resource not found");
    assert_eq!(reply.body["responseCode"], "RESOURCE_NOT_FOUND");
    app.stop().await;
}

#[tokio::test]
async fn a_set_is_visible_to_the_next_get_at_once() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    app.post(
        "/v1/system/settings/set",
        json!({"id": "portalTheme", "field": "portalTheme", "value": "first"}),
        admin,
    )
    .await
    .assert_ok();
    // Read first, so the old value sits in the cache.
    app.get("/v1/system/settings/get/portalTheme", None)
        .await
        .assert_ok();
    let reply = app
        .post(
            "/v1/system/settings/set",
            json!({"id": "portalTheme", "field": "portalTheme", "value": "renamed"}),
            admin,
        )
        .await;
    assert_eq!(reply.body["id"], "api.system.settings.set");
    assert_eq!(
        reply.assert_ok().clone(),
        json!({"response": "SUCCESS", "id": "portalTheme"})
    );
    let read = app.get("/v1/system/settings/get/portalTheme", None).await;
    assert_eq!(read.assert_ok()["response"]["value"], "renamed");

    let config =
        json!({"latestVersion": "v2", "v2": {"url": "https://example.test/tnc"}}).to_string();
    app.post(
        "/v1/system/settings/set",
        json!({"id": "tncConfig", "field": "tncConfig", "value": config}),
        admin,
    )
    .await
    .assert_ok();
    let read = app.get("/v1/system/settings/get/tncConfig", None).await;
    assert_eq!(
        read.assert_ok().clone(),
        json!({"response": {"id": "tncConfig", "field": "tncConfig", "value": config}})
    );

    // A new setting through the gateway path, then listed.
    app.post(
        "/api/data/v1/system/settings/set",
        json!({"id": "newSetting", "field": "newSetting", "value": "x"}),
        admin,
    )
    .await
    .assert_ok();
    let got = app
        .get("/api/data/v1/system/settings/get/newSetting", None)
        .await;
    assert_eq!(got.assert_ok()["response"]["value"], "x");
    let list = app.get("/v1/system/settings/list", None).await;
    assert!(
        list.assert_ok()["response"]
            .as_array()
            .expect("list")
            .iter()
            .any(|s| s["id"] == "newSetting" && s["value"] == "x")
    );
    app.stop().await;
}

#[tokio::test]
async fn set_validates_and_needs_an_admin() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"field": "f", "value": "v"}),
            "UOS_SYSCRT0030",
            "Mandatory parameter id is missing.",
        ),
        (
            json!({"id": " ", "field": "f", "value": "v"}),
            "UOS_SYSCRT0030",
            "Mandatory parameter id is missing.",
        ),
        (
            json!({"id": "f", "value": "v"}),
            "UOS_SYSCRT0030",
            "Mandatory parameter field is missing.",
        ),
        (
            json!({"id": "f", "field": "f"}),
            "UOS_SYSCRT0030",
            "Mandatory parameter value is missing.",
        ),
        (
            json!({"id": "f", "field": "f", "value": {"a": 1}}),
            "UOS_SYSCRT0003",
            "Data type of value should be String.",
        ),
        (
            json!({"id": "f", "field": "f", "value": true}),
            "UOS_SYSCRT0003",
            "Data type of value should be String.",
        ),
    ];
    for (request, err, message) in cases {
        app.post("/v1/system/settings/set", request, admin)
            .await
            .assert_error(400, err, message);
    }
    let request = json!({"id": "f", "field": "f", "value": "v"});
    app.post("/v1/system/settings/set", request.clone(), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    let plain = app
        .create_user(json!({"firstName": "Plain", "email": unique_email()}))
        .await;
    app.post(
        "/v1/system/settings/set",
        request,
        Some(&app.token_for(&plain)),
    )
    .await
    .assert_error(
        403,
        "UOS_SYSCRT0071",
        "You are forbidden from accessing specified resource.",
    );
    app.get("/v1/system/settings/get/f", None)
        .await
        .assert_error(404, "UOS_SYSRED0013", "Requested {0} resource not found");
    app.stop().await;
}
