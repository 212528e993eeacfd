//! User consent (update and read, v1 and v2) and terms-and-conditions acceptance, with
//! Sunbird's request rules, codes and messages, and the expiry on an injected clock.

use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, unique_email};

async fn user(app: &TestApp) -> (String, String) {
    let id = app
        .create_user(json!({"firstName": "Consenting", "email": unique_email()}))
        .await;
    let token = app.token_for(&id);
    (id, token)
}

async fn update(app: &TestApp, token: &str, consent: Value) -> Reply {
    app.post(
        "/v1/user/consent/update",
        json!({ "consent": consent }),
        Some(token),
    )
    .await
}

async fn read(app: &TestApp, version: &str, token: &str, filters: Value) -> Reply {
    app.post(
        &format!("/{version}/user/consent/read"),
        json!({"consent": {"filters": filters}}),
        Some(token),
    )
    .await
}

#[tokio::test]
async fn a_consent_is_given_read_updated_and_expires() {
    let app = TestApp::spawn().await;
    let (id, token) = user(&app).await;
    let org = app.custodian_school().await;
    let consent = json!({"userId": id, "consumerId": org, "objectId": "course-1",
                         "objectType": "Collection", "status": "active"});
    let reply = update(&app, &token, consent.clone()).await;
    let result = reply.assert_ok();
    assert_eq!(result["consent"], json!({"userId": id}));
    assert_eq!(result["message"], "User Consent updated successfully.");

    let filters = json!({"userId": id, "consumerId": org, "objectId": "course-1"});
    let first = read(&app, "v2", &token, filters.clone()).await;
    let consents = first.assert_ok()["consents"].clone();
    assert_eq!(consents.as_array().map(Vec::len), Some(1));
    let entry = &consents[0];
    assert_eq!(
        entry["id"],
        format!("usr-consent:{id}:{org}:course-1").as_str()
    );
    assert_eq!(entry["status"], "ACTIVE", "stored upper-cased");
    assert_eq!(entry["consumerType"], "ORGANISATION");
    assert_eq!(entry["objectType"], "Collection");
    assert_eq!(entry["categories"], json!([]));
    let created = entry["createdOn"].clone();
    assert_eq!(entry["lastUpdatedOn"], created);

    // Revoked a day later: created stays, updated and the expiry move.
    app.clock.advance(chrono::Duration::days(1));
    let mut revoked = consent.clone();
    revoked["status"] = json!("REVOKED");
    update(&app, &token, revoked).await.assert_ok();
    let second = read(&app, "v1", &token, filters.clone()).await;
    let entry = second.assert_ok()["consents"][0].clone();
    assert_eq!(entry["status"], "REVOKED");
    assert_eq!(entry["createdOn"], created);
    assert_ne!(entry["lastUpdatedOn"], created);

    // Active again, then 100 days pass: the consent reads as expired.
    update(&app, &token, consent.clone()).await.assert_ok();
    app.clock.advance(chrono::Duration::days(99));
    let still = read(&app, "v2", &token, filters.clone()).await;
    assert_eq!(still.assert_ok()["consents"][0]["status"], "ACTIVE");
    app.clock.advance(chrono::Duration::days(2));
    let expired = read(&app, "v2", &token, filters.clone()).await;
    assert_eq!(expired.assert_ok()["consents"][0]["status"], "EXPIRED");

    // A deleted consent is not found: v2 in the envelope, v1 under its legacy name.
    let mut deleted = consent.clone();
    deleted["status"] = json!("DELETED");
    update(&app, &token, deleted).await.assert_ok();
    read(&app, "v2", &token, filters.clone())
        .await
        .assert_error(
            404,
            "UOS_UCNSTRED0013",
            "Requested user consent resource not found",
        );
    let legacy = read(&app, "v1", &token, filters).await;
    assert_eq!(legacy.status.as_u16(), 404);
    assert_eq!(legacy.err(), "USER_CONSENT_NOT_FOUND");
    assert_eq!(legacy.body["params"]["status"], "USER_CONSENT_NOT_FOUND");
    assert_eq!(legacy.errmsg(), "Requested user consent resource not found");
}

#[tokio::test]
async fn consent_requests_follow_sunbirds_rules() {
    let app = TestApp::spawn().await;
    let (id, token) = user(&app).await;
    let org = app.custodian_school().await;
    let custodian = app.setting("custodianOrgId").await;
    let full = json!({"userId": id, "consumerId": org, "objectId": "o",
                      "objectType": "Organisation", "status": "ACTIVE"});
    for (missing, name) in [
        ("userId", "userId"),
        ("consumerId", "consumerId"),
        ("objectType", "objectType"),
        ("objectId", "objectId"),
        ("status", "status"),
    ] {
        let mut consent = full.clone();
        consent.as_object_mut().expect("object").remove(missing);
        update(&app, &token, consent).await.assert_error(
            400,
            "UOS_UCNSNTUPD0030",
            &format!("Mandatory parameter {name} is missing."),
        );
    }
    let mut wrong = full.clone();
    wrong["status"] = json!("MAYBE");
    update(&app, &token, wrong).await.assert_error(
        400,
        "UOS_UCNSNTUPD0026",
        "Consent status is invalid",
    );
    for bad in [custodian.as_str(), "no-such-org"] {
        let mut consent = full.clone();
        consent["consumerId"] = json!(bad);
        update(&app, &token, consent).await.assert_error(
            400,
            "UOS_UCNSNTUPD0019",
            "Please provide valid organisationId.",
        );
    }
    read(&app, "v2", &token, json!({"userId": id, "consumerId": org}))
        .await
        .assert_error(
            400,
            "UOS_UCNSTRED0030",
            "Mandatory parameter objectId is missing.",
        );
    read(
        &app,
        "v2",
        &token,
        json!({"userId": id, "consumerId": org, "objectId": "never"}),
    )
    .await
    .assert_error(
        404,
        "UOS_UCNSTRED0013",
        "Requested user consent resource not found",
    );

    // Nobody else gives or reads a user's consent; the parent does for its child, and the
    // consumer's administrators read it.
    update(&app, &token, full.clone()).await.assert_ok();
    let (_, stranger) = user(&app).await;
    let mut for_other = full.clone();
    for_other["status"] = json!("REVOKED");
    update(&app, &stranger, for_other.clone())
        .await
        .assert_error(
            403,
            "UOS_UCNSNTUPD0071",
            "You are forbidden from accessing specified resource.",
        );
    update(&app, &app.admin_token, for_other)
        .await
        .assert_error(
            403,
            "UOS_UCNSNTUPD0071",
            "You are forbidden from accessing specified resource.",
        );
    let filters = json!({"userId": id, "consumerId": org, "objectId": "o"});
    read(&app, "v2", &stranger, filters.clone())
        .await
        .assert_error(
            403,
            "UOS_UCNSTRED0071",
            "You are forbidden from accessing specified resource.",
        );
    read(&app, "v2", &app.admin_token, filters)
        .await
        .assert_ok();
    let kid = app
        .post(
            "/v1/manageduser/create",
            json!({"firstName": "Kid", "managedBy": id}),
            Some(&token),
        )
        .await
        .assert_ok()["userId"]
        .as_str()
        .expect("userId")
        .to_string();
    let mut child_consent = full.clone();
    child_consent["userId"] = json!(kid);
    update(&app, &token, child_consent).await.assert_ok();
    read(
        &app,
        "v2",
        &token,
        json!({"userId": kid, "consumerId": org, "objectId": "o"}),
    )
    .await
    .assert_ok();
    // An ORG_ADMIN of the user's tenant reads it too.
    let tenant_admin = app
        .create_user(json!({"firstName": "Admin", "email": unique_email(), "roles": ["ORG_ADMIN"]}))
        .await;
    read(
        &app,
        "v2",
        &app.token_for(&tenant_admin),
        json!({"userId": id, "consumerId": org, "objectId": "o"}),
    )
    .await
    .assert_ok();
    // A deleted user's consents are void.
    app.post("/v1/user/delete", json!({"userId": id}), Some(&token))
        .await
        .assert_ok();
    read(
        &app,
        "v2",
        &app.admin_token,
        json!({"userId": id, "consumerId": org, "objectId": "o"}),
    )
    .await
    .assert_error(
        404,
        "UOS_UCNSTRED0013",
        "Requested user consent resource not found",
    );
}

#[tokio::test]
async fn terms_are_accepted_at_their_latest_version_only() {
    let app = TestApp::spawn().await;
    let (id, token) = user(&app).await;
    let accept = |body: Value, token: String| {
        let app = &app;
        async move { app.post("/v1/user/tnc/accept", body, Some(&token)).await }
    };
    accept(json!({}), token.clone()).await.assert_error(
        400,
        "UOS_TNCACCPT0030",
        "Mandatory parameter version is missing.",
    );
    accept(json!({"version": "v0"}), token.clone())
        .await
        .assert_error(
            400,
            "UOS_TNCACCPT0017",
            "Invalid value v0 for parameter version. Please provide a valid value.",
        );
    accept(
        json!({"version": "v1", "tncType": "noSuchTnc"}),
        token.clone(),
    )
    .await
    .assert_error(
        400,
        "UOS_TNCACCPT0017",
        "Invalid value v1 for parameter version. Please provide a valid value.",
    );
    accept(
        json!({"version": "v1", "userId": "not-a-uuid"}),
        token.clone(),
    )
    .await
    .assert_error(400, "UOS_TNCACCPT0052", "Invalid property userId.");
    let before = app.get(&format!("/v5/user/read/{id}"), Some(&token)).await;
    assert_eq!(before.assert_ok()["response"]["promptTnC"], true);

    let reply = accept(json!({"version": "V1"}), token.clone()).await;
    assert_eq!(reply.assert_ok()["response"], "SUCCESS");
    let after = app.get(&format!("/v5/user/read/{id}"), Some(&token)).await;
    let profile = after.assert_ok()["response"].clone();
    assert_eq!(profile["tncAcceptedVersion"], "V1");
    assert_eq!(profile["promptTnC"], false);
    let accepted_on = profile["tncAcceptedOn"].clone();
    assert!(accepted_on.is_string(), "{profile}");
    // The same version again writes nothing.
    app.clock.advance(chrono::Duration::hours(1));
    accept(json!({"version": "v1"}), token.clone())
        .await
        .assert_ok();
    let again = app.get(&format!("/v5/user/read/{id}"), Some(&token)).await;
    assert_eq!(again.assert_ok()["response"]["tncAcceptedOn"], accepted_on);

    // A new latest version makes the old acceptance stale.
    app.post(
        "/v1/system/settings/set",
        json!({"id": "tncConfig", "field": "tncConfig",
               "value": r#"{"latestVersion": "v2", "v2": {"url": "http://localhost/v2"}}"#}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    accept(json!({"version": "v1"}), token.clone())
        .await
        .assert_error(
            400,
            "UOS_TNCACCPT0017",
            "Invalid value v1 for parameter version. Please provide a valid value.",
        );
    accept(json!({"version": "v2"}), token.clone())
        .await
        .assert_ok();

    // The administrator terms need the role in the user's root organisation.
    let custodian = app.setting("custodianOrgId").await;
    accept(
        json!({"version": "v1", "tncType": "orgAdminTnc"}),
        token.clone(),
    )
    .await
    .assert_error(
        400,
        "UOS_TNCACCPT0017",
        &format!(
            "Invalid value {custodian} for parameter organisationId. Please provide a valid value."
        ),
    );
    let admin = app
        .create_user(json!({"firstName": "Admin", "email": unique_email(), "roles": ["ORG_ADMIN"]}))
        .await;
    accept(
        json!({"version": "v1", "tncType": "orgAdminTnc"}),
        app.token_for(&admin),
    )
    .await
    .assert_ok();
    accept(
        json!({"version": "v1", "tncType": "groupsTnc"}),
        app.token_for(&admin),
    )
    .await
    .assert_ok();
    let read = app
        .get(
            &format!("/v5/user/read/{admin}"),
            Some(&app.token_for(&admin)),
        )
        .await;
    let all = read.assert_ok()["response"]["allTncAccepted"].clone();
    assert_eq!(all["orgAdminTnc"]["version"], "v1");
    assert_eq!(all["groupsTnc"]["version"], "v1");
    assert!(all["groupsTnc"]["tncAcceptedOn"].is_string(), "{all}");
}

#[tokio::test]
async fn a_parent_accepts_terms_for_its_child_and_nobody_else_does() {
    let app = TestApp::spawn().await;
    let (parent, token) = user(&app).await;
    let (stranger, stranger_token) = user(&app).await;
    let kid = app
        .post(
            "/v1/manageduser/create",
            json!({"firstName": "Kid", "managedBy": parent}),
            Some(&token),
        )
        .await
        .assert_ok()["userId"]
        .as_str()
        .expect("userId")
        .to_string();
    app.post(
        "/v1/user/tnc/accept",
        json!({"version": "v1", "userId": kid}),
        Some(&token),
    )
    .await
    .assert_ok();
    let read = app.get(&format!("/v5/user/read/{kid}"), Some(&token)).await;
    assert_eq!(read.assert_ok()["response"]["tncAcceptedVersion"], "v1");
    for (target, caller) in [(kid.as_str(), &stranger_token), (stranger.as_str(), &token)] {
        app.post(
            "/v1/user/tnc/accept",
            json!({"version": "v1", "userId": target}),
            Some(caller),
        )
        .await
        .assert_error(
            403,
            "UOS_TNCACCPT0071",
            "You are forbidden from accessing specified resource.",
        );
    }
}
