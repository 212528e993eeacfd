//! Self-declarations: add, edit and remove, the status flow (the user submits, the
//! organisation's administrators validate), Sunbird's request rules, and the declared info
//! sealed at rest.

use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, unique_email};

/// A state tenant and a school under it.
async fn tenant_and_school(app: &TestApp) -> (String, String) {
    let channel = format!("decl{}", uuid::Uuid::new_v4().simple());
    let tenant = app
        .create_org(
            json!({"orgName": "State", "isTenant": true, "channel": channel,
                           "organisationType": "board"}),
        )
        .await;
    let school = app
        .create_org(
            json!({"orgName": "School", "isTenant": false, "channel": channel,
                           "organisationType": "school"}),
        )
        .await;
    (tenant, school)
}

async fn declare(app: &TestApp, token: &str, declarations: Value) -> Reply {
    app.patch(
        "/v1/user/declarations",
        json!({ "declarations": declarations }),
        Some(token),
    )
    .await
}

async fn declarations_of(app: &TestApp, user: &str, token: &str) -> Vec<Value> {
    app.get(
        &format!("/v5/user/read/{user}?fields=declarations"),
        Some(token),
    )
    .await
    .assert_ok()["response"]["declarations"]
        .as_array()
        .expect("declarations")
        .clone()
}

#[tokio::test]
async fn a_declaration_is_submitted_validated_edited_and_removed_and_sealed_at_rest() {
    let app = TestApp::spawn().await;
    let (tenant, school) = tenant_and_school(&app).await;
    let user = app
        .create_user(json!({"firstName": "Declarer", "email": unique_email()}))
        .await;
    let token = app.token_for(&user);
    let declared_email = unique_email();
    let school_name = format!("Canary School {}", uuid::Uuid::new_v4().simple());
    let reply = declare(
        &app,
        &token,
        json!([{"operation": "add", "userId": user, "orgId": school, "persona": "Teacher",
                "info": {"declared-email": declared_email, "declared-school-name": school_name}}]),
    )
    .await;
    assert_eq!(reply.assert_ok()["response"], "SUCCESS");
    let listed = declarations_of(&app, &user, &token).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "SUBMITTED");
    assert_eq!(listed[0]["persona"], "teacher");
    assert_eq!(listed[0]["orgId"], school.as_str());
    assert_eq!(listed[0]["info"]["declared-email"], declared_email.as_str());

    // Nothing declared is stored in clear (in the data dir of the embedded store).
    for value in [&declared_email, &school_name] {
        let found = crate::durability::files_containing(&app.data_dir(), value);
        assert!(found.is_empty(), "{value} in clear in {found:?}");
    }

    // The user cannot validate their own declaration; the tenant's administrator can.
    let validate = json!([{"operation": "edit", "userId": user, "orgId": school,
                           "persona": "teacher", "status": "VALIDATED"}]);
    declare(&app, &token, validate.clone()).await.assert_error(
        403,
        "UOS_UDECLUPD0071",
        "You are forbidden from accessing specified resource.",
    );
    let admin = app
        .create_user(json!({"firstName": "Validator", "email": unique_email(),
                            "channel": channel_of(&app, &tenant).await, "roles": ["ORG_ADMIN"]}))
        .await;
    // The administrator only sets the status: no new declaration, no info, nobody else's org.
    let admin_token = app.token_for(&admin);
    for (attempt, what) in [
        (
            json!([{"operation": "add", "userId": user, "orgId": school, "persona": "other",
                 "info": {"declared-school-name": "Made up"}}]),
            "an add",
        ),
        (
            json!([{"operation": "edit", "userId": user, "orgId": school, "persona": "teacher",
                 "status": "VALIDATED", "info": {"declared-school-name": "Made up"}}]),
            "an info change",
        ),
        (
            json!([{"operation": "remove", "userId": user, "orgId": school, "persona": "teacher"}]),
            "a removal",
        ),
    ] {
        let reply = declare(&app, &admin_token, attempt).await;
        assert_eq!(reply.status.as_u16(), 403, "{what}: {:?}", reply.body);
    }
    let (_, elsewhere) = tenant_and_school(&app).await;
    let foreign = app
        .create_user(json!({"firstName": "Foreign", "email": unique_email(),
                            "channel": channel_of(&app, &elsewhere).await, "roles": ["ORG_ADMIN"]}))
        .await;
    declare(&app, &app.token_for(&foreign), validate.clone())
        .await
        .assert_error(
            403,
            "UOS_UDECLUPD0071",
            "You are forbidden from accessing specified resource.",
        );
    declare(&app, &admin_token, validate).await.assert_ok();
    // The declared info is opened for the user only, not for an administrator's read.
    let by_admin = app
        .get(
            &format!("/v5/user/read/{user}?fields=declarations"),
            Some(&app.admin_token),
        )
        .await;
    assert!(
        by_admin.assert_ok()["response"]
            .get("declarations")
            .is_none(),
        "{:?}",
        by_admin.body
    );
    let listed = declarations_of(&app, &user, &token).await;
    assert_eq!(listed[0]["status"], "VALIDATED");
    assert_eq!(
        listed[0]["info"]["declared-school-name"],
        school_name.as_str(),
        "an edit without info keeps it"
    );
    // An error with its type.
    declare(
        &app,
        &app.token_for(&admin),
        json!([{"operation": "edit", "userId": user, "orgId": school, "persona": "teacher",
                "status": "ERROR", "errorType": "ERROR-PHONE"}]),
    )
    .await
    .assert_ok();
    let listed = declarations_of(&app, &user, &token).await;
    assert_eq!(listed[0]["errorType"], "ERROR-PHONE");

    // Editing under another persona replaces the declaration for the organisation.
    declare(
        &app,
        &token,
        json!([{"operation": "edit", "userId": user, "orgId": school, "persona": "default",
                "info": {"declared-school-name": "Renamed"}}]),
    )
    .await
    .assert_ok();
    let listed = declarations_of(&app, &user, &token).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["persona"], "default");
    assert_eq!(listed[0]["status"], "SUBMITTED");
    assert_eq!(listed[0]["info"]["declared-school-name"], "Renamed");

    declare(
        &app,
        &token,
        json!([{"operation": "remove", "userId": user, "orgId": school, "persona": "default"}]),
    )
    .await
    .assert_ok();
    assert!(declarations_of(&app, &user, &token).await.is_empty());

    // A deleted user's declarations go with it.
    declare(
        &app,
        &token,
        json!([{"operation": "add", "userId": user, "orgId": school,
                "info": {"declared-school-name": "Again"}}]),
    )
    .await
    .assert_ok();
    app.post("/v1/user/delete", json!({"userId": user}), Some(&token))
        .await
        .assert_ok();
    let rows = app
        .stored()
        .scan(
            userorg::storage::Table::UserDeclarations,
            &userorg::storage::key_prefix(&user),
            None,
            10,
        )
        .await
        .expect("scan");
    assert!(rows.is_empty(), "{rows:?}");
}

async fn channel_of(app: &TestApp, org: &str) -> String {
    app.post("/v1/org/read", json!({"organisationId": org}), None)
        .await
        .assert_ok()["response"]["channel"]
        .as_str()
        .expect("channel")
        .to_string()
}

#[tokio::test]
async fn declaration_requests_follow_sunbirds_rules() {
    let app = TestApp::spawn().await;
    let (_, school) = tenant_and_school(&app).await;
    let custodian = app.setting("custodianOrgId").await;
    let user = app
        .create_user(json!({"firstName": "Declarer", "email": unique_email()}))
        .await;
    let token = app.token_for(&user);
    let other = app
        .create_user(json!({"firstName": "Other", "email": unique_email()}))
        .await;
    let stranger = app.token_for(&other);
    let twice = json!({"operation": "add", "userId": user, "orgId": school});
    declare(&app, &token, json!([twice.clone(), twice]))
        .await
        .assert_error(
            400,
            "UOS_UDECLUPD0017",
            &format!(
                "Duplicate declaration for userId {user}, orgId {school} and persona default."
            ),
        );
    declare(&app, &token, json!([])).await.assert_error(
        400,
        "UOS_UDECLUPD0017",
        "Mandatory parameter declarations is missing.",
    );
    declare(&app, &token, json!([{"operation": "add", "orgId": school}]))
        .await
        .assert_error(
            400,
            "UOS_UDECLUPD0017",
            "Mandatory parameter userId or orgId is missing.",
        );
    declare(&app, &token, json!([{"userId": user, "orgId": school}]))
        .await
        .assert_error(
            400,
            "UOS_UDECLUPD0027",
            "Operation name is invalid. Please provide a valid operation name",
        );
    declare(
        &app,
        &token,
        json!([{"operation": "add", "userId": user, "orgId": custodian}]),
    )
    .await
    .assert_error(
        400,
        "UOS_UDECLUPD0019",
        "Please provide valid organisationid.",
    );
    declare(
        &app,
        &token,
        json!([{"operation": "add", "userId": user, "orgId": school, "status": "DONE"}]),
    )
    .await
    .assert_error(
        400,
        "UOS_UDECLUPD0018",
        "Invalid status: DONE. Valid values are: SUBMITTED, VALIDATED, REJECTED, ERROR.",
    );
    declare(
        &app,
        &stranger,
        json!([{"operation": "add", "userId": user, "orgId": school}]),
    )
    .await
    .assert_error(
        403,
        "UOS_UDECLUPD0071",
        "You are forbidden from accessing specified resource.",
    );
}

#[tokio::test]
async fn a_validator_changes_only_the_status_of_an_existing_declaration() {
    let app = TestApp::spawn().await;
    let (tenant, school) = tenant_and_school(&app).await;
    let (_, elsewhere) = tenant_and_school(&app).await;
    let user = app
        .create_user(json!({"firstName": "Declarer", "email": unique_email()}))
        .await;
    let token = app.token_for(&user);
    declare(
        &app,
        &token,
        json!([{"operation": "add", "userId": user, "orgId": school, "persona": "teacher"},
               {"operation": "add", "userId": user, "orgId": elsewhere, "persona": "teacher"}]),
    )
    .await
    .assert_ok();
    let admin = app
        .create_user(json!({"firstName": "Validator", "email": unique_email(),
                            "channel": channel_of(&app, &tenant).await, "roles": ["ORG_ADMIN"]}))
        .await;
    let admin_token = app.token_for(&admin);
    // A user's own edit would replace their other declarations; a validation does not.
    declare(
        &app,
        &admin_token,
        json!([{"operation": "edit", "userId": user, "orgId": school, "persona": "teacher",
                "status": "VALIDATED"}]),
    )
    .await
    .assert_ok();
    let mut statuses: Vec<(String, String)> = declarations_of(&app, &user, &token)
        .await
        .iter()
        .map(|d| {
            (
                d["orgId"].as_str().expect("org").to_string(),
                d["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    statuses.sort();
    let mut expected = vec![
        (school.clone(), "VALIDATED".to_string()),
        (elsewhere.clone(), "SUBMITTED".to_string()),
    ];
    expected.sort();
    assert_eq!(statuses, expected);
    // Nothing to validate under another persona: no declaration is made up.
    declare(
        &app,
        &admin_token,
        json!([{"operation": "edit", "userId": user, "orgId": school, "persona": "parent",
                "status": "VALIDATED"}]),
    )
    .await
    .assert_error(
        404,
        "UOS_UDECLUPD0013",
        "Requested declaration resource not found",
    );
}
