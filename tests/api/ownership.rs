//! Fields with an owner (mass assignment): the verified flags, organisation membership, external
//! ids and an organisation's tenant are set only by whoever owns them.

use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email};

const FORBIDDEN: &str = "You are forbidden from accessing specified resource.";

async fn read(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v5/user/read/{id}"), Some(&app.admin_token))
        .await
        .assert_ok()["response"]
        .clone()
}

#[tokio::test]
async fn verified_flags_come_from_an_administrator_and_a_new_contact_is_unverified() {
    let app = TestApp::spawn().await;
    // Anonymous sign-up claiming a verified address: registered, but not as verified.
    let email = unique_email();
    let signed_up = app
        .post(
            "/v1/user/signup",
            json!({"firstName": "Claimer", "email": email, "emailVerified": true}),
            None,
        )
        .await;
    let id = signed_up.assert_ok()["userId"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(read(&app, &id).await["emailVerified"], false);
    // The user cannot verify themself either.
    let token = app.token_for(&id);
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "emailVerified": true}),
        Some(&token),
    )
    .await
    .assert_ok();
    assert_eq!(read(&app, &id).await["emailVerified"], false);
    // An administrator can.
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "emailVerified": true}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    assert_eq!(read(&app, &id).await["emailVerified"], true);
    // A changed address starts unverified again.
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "email": unique_email()}),
        Some(&token),
    )
    .await
    .assert_ok();
    assert_eq!(read(&app, &id).await["emailVerified"], false);
    app.stop().await;
}

#[tokio::test]
async fn users_cannot_join_organisations_or_squat_other_tenants_external_ids() {
    let app = TestApp::spawn().await;
    let channel = format!("ow{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let tenant = crate::orgs::create_tenant(&app, &channel).await;
    let id = app
        .create_user(json!({"firstName": "Joiner", "email": unique_email()}))
        .await;
    let token = app.token_for(&id);
    // Joining an organisation: not for the user themself.
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "organisationId": tenant}),
        Some(&token),
    )
    .await
    .assert_error(403, "UOS_USRUPD0071", FORBIDDEN);
    // Not even an ADMIN moves a user into another tenant's organisation through update.
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "organisationId": tenant}),
        Some(&app.admin_token),
    )
    .await
    .assert_error(
        400,
        "UOS_USRUPD0017",
        &format!(
            "Invalid value {tenant} for parameter organisationId. Please provide a valid value."
        ),
    );
    // External ids of another tenant (its channel as provider) are not the user's to claim.
    let squat = json!([{"id": "T-1", "idType": "staff", "provider": channel}]);
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "externalIds": squat}),
        Some(&token),
    )
    .await
    .assert_error(403, "UOS_USRUPD0071", FORBIDDEN);
    app.post(
        "/v1/user/create",
        json!({"firstName": "Squatter", "email": unique_email(), "externalIds": squat}),
        None,
    )
    .await
    .assert_error(401, "UOS_0070", "You are not authorized.");
    // Their own tenant's ids are theirs.
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "externalIds": [{"id": "S-1", "idType": "staff", "provider": "sunbird"}]}),
        Some(&token),
    )
    .await
    .assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_administrator_cannot_move_an_organisation_to_another_tenant() {
    let app = TestApp::spawn().await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let (home, away) = (format!("home{suffix}"), format!("away{suffix}"));
    let home_id = crate::orgs::create_tenant(&app, &home).await;
    crate::orgs::create_tenant(&app, &away).await;
    let school = app
        .post(
            "/v1/org/create",
            json!({"orgName": "School", "isTenant": false, "channel": home, "organisationType": "school"}),
            Some(&app.admin_token),
        )
        .await;
    let school = school.assert_ok()["organisationId"]
        .as_str()
        .expect("id")
        .to_string();
    let admin = app
        .create_user(
            json!({"firstName": "Local", "email": unique_email(), "channel": home,
                            "roles": ["ORG_ADMIN"]}),
        )
        .await;
    let token = app.token_for(&admin);
    // Their own tenant's organisation, other fields: fine.
    app.patch(
        "/v1/org/update",
        json!({"organisationId": school, "description": "ours"}),
        Some(&token),
    )
    .await
    .assert_ok();
    app.patch(
        "/v1/org/update",
        json!({"organisationId": school, "channel": away}),
        Some(&token),
    )
    .await
    .assert_error(403, "UOS_ORGUPD0071", FORBIDDEN);
    let org = app
        .post("/v1/org/read", json!({"organisationId": school}), None)
        .await;
    assert_eq!(org.assert_ok()["response"]["channel"], home.as_str());
    let _ = home_id;
    app.stop().await;
}
