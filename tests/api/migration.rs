//! Tenant migration: a custodian user moves into a state tenant and one of its schools, with
//! external ids; consents are marked deleted, declarations validated, the notice sent, and
//! search finds the user under the new root organisation. Reject leaves the user where it was.

use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, unique_email};

struct Tenant {
    id: String,
    channel: String,
    school: String,
}

async fn tenant(app: &TestApp) -> Tenant {
    let channel = format!("state{}", uuid::Uuid::new_v4().simple());
    let id = app
        .create_org(
            json!({"orgName": "State Board", "isTenant": true, "channel": channel,
                           "organisationType": "board"}),
        )
        .await;
    let school = app
        .create_org(json!({"orgName": "State School", "isTenant": false,
                           "channel": channel, "externalId": "SCH-1",
                           "organisationType": "school"}))
        .await;
    Tenant {
        id,
        channel,
        school,
    }
}

async fn migrate(app: &TestApp, request: Value) -> Reply {
    app.send(
        reqwest::Method::PATCH,
        format!("{}/private/user/v1/migrate", app.internal),
        Some(json!({ "request": request })),
        None,
    )
    .await
}

#[tokio::test]
async fn a_custodian_user_moves_into_a_state_tenant() {
    let app = TestApp::spawn().await;
    let state = tenant(&app).await;
    let email = unique_email();
    let user = app
        .create_user(json!({"firstName": "Mover", "email": email, "roles": ["CONTENT_CREATOR"]}))
        .await;
    let token = app.token_for(&user);
    // A consent given and a declaration made while in the custodian organisation.
    let consumer = app.custodian_school().await;
    let filters = json!({"userId": user, "consumerId": consumer, "objectId": consumer});
    app.post(
        "/v1/user/consent/update",
        json!({"consent": {"userId": user, "consumerId": consumer, "objectId": consumer,
                           "objectType": "Organisation", "status": "ACTIVE"}}),
        Some(&token),
    )
    .await
    .assert_ok();
    app.patch(
        "/v1/user/declarations",
        json!({"declarations": [{"operation": "add", "userId": user, "orgId": state.school,
                                 "info": {"declared-school-name": "State School"}}]}),
        Some(&token),
    )
    .await
    .assert_ok();

    let reply = migrate(
        &app,
        json!({"userId": user, "channel": state.channel, "orgExternalId": "sch-1",
               "externalIds": [{"id": "T-42", "idType": state.channel,
                                "provider": state.channel}]}),
    )
    .await;
    let result = reply.assert_ok();
    assert_eq!(result["response"], "SUCCESS");
    assert_eq!(result["errors"], json!([]));

    let read = app
        .get(
            &format!("/v5/user/read/{user}?fields=organisations,declarations"),
            Some(&token),
        )
        .await;
    let profile = read.assert_ok()["response"].clone();
    assert_eq!(
        profile["roles"],
        json!([]),
        "roles of the old tenant do not follow"
    );
    assert_eq!(profile["rootOrgId"], state.id.as_str());
    assert_eq!(profile["channel"], state.channel.as_str());
    assert_eq!(profile["flagsValue"].as_i64().map(|f| f & 4), Some(4));
    let mut organisations: Vec<String> = profile["organisations"]
        .as_array()
        .expect("organisations")
        .iter()
        .map(|m| m["organisationId"].as_str().expect("id").to_string())
        .collect();
    organisations.sort();
    let mut expected = vec![state.id.clone(), state.school.clone()];
    expected.sort();
    assert_eq!(organisations, expected);
    assert_eq!(profile["declarations"][0]["status"], "VALIDATED");
    let plain = app
        .get(&format!("/v5/user/read/{user}"), Some(&token))
        .await;
    let ids = plain.assert_ok()["response"]["externalIds"].clone();
    assert_eq!(ids[0]["id"], "T-42", "{ids}");

    // The custodian-time consent reads as deleted.
    app.post(
        "/v2/user/consent/read",
        json!({"consent": {"filters": filters}}),
        Some(&token),
    )
    .await
    .assert_error(
        404,
        "UOS_UCNSTRED0013",
        "Requested user consent resource not found",
    );
    // Search finds the user under the new root organisation.
    let found = app
        .search_indexed(json!({"filters": {"rootOrgId": state.id}}))
        .await;
    let ids: Vec<Value> = found.assert_ok()["response"]["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|hit| hit["id"].clone())
        .collect();
    assert!(ids.contains(&json!(user)), "{ids:?}");
    // The notice went to the user's email.
    let mails = app.mails_to(&email).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].body.contains("State Board"), "{}", mails[0].body);

    // A user no longer in the custodian organisation is not migrated again.
    migrate(&app, json!({"userId": user, "channel": state.channel}))
        .await
        .assert_error(
            400,
            "UOS_USRMIG0045",
            "Mismatch of given parameters: user rootOrgId and custodianOrgId.",
        );
}

#[tokio::test]
async fn migration_requests_are_checked_and_reject_leaves_the_user() {
    let app = TestApp::spawn().await;
    let state = tenant(&app).await;
    let other = tenant(&app).await;
    let user = app
        .create_user(json!({"firstName": "Stayer", "email": unique_email()}))
        .await;
    migrate(&app, json!({"channel": state.channel}))
        .await
        .assert_error(
            400,
            "UOS_USRMIG0030",
            "Mandatory parameter userId is missing.",
        );
    migrate(&app, json!({"userId": user})).await.assert_error(
        400,
        "UOS_USRMIG0030",
        "Mandatory parameter channel is missing.",
    );
    migrate(&app, json!({"userId": user, "channel": "nowhere"}))
        .await
        .assert_error(
            400,
            "UOS_USRMIG0017",
            "Invalid value nowhere for parameter channel. Please provide a valid value.",
        );
    migrate(
        &app,
        json!({"userId": user, "channel": state.channel, "orgId": other.school}),
    )
    .await
    .assert_error(
        400,
        "UOS_USRMIG0045",
        "Mismatch of given parameters: channel, orgId.",
    );
    migrate(
        &app,
        json!({"userId": user, "channel": state.channel, "orgExternalId": "NOPE"}),
    )
    .await
    .assert_error(
        400,
        "UOS_USRMIG0017",
        "Invalid value NOPE for parameter orgExternalId. Please provide a valid value.",
    );
    migrate(
        &app,
        json!({"userId": user, "channel": state.channel, "action": "maybe"}),
    )
    .await
    .assert_error(
        400,
        "UOS_USRMIG0018",
        "Invalid action: maybe. Valid values are: accept, reject.",
    );
    migrate(
        &app,
        json!({"userId": "no-such-user", "channel": state.channel}),
    )
    .await
    .assert_error(404, "UOS_USRMIG0013", "Requested user resource not found");

    // Reject: the declaration to the tenant's school is rejected, the user stays.
    let token = app.token_for(&user);
    app.patch(
        "/v1/user/declarations",
        json!({"declarations": [{"operation": "add", "userId": user, "orgId": state.school}]}),
        Some(&token),
    )
    .await
    .assert_ok();
    migrate(
        &app,
        json!({"userId": user, "channel": state.channel, "action": "reject"}),
    )
    .await
    .assert_ok();
    let read = app
        .get(
            &format!("/v5/user/read/{user}?fields=declarations"),
            Some(&token),
        )
        .await;
    let profile = read.assert_ok()["response"].clone();
    assert_ne!(profile["rootOrgId"], state.id.as_str());
    assert_eq!(profile["declarations"][0]["status"], "REJECTED");
}
