//! The grant rule: only an ADMIN grants or removes ADMIN, on every path, and only an ADMIN
//! changes, blocks or re-roles a user who holds it. A tenant administrator (here of the
//! custodian organisation, where the bootstrap administrator lives) can do neither.

use serde_json::json;

use crate::helpers::{TestApp, unique_email};

const FORBIDDEN: &str = "You are forbidden from accessing specified resource.";

/// An ORG_ADMIN of the custodian organisation and their token.
async fn tenant_admin(app: &TestApp) -> String {
    let id = app
        .create_user(
            json!({"firstName": "Tenant", "email": unique_email(), "roles": ["ORG_ADMIN"]}),
        )
        .await;
    app.token_for(&id)
}

#[tokio::test]
async fn a_tenant_admin_cannot_create_an_admin() {
    let app = TestApp::spawn().await;
    let token = tenant_admin(&app).await;
    app.post(
        "/v1/user/create",
        json!({"firstName": "Escalate", "email": unique_email(), "roles": ["ADMIN"]}),
        Some(&token),
    )
    .await
    .assert_error(403, "UOS_USRCRT0071", FORBIDDEN);
    // Other roles of the tenant stay theirs to grant.
    app.post(
        "/v1/user/create",
        json!({"firstName": "Creator", "email": unique_email(), "roles": ["CONTENT_CREATOR"]}),
        Some(&token),
    )
    .await
    .assert_ok();
    // And an ADMIN may create an ADMIN.
    app.post(
        "/v1/user/create",
        json!({"firstName": "Second", "email": unique_email(), "roles": ["ADMIN"]}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_admin_cannot_demote_block_or_change_an_admin() {
    let app = TestApp::spawn().await;
    let token = tenant_admin(&app).await;
    let custodian = app.setting("custodianOrgId").await;
    let admin = app.admin_id.clone();
    // v1 replaces the set in the organisation: naming only PUBLIC would remove ADMIN.
    app.post(
        "/v1/user/assign/role",
        json!({"userId": admin, "organisationId": custodian, "roles": ["PUBLIC"]}),
        Some(&token),
    )
    .await
    .assert_error(403, "UOS_ROLUPD0071", FORBIDDEN);
    app.post(
        "/v2/user/assign/role",
        json!({"userId": admin, "roles": [{"role": "ADMIN", "operation": "remove",
                                           "scope": [{"organisationId": custodian}]}]}),
        Some(&token),
    )
    .await
    .assert_error(403, "UOS_ROLUPD0071", FORBIDDEN);
    app.post("/v1/user/block", json!({"userId": admin}), Some(&token))
        .await
        .assert_error(403, "UOS_USRBLOK0071", FORBIDDEN);
    app.patch(
        "/v1/user/update",
        json!({"userId": admin, "email": unique_email(), "recoveryEmail": unique_email()}),
        Some(&token),
    )
    .await
    .assert_error(403, "UOS_USRUPD0071", FORBIDDEN);
    // The administrator is untouched: still ADMIN, still active.
    let read = app
        .get(&format!("/v5/user/read/{admin}"), Some(&app.admin_token))
        .await;
    let user = read.assert_ok()["response"].clone();
    assert_eq!(user["status"], 1);
    assert!(
        user["roles"]
            .as_array()
            .expect("roles")
            .iter()
            .any(|r| r["role"] == "ADMIN"),
        "{user}"
    );
    // The same tenant admin still administers ordinary users.
    let ordinary = app
        .create_user(json!({"firstName": "Plain", "email": unique_email()}))
        .await;
    app.post("/v1/user/block", json!({"userId": ordinary}), Some(&token))
        .await
        .assert_ok();
    app.stop().await;
}
