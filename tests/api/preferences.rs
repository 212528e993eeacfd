//! Tenant preferences v2: create, update, read (public and private), Sunbird's validator
//! messages and quirks, the `default` fallback and the `dataSecurityPolicy` level rules.

use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email};

const FORBIDDEN: &str = "You are forbidden from accessing specified resource.";
const UNAUTHORIZED: &str = "You are not authorized.";

/// An ORG_ADMIN of the custodian organisation: `(user id, token)`.
async fn org_admin(app: &TestApp) -> (String, String) {
    let id = app
        .create_user(json!({"firstName": "Orgadmin", "email": unique_email(), "roles": ["ORG_ADMIN"], "channel": "sunbird"}))
        .await;
    let token = app.token_for(&id);
    (id, token)
}

fn policy(level: &str, jobs: Value) -> Value {
    json!({"level": level, "dataEncrypted": "No", "comments": "free text", "job": jobs})
}

#[tokio::test]
async fn an_org_admin_creates_updates_and_reads_a_preference() {
    let app = TestApp::spawn().await;
    let org = app.setting("custodianOrgId").await;
    let (org_admin_id, token) = org_admin(&app).await;

    let data = json!({"theme": {"color": "blue"}, "features": ["a", "b"]});
    let created = app
        .post(
            "/v2/org/preferences/create",
            json!({"orgId": org, "key": "orgSettings", "data": data}),
            Some(&token),
        )
        .await;
    assert_eq!(created.body["id"], "api.org.preferences.create");
    assert_eq!(created.body["ver"], "v2");
    assert_eq!(
        created.assert_ok().clone(),
        json!({"orgId": org, "key": "orgSettings", "response": "SUCCESS"})
    );

    let read = app
        .post(
            "/v2/org/preferences/read",
            json!({"orgId": org, "key": "orgSettings"}),
            None,
        )
        .await;
    let row = read.assert_ok()["response"].clone();
    let created_on = row["createdOn"].as_i64().expect("epoch millis");
    assert!(created_on > 1_600_000_000_000, "{row}");
    assert_eq!(
        row,
        json!({"orgId": org, "key": "orgSettings", "data": data, "createdBy": org_admin_id,
               "createdOn": created_on, "updatedBy": null, "updatedOn": null})
    );

    let updated = app
        .patch(
            "/v2/org/preferences/update",
            json!({"orgId": org, "key": "orgSettings", "data": {"theme": "dark"}}),
            Some(&token),
        )
        .await;
    assert_eq!(updated.assert_ok().clone(), json!({"response": "SUCCESS"}));
    // An empty object is a valid update.
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": org, "key": "orgSettings", "data": {}}),
        Some(&token),
    )
    .await
    .assert_ok();
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": org, "key": "orgSettings", "data": {"theme": "dark"}}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();

    let private = app
        .post_internal(
            "/private/v2/org/preferences/read",
            json!({"orgId": org, "key": "orgSettings"}),
        )
        .await;
    assert_eq!(private.body["id"], ".private.v2.org.preferences.read");
    let row = private.assert_ok()["response"].clone();
    assert_eq!(row["data"], json!({"theme": "dark"}));
    assert_eq!(row["createdBy"], org_admin_id.as_str());
    assert_eq!(row["createdOn"], created_on);
    assert!(row["updatedOn"].as_i64().is_some(), "{row}");
    assert!(
        row["updatedBy"]
            .as_str()
            .is_some_and(|by| by != org_admin_id)
    );
    // The private path is not served on the public listener.
    let public_private = app
        .post(
            "/private/v2/org/preferences/read",
            json!({"orgId": org, "key": "orgSettings"}),
            None,
        )
        .await;
    assert_eq!(public_private.status.as_u16(), 404);
    app.stop().await;
}

#[tokio::test]
async fn create_validates_like_sunbird() {
    let app = TestApp::spawn().await;
    let org = app.setting("custodianOrgId").await;
    let admin = Some(app.admin_token.as_str());
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"key": "k", "data": {"a": 1}}),
            "UOS_TPREFCRT0030",
            "Mandatory parameter request.orgId is missing.",
        ),
        (
            json!({"orgId": 5, "key": "k", "data": {"a": 1}}),
            "UOS_TPREFCRT0003",
            "Data type of request.orgId should be java.lang.String.",
        ),
        (
            json!({"orgId": " ", "key": "k", "data": {"a": 1}}),
            "UOS_TPREFCRT0030",
            "Mandatory parameter request.orgId is missing.",
        ),
        (
            json!({"orgId": org, "data": {"a": 1}}),
            "UOS_TPREFCRT0030",
            "Mandatory parameter request.key is missing.",
        ),
        (
            json!({"orgId": org, "key": ["k"], "data": {"a": 1}}),
            "UOS_TPREFCRT0003",
            "Data type of request.key should be java.lang.String.",
        ),
        (
            json!({"orgId": org, "key": "k"}),
            "UOS_TPREFCRT0030",
            "Mandatory parameter request.data is missing.",
        ),
        (
            json!({"orgId": org, "key": "k", "data": [1]}),
            "UOS_TPREFCRT0003",
            "Data type of request.data should be java.util.Map.",
        ),
        (
            json!({"orgId": org, "key": "k", "data": {}}),
            "UOS_TPREFCRT0030",
            "Mandatory parameter request.data is missing.",
        ),
    ];
    for (request, err, message) in cases {
        app.post("/v2/org/preferences/create", request, admin)
            .await
            .assert_error(400, err, message);
    }

    let request = json!({"orgId": org, "key": "k", "data": {"a": 1}});
    app.post("/v2/org/preferences/create", request.clone(), None)
        .await
        .assert_error(401, "UOS_0070", UNAUTHORIZED);
    let plain = app
        .create_user(json!({"firstName": "Plain", "email": unique_email()}))
        .await;
    app.post(
        "/v2/org/preferences/create",
        request.clone(),
        Some(&app.token_for(&plain)),
    )
    .await
    .assert_error(403, "UOS_TPREFCRT0071", FORBIDDEN);
    // The system-wide preferences are for ADMIN only.
    let (_, org_admin_token) = org_admin(&app).await;
    app.post(
        "/v2/org/preferences/create",
        json!({"orgId": "default", "key": "k", "data": {"a": 1}}),
        Some(&org_admin_token),
    )
    .await
    .assert_error(403, "UOS_TPREFCRT0071", FORBIDDEN);
    app.post(
        "/v2/org/preferences/create",
        json!({"orgId": "all", "key": "k", "data": {"a": 1}}),
        Some(&org_admin_token),
    )
    .await
    .assert_error(403, "UOS_TPREFCRT0071", FORBIDDEN);
    // `all`, the installation-wide preferences Sunbird keeps, names no organisation.
    app.post(
        "/v2/org/preferences/create",
        json!({"orgId": "all", "key": "installationWide", "data": {"a": 1}}),
        admin,
    )
    .await
    .assert_ok();
    let all = app
        .post(
            "/v2/org/preferences/read",
            json!({"orgId": "all", "key": "installationWide"}),
            None,
        )
        .await;
    assert_eq!(all.assert_ok()["response"]["data"], json!({"a": 1}));
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": "all", "key": "installationWide", "data": {"a": 2}}),
        admin,
    )
    .await
    .assert_ok();
    app.post(
        "/v2/org/preferences/create",
        json!({"orgId": "no-such-org", "key": "k", "data": {"a": 1}}),
        admin,
    )
    .await
    .assert_error(
        404,
        "UOS_TPREFCRT0013",
        "Requested organisation resource not found",
    );

    app.post("/v2/org/preferences/create", request.clone(), admin)
        .await
        .assert_ok();
    // Sunbird's quirk: the "already exists" code with the "not found" message.
    app.post("/v2/org/preferences/create", request, admin)
        .await
        .assert_error(
            400,
            "UOS_TPREFCRT0002",
            &format!("Requested k and {org} resource not found"),
        );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_creates_of_one_preference_have_one_winner() {
    let app = TestApp::spawn().await;
    let org = app.setting("custodianOrgId").await;
    let replies = futures::future::join_all((0..8).map(|n| {
        app.post(
            "/v2/org/preferences/create",
            json!({"orgId": org, "key": "race", "data": {"n": n}}),
            Some(&app.admin_token),
        )
    }))
    .await;
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 1);
    for reply in replies.iter().filter(|r| r.status != 200) {
        reply.assert_error(
            400,
            "UOS_TPREFCRT0002",
            &format!("Requested race and {org} resource not found"),
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn update_and_read_answer_missing_preferences() {
    let app = TestApp::spawn().await;
    let org = app.setting("custodianOrgId").await;
    let admin = Some(app.admin_token.as_str());
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": org, "key": "nothing", "data": {"a": 1}}),
        admin,
    )
    .await
    .assert_error(
        404,
        "UOS_TPREFUPD0013",
        &format!("Requested nothing and {org} resource not found"),
    );
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": org, "key": "nothing", "data": "x"}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_TPREFUPD0003",
        "Data type of request.data should be java.util.Map.",
    );
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": org, "key": "nothing"}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_TPREFUPD0030",
        "Mandatory parameter request.data is missing.",
    );
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": org, "key": "nothing", "data": {}}),
        None,
    )
    .await
    .assert_error(401, "UOS_0070", UNAUTHORIZED);

    let read = app
        .post(
            "/v2/org/preferences/read",
            json!({"orgId": org, "key": "nothing"}),
            None,
        )
        .await;
    read.assert_error(
        404,
        "UOS_TPREFRED0013",
        &format!("Requested nothing and {org} resource not found"),
    );
    assert_eq!(read.body["responseCode"], "RESOURCE_NOT_FOUND");
    app.post("/v2/org/preferences/read", json!({"orgId": org}), None)
        .await
        .assert_error(
            400,
            "UOS_TPREFRED0030",
            "Mandatory parameter request.key is missing.",
        );
    // The two special keys fall back to the `default` organisation, and say "exists" when
    // neither has them.
    app.post(
        "/v2/org/preferences/read",
        json!({"orgId": org, "key": "userPrivateFields"}),
        None,
    )
    .await
    .assert_error(
        400,
        "UOS_TPREFRED0002",
        &format!("Requested userPrivateFields and {org} resource not found"),
    );
    let fields = json!({"fields": ["email", "phone"]});
    app.post(
        "/v2/org/preferences/create",
        json!({"orgId": "default", "key": "userPrivateFields", "data": fields}),
        admin,
    )
    .await
    .assert_ok();
    let fallback = app
        .post(
            "/v2/org/preferences/read",
            json!({"orgId": org, "key": "userPrivateFields"}),
            None,
        )
        .await;
    let row = fallback.assert_ok()["response"].clone();
    assert_eq!(row["orgId"], "default");
    assert_eq!(row["data"], fields);
    app.stop().await;
}

#[tokio::test]
async fn data_security_policies_follow_the_level_rules() {
    let app = TestApp::spawn().await;
    let org = app.setting("custodianOrgId").await;
    let admin = Some(app.admin_token.as_str());
    let create = |org_id: &str, data: Value| {
        app.post(
            "/v2/org/preferences/create",
            json!({"orgId": org_id, "key": "dataSecurityPolicy", "data": data}),
            admin,
        )
    };

    // A tenant policy needs the system default first.
    create(
        &org,
        policy(
            "PLAIN_DATASET",
            json!({"userExport": {"level": "PLAIN_DATASET"}}),
        ),
    )
    .await
    .assert_error(
        404,
        "UOS_TPREFCRT0013",
        &format!("Requested dataSecurityPolicy and {org} resource not found"),
    );

    // The policy's own rules apply to the default too.
    let own_rules: Vec<(Value, &str, &str)> = vec![
        (
            json!({"job": {}}),
            "UOS_TPREFCRT0028",
            "Requested data for this operation is not valid.",
        ),
        (
            policy("TOP_SECRET", json!({})),
            "UOS_TPREFCRT0079",
            "Invalid data security level TOP_SECRET provided. Please provide a valid data security level.",
        ),
        (
            policy("PLAIN_DATASET", json!({"userExport": {}})),
            "UOS_TPREFCRT0028",
            "Requested data for this operation is not valid.",
        ),
        (
            policy("PLAIN_DATASET", json!({"userExport": {"level": "L9"}})),
            "UOS_TPREFCRT0079",
            "Invalid data security level L9 provided for job userExport. Please provide a valid data security level.",
        ),
        (
            policy(
                "TEXT_KEY_ENCRYPTED_DATASET",
                json!({"userExport": {"level": "PLAIN_DATASET"}}),
            ),
            "UOS_TPREFCRT0080",
            "Invalid data security level PLAIN_DATASET provided for job userExport. Cannot be set lower than the default security level: TEXT_KEY_ENCRYPTED_DATASET",
        ),
    ];
    for (data, err, message) in own_rules {
        create("default", data)
            .await
            .assert_error(400, err, message);
    }

    let default = policy(
        "PASSWORD_PROTECTED_DATASET",
        json!({
            "userExport": {"level": "TEXT_KEY_ENCRYPTED_DATASET"},
            "progressExport": {"level": "PASSWORD_PROTECTED_DATASET"}
        }),
    );
    let reply = create("default", default.clone()).await;
    assert_eq!(
        reply.assert_ok().clone(),
        json!({"orgId": "default", "key": "dataSecurityPolicy", "response": "SUCCESS"})
    );

    let against_default: Vec<(Value, &str, &str)> = vec![
        (
            policy("PLAIN_DATASET", json!({})),
            "UOS_TPREFCRT0082",
            "Tenant level's security PLAIN_DATASET cannot be lower than system level's security PASSWORD_PROTECTED_DATASET. Please provide a valid data security level.",
        ),
        (
            policy(
                "PASSWORD_PROTECTED_DATASET",
                json!({"assessmentExport": {"level": "PUBLIC_KEY_ENCRYPTED_DATASET"}}),
            ),
            "UOS_TPREFCRT0081",
            "Default data security policy settings is missing for the job: assessmentExport",
        ),
        (
            policy(
                "PASSWORD_PROTECTED_DATASET",
                json!({"userExport": {"level": "PASSWORD_PROTECTED_DATASET"}}),
            ),
            "UOS_TPREFCRT0080",
            "Invalid data security level PASSWORD_PROTECTED_DATASET provided for job userExport. Cannot be set lower than the default security level: TEXT_KEY_ENCRYPTED_DATASET",
        ),
    ];
    for (data, err, message) in against_default {
        create(&org, data).await.assert_error(400, err, message);
    }

    // A tenant without its own policy reads the default one.
    let read = app
        .post(
            "/v2/org/preferences/read",
            json!({"orgId": org, "key": "dataSecurityPolicy"}),
            None,
        )
        .await;
    let row = read.assert_ok()["response"].clone();
    assert_eq!(
        (row["orgId"].clone(), row["data"].clone()),
        (json!("default"), default)
    );

    let tenant = policy(
        "TEXT_KEY_ENCRYPTED_DATASET",
        json!({"userExport": {"level": "PUBLIC_KEY_ENCRYPTED_DATASET"}}),
    );
    create(&org, tenant.clone()).await.assert_ok();
    let read = app
        .post(
            "/v2/org/preferences/read",
            json!({"orgId": org, "key": "dataSecurityPolicy"}),
            None,
        )
        .await;
    assert_eq!(read.assert_ok()["response"]["data"], tenant);

    // Updates follow the same rules.
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": org, "key": "dataSecurityPolicy", "data": policy("PLAIN_DATASET", json!({}))}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_TPREFUPD0082",
        "Tenant level's security PLAIN_DATASET cannot be lower than system level's security PASSWORD_PROTECTED_DATASET. Please provide a valid data security level.",
    );
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": org, "key": "dataSecurityPolicy", "data": policy("NOPE", json!({}))}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_TPREFUPD0079",
        "Invalid data security level NOPE provided. Please provide a valid data security level.",
    );
    app.patch(
        "/v2/org/preferences/update",
        json!({"orgId": org, "key": "dataSecurityPolicy", "data": policy("PUBLIC_KEY_ENCRYPTED_DATASET", json!({}))}),
        admin,
    )
    .await
    .assert_ok();
    app.stop().await;
}
