//! A restart keeps everything written, and the index stays in step with the store.

use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email};

async fn eventually(
    app: &TestApp,
    path: &str,
    request: Value,
    check: impl Fn(&Value) -> bool,
) -> Value {
    app.wait_for_index().await;
    let reply = app.post(path, request, Some(&app.admin_token)).await;
    assert!(
        check(&reply.body),
        "unexpected reply of {path}: {}",
        reply.body
    );
    reply.body
}

#[tokio::test]
async fn a_restart_keeps_organisations_memberships_roles_locations_preferences_and_settings() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.clone());
    let admin = admin.as_deref();
    let channel = format!("rs{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let tenant = app
        .post("/v1/org/create", json!({"orgName": "Restart Board", "isTenant": true, "channel": channel, "organisationType": "board"}), admin)
        .await
        .assert_ok()["organisationId"]
        .as_str()
        .expect("id")
        .to_string();
    let school = app
        .post("/v1/org/create", json!({"orgName": "Restart School", "isTenant": false, "channel": channel, "organisationType": "school"}), admin)
        .await
        .assert_ok()["organisationId"]
        .as_str()
        .expect("id")
        .to_string();
    let email = unique_email();
    let user = app
        .create_user(json!({"firstName": "Stay", "email": email, "channel": channel, "organisationId": school}))
        .await;
    app.post(
        "/v2/user/assign/role",
        json!({"userId": user, "roles": [{"role": "ORG_ADMIN", "operation": "add", "scope": [{"organisationId": tenant}]}]}),
        admin,
    )
    .await
    .assert_ok();
    let state_code = format!("ST{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let state = app
        .post(
            "/v1/location/create",
            json!({"name": "Restart State", "code": state_code, "type": "state"}),
            admin,
        )
        .await
        .assert_ok()["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.post(
        "/v2/org/preferences/create",
        json!({"orgId": tenant, "key": "theme", "data": {"colour": "blue"}}),
        admin,
    )
    .await
    .assert_ok();
    app.post(
        "/v1/system/settings/set",
        json!({"id": "restartSetting", "field": "restartSetting", "value": "kept"}),
        admin,
    )
    .await
    .assert_ok();

    let app = app.restart().await;
    let admin = Some(app.admin_token.as_str());

    let org = app
        .post("/v1/org/read", json!({"organisationId": school}), None)
        .await;
    assert_eq!(org.assert_ok()["response"]["channel"], channel.as_str());
    let read = app.get(&format!("/v5/user/read/{user}"), admin).await;
    let profile = read.assert_ok()["response"].clone();
    assert_eq!(
        profile["rootOrgId"],
        tenant.as_str(),
        "the user belongs to the tenant of its school"
    );
    let member_of: Vec<_> = profile["organisations"]
        .as_array()
        .expect("orgs")
        .iter()
        .map(|o| o["organisationId"].clone())
        .collect();
    assert!(
        member_of.contains(&json!(school)) && member_of.contains(&json!(tenant)),
        "{member_of:?}"
    );
    assert_eq!(profile["roles"][0]["role"], "ORG_ADMIN");
    assert_eq!(
        profile["roles"][0]["scope"],
        json!([{"organisationId": tenant}])
    );
    let preference = app
        .post(
            "/v2/org/preferences/read",
            json!({"orgId": tenant, "key": "theme"}),
            None,
        )
        .await;
    assert_eq!(
        preference.assert_ok()["response"]["data"],
        json!({"colour": "blue"})
    );
    let setting = app
        .get("/v1/system/settings/get/restartSetting", None)
        .await;
    assert_eq!(setting.assert_ok()["response"]["value"], "kept");

    // The index is in step: searches find what the store holds.
    let users = eventually(
        &app,
        "/v3/user/search",
        json!({"filters": {"roles.role": "ORG_ADMIN", "organisations.organisationId": school}}),
        |b| b["result"]["response"]["count"] == 1,
    )
    .await;
    assert_eq!(
        users["result"]["response"]["content"][0]["id"],
        user.as_str(),
        "{users}"
    );
    let orgs = eventually(
        &app,
        "/v2/org/search",
        json!({"filters": {"channel": channel}}),
        |b| b["result"]["response"]["count"] == 2,
    )
    .await;
    assert_eq!(orgs["result"]["response"]["count"], 2, "{orgs}");
    let locations = eventually(
        &app,
        "/v1/location/search",
        json!({"filters": {"code": state_code}}),
        |b| b["result"]["count"] == 1,
    )
    .await;
    assert_eq!(
        locations["result"]["response"][0]["id"],
        state.as_str(),
        "{locations}"
    );
    app.stop().await;
}
