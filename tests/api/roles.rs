use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email};
use crate::orgs::create_tenant;

fn unique_channel() -> String {
    format!("rl{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// How many users with `role` the index finds among `user`, once it caught up; a failed search
/// fails the test (it never counts as zero).
async fn search_role(app: &TestApp, role: &str, user: &str) -> u64 {
    let reply = app
        .search_indexed(json!({"filters": {"roles.role": role, "id": user}}))
        .await;
    reply.assert_ok()["response"]["count"]
        .as_u64()
        .expect("a count")
}

#[tokio::test]
async fn the_role_catalogue_and_user_roles_are_readable() {
    let app = TestApp::spawn().await;
    let reply = app.get("/v1/role/read", None).await;
    let roles = reply.assert_ok()["roles"]
        .as_array()
        .expect("roles")
        .clone();
    assert_eq!(reply.body["id"], "api.role.read");
    assert_eq!(roles.len(), 19);
    let admin = roles.iter().find(|r| r["id"] == "ADMIN").expect("ADMIN");
    let groups: Vec<_> = admin["actionGroups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["id"].clone())
        .collect();
    assert!(
        groups.contains(&json!("SYSTEM_ADMINISTRATION")),
        "{groups:?}"
    );
    assert!(
        !roles.iter().any(|r| r["id"] == "SYSTEM_ADMINISTRATION"),
        "a group, not a role"
    );

    let reply = app
        .get(&format!("/v1/user/role/read/{}", app_admin(&app)), None)
        .await;
    let result = reply.assert_ok().clone();
    assert_eq!(result["roles"][0]["role"], "ADMIN");
    assert_eq!(result["name"], "Admin");
    let none = app.get("/v1/user/role/read/nobody", None).await;
    assert_eq!(none.assert_ok(), &json!({"roles": []}));
    app.stop().await;
}

fn app_admin(app: &TestApp) -> String {
    // The admin token's subject is the bootstrap admin id.
    let payload = app.admin_token.split('.').nth(1).expect("payload");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("b64");
    let claims: Value = serde_json::from_slice(&bytes).expect("json");
    claims["sub"].as_str().expect("sub").to_string()
}

#[tokio::test]
async fn v2_assignment_is_visible_in_read_and_search_and_removal_undoes_it() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let tenant = create_tenant(&app, &unique_channel()).await;
    let user = app
        .create_user(json!({"firstName": "R", "email": unique_email()}))
        .await;
    let reply = app
        .post(
            "/v2/user/assign/role",
            json!({"userId": user, "roles": [{"role": "ORG_ADMIN", "operation": "add", "scope": [{"organisationId": tenant}]}]}),
            admin,
        )
        .await;
    assert_eq!(reply.assert_ok(), &json!({"response": "SUCCESS"}));
    assert_eq!(reply.body["id"], "api.user.assign.role");
    let read = app.get(&format!("/v5/user/read/{user}"), admin).await;
    let roles = read.assert_ok()["response"]["roles"].clone();
    assert_eq!(roles[0]["role"], "ORG_ADMIN");
    assert_eq!(roles[0]["scope"], json!([{"organisationId": tenant}]));
    let organisations = read.body["result"]["response"]["organisations"]
        .as_array()
        .expect("orgs")
        .clone();
    assert!(
        organisations
            .iter()
            .any(|o| o["organisationId"] == tenant.as_str()),
        "the role made the user a member"
    );
    assert_eq!(
        search_role(&app, "ORG_ADMIN", &user).await,
        1,
        "search by roles.role within a second"
    );
    let by_org = app
        .post(
            "/v3/user/search",
            json!({"filters": {"organisations.organisationId": tenant}}),
            admin,
        )
        .await;
    assert_eq!(by_org.assert_ok()["response"]["count"], 1);

    app.post(
        "/v2/user/assign/role",
        json!({"userId": user, "roles": [{"role": "ORG_ADMIN", "operation": "remove", "scope": [{"organisationId": tenant}]}]}),
        admin,
    )
    .await
    .assert_ok();
    let read = app.get(&format!("/v5/user/read/{user}"), admin).await;
    assert_eq!(read.assert_ok()["response"]["roles"], json!([]));
    assert_eq!(
        search_role(&app, "ORG_ADMIN", &user).await,
        0,
        "gone from search"
    );
    app.stop().await;
}

#[tokio::test]
async fn v1_assignment_is_the_complete_set_for_one_organisation() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let first = create_tenant(&app, &unique_channel()).await;
    let second = create_tenant(&app, &unique_channel()).await;
    let user = app
        .create_user(json!({"firstName": "V", "email": unique_email()}))
        .await;
    for (org, roles) in [
        (&first, json!(["CONTENT_CREATOR", "COURSE_MENTOR"])),
        (&second, json!(["CONTENT_CREATOR"])),
    ] {
        app.post(
            "/v1/user/assign/role",
            json!({"userId": user, "organisationId": org, "roles": roles}),
            admin,
        )
        .await
        .assert_ok();
    }
    app.post(
        "/v1/user/assign/role",
        json!({"userId": user, "organisationId": first, "roles": ["COURSE_MENTOR"]}),
        admin,
    )
    .await
    .assert_ok();
    let reply = app.get(&format!("/v1/user/role/read/{user}"), None).await;
    let mut roles = reply.assert_ok()["roles"]
        .as_array()
        .expect("roles")
        .clone();
    roles.sort_by_key(|r| r["role"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        roles,
        vec![
            json!({"role": "CONTENT_CREATOR", "scope": [{"organisationId": second}]}),
            json!({"role": "COURSE_MENTOR", "scope": [{"organisationId": first}]}),
        ]
    );
    let v1 = app.get(&format!("/v1/user/read/{user}"), admin).await;
    let orgs = v1.assert_ok()["response"]["organisations"]
        .as_array()
        .expect("orgs")
        .clone();
    let in_first = orgs
        .iter()
        .find(|o| o["organisationId"] == first.as_str())
        .expect("member of first");
    assert_eq!(in_first["roles"], json!(["COURSE_MENTOR"]));
    app.stop().await;
}

#[tokio::test]
async fn assignment_errors_match_sunbird() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let tenant = create_tenant(&app, &unique_channel()).await;
    let user = app
        .create_user(json!({"firstName": "E", "email": unique_email()}))
        .await;
    let v1_cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"organisationId": tenant, "roles": ["PUBLIC"]}),
            400,
            "UOS_ROLUPD0030",
            "Mandatory parameter userId is missing.",
        ),
        (
            json!({"userId": user, "organisationId": tenant}),
            400,
            "UOS_ROLUPD0030",
            "Mandatory parameter roles is missing.",
        ),
        (
            json!({"userId": user, "organisationId": tenant, "roles": "PUBLIC"}),
            400,
            "UOS_ROLUPD0003",
            "Data type of roles should be List.",
        ),
        (
            json!({"userId": user, "organisationId": tenant, "roles": []}),
            400,
            "UOS_ROLUPD0031",
            "Mandatory parameter roles is empty.",
        ),
        (
            json!({"userId": user, "roles": ["PUBLIC"]}),
            400,
            "UOS_ROLUPD0030",
            "Mandatory parameter organisationId or externalId and provider is missing.",
        ),
        (
            json!({"userId": user, "organisationId": tenant, "roles": ["NOPE"]}),
            400,
            "UOS_ROLUPD0019",
            "Please provide valid role.",
        ),
        (
            json!({"userId": "nobody", "organisationId": tenant, "roles": ["PUBLIC"]}),
            404,
            "UOS_ROLUPD0013",
            "Requested user resource not found",
        ),
        (
            json!({"userId": user, "organisationId": "none", "roles": ["PUBLIC"]}),
            400,
            "UOS_ROLUPD0017",
            "Invalid value none for parameter organisationId. Please provide a valid value.",
        ),
    ];
    for (request, status, err, errmsg) in v1_cases {
        app.post("/v1/user/assign/role", request, admin)
            .await
            .assert_error(status, err, errmsg);
    }
    let v2_cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"userId": user, "roles": [{"operation": "add", "scope": [{"organisationId": tenant}]}]}),
            "UOS_ROLUPD0030",
            "Mandatory parameter {0} is missing.",
        ),
        (
            json!({"userId": user, "roles": [{"role": "PUBLIC", "operation": "add", "scope": []}]}),
            "UOS_ROLUPD0030",
            "Mandatory parameter {0} is missing.",
        ),
        (
            json!({"userId": user, "roles": [{"role": "PUBLIC", "operation": "add", "scope": [{"organisationId": null}]}]}),
            "UOS_ROLUPD0017",
            "Invalid value null for parameter scope.organisationId. Please provide a valid value.",
        ),
        (
            json!({"userId": user, "roles": [{"role": "PUBLIC", "operation": "add", "scope": [{"organisationId": 5}]}]}),
            "UOS_ROLUPD0003",
            "Data type of scope.organisationId should be String.",
        ),
        (
            json!({"userId": user, "roles": [{"role": "NOPE", "operation": "add", "scope": [{"organisationId": tenant}]}]}),
            "UOS_ROLUPD0019",
            "Please provide valid role.",
        ),
    ];
    for (request, err, errmsg) in v2_cases {
        app.post("/v2/user/assign/role", request, admin)
            .await
            .assert_error(400, err, errmsg);
    }
    // Removing an unknown role is a no-op, as in Sunbird.
    app.post(
        "/v2/user/assign/role",
        json!({"userId": user, "roles": [{"role": "NOPE", "operation": "remove", "scope": [{"organisationId": tenant}]}]}),
        admin,
    )
    .await
    .assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn org_admins_assign_in_their_tenant_only_and_never_admin() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let mine = create_tenant(&app, &unique_channel()).await;
    let other = create_tenant(&app, &unique_channel()).await;
    let boss = app
        .create_user(json!({"firstName": "Boss", "email": unique_email()}))
        .await;
    app.post(
        "/v1/user/assign/role",
        json!({"userId": boss, "organisationId": mine, "roles": ["ORG_ADMIN"]}),
        admin,
    )
    .await
    .assert_ok();
    let boss_token = app.token_for(&boss);
    let worker = app
        .create_user(json!({"firstName": "Worker", "email": unique_email()}))
        .await;
    app.post(
        "/v1/user/assign/role",
        json!({"userId": worker, "organisationId": mine, "roles": ["CONTENT_CREATOR"]}),
        Some(&boss_token),
    )
    .await
    .assert_ok();
    let forbidden = "You are forbidden from accessing specified resource.";
    app.post(
        "/v1/user/assign/role",
        json!({"userId": worker, "organisationId": other, "roles": ["CONTENT_CREATOR"]}),
        Some(&boss_token),
    )
    .await
    .assert_error(403, "UOS_ROLUPD0071", forbidden);
    app.post(
        "/v1/user/assign/role",
        json!({"userId": worker, "organisationId": mine, "roles": ["ADMIN"]}),
        Some(&boss_token),
    )
    .await
    .assert_error(403, "UOS_ROLUPD0071", forbidden);
    // The private route needs no token on the internal listener.
    app.post_internal(
        "/private/user/v1/assign/role",
        json!({"userId": worker, "organisationId": other, "roles": ["PUBLIC"]}),
    )
    .await
    .assert_ok();
    app.post_internal(
        "/private/user/v2/assign/role",
        json!({"userId": worker, "roles": [{"role": "PUBLIC", "operation": "remove", "scope": [{"organisationId": other}]}]}),
    )
    .await
    .assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn single_organisation_roles_can_be_enforced() {
    let app = TestApp::spawn_with(&[("USERORG__ROLES__SINGLE_ORGANISATION", "true")]).await;
    let admin = Some(app.admin_token.as_str());
    let first = create_tenant(&app, &unique_channel()).await;
    let second = create_tenant(&app, &unique_channel()).await;
    let user = app
        .create_user(json!({"firstName": "S", "email": unique_email()}))
        .await;
    app.post(
        "/v1/user/assign/role",
        json!({"userId": user, "organisationId": first, "roles": ["CONTENT_CREATOR"]}),
        admin,
    )
    .await
    .assert_ok();
    app.post(
        "/v1/user/assign/role",
        json!({"userId": user, "organisationId": second, "roles": ["CONTENT_CREATOR"]}),
        admin,
    )
    .await
    .assert_error(
        500,
        "UOS_ROLUPD0076",
        "Error while processing assign role. Invalid Organisation Id",
    );
    app.stop().await;
}
