use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email, unique_phone};

#[tokio::test]
async fn create_answers_the_sunbird_envelope() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/user/create",
        "/v2/user/create",
        "/v3/user/create",
        "/v1/ssouser/create",
    ] {
        let reply = app
            .post(
                path,
                json!({
                    "firstName": "Asha", "lastName": "Rao", "email": unique_email(),
                    "emailVerified": true, "phone": unique_phone(), "password": "S3cret!pass",
                    "roles": ["PUBLIC"], "dob": "1990"
                }),
                Some(&app.admin_token),
            )
            .await;
        let result = reply.assert_ok().clone();
        let expected_id = if path.contains("ssouser") {
            "api.ssouser.create"
        } else {
            "api.user.create"
        };
        assert_eq!(reply.body["id"], expected_id);
        assert_eq!(result["response"], "SUCCESS");
        assert_eq!(result["errors"], json!([]));
        let id = result["userId"].as_str().expect("userId");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(result.as_object().expect("map").len(), 3, "{result}");
    }
    app.stop().await;
}

#[tokio::test]
async fn signup_puts_users_in_the_custodian_org() {
    let app = TestApp::spawn().await;
    for path in ["/v1/user/signup", "/v2/user/signup"] {
        let reply = app
            .post(
                path,
                json!({"firstName": "Self", "email": unique_email()}),
                None,
            )
            .await;
        let result = reply.assert_ok().clone();
        assert_eq!(reply.body["id"], "api.user.signup");
        assert_eq!(result["response"], "SUCCESS");
        assert!(result.get("errors").is_none(), "signup has no errors key");
        let id = result["userId"].as_str().expect("id").to_string();
        let read = app
            .get(&format!("/v5/user/read/{id}"), Some(&app.admin_token))
            .await;
        let user = &read.assert_ok()["response"];
        assert_eq!(user["channel"], "sunbird");
        assert_eq!(user["organisations"][0]["associationType"], 2);
        assert_eq!(user["organisations"][0]["isSelfDeclaration"], true);
    }
    let reply = app
        .post(
            "/v2/user/signup",
            json!({"firstName": "Bad", "email": "bad"}),
            None,
        )
        .await;
    reply.assert_error(400, "UOS_USRCRT0009", "Invalid format for given {0}.");
    app.stop().await;
}

#[tokio::test]
async fn create_validation_errors_match_sunbird() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"email": unique_email()}),
            "UOS_USRCRT0030",
            "Mandatory parameter firstName is missing.",
        ),
        (
            json!({"firstName": "  ", "email": unique_email()}),
            "UOS_USRCRT0030",
            "Mandatory parameter firstName is missing.",
        ),
        (
            json!({"firstName": "A"}),
            "UOS_USRCRT0019",
            "Please provide valid email or phone.",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "managedBy": "x"}),
            "UOS_USRCRT0011",
            "Please provide only email or phone or managed by",
        ),
        (
            json!({"firstName": "A", "email": "not-an-email"}),
            "UOS_USRCRT0009",
            "Invalid format for given email.",
        ),
        (
            json!({"firstName": "A", "email": "a@b"}),
            "UOS_USRCRT0009",
            "Invalid format for given email.",
        ),
        (
            json!({"firstName": "A", "phone": "12345"}),
            "UOS_USRCRT0009",
            "Invalid format for given phone.",
        ),
        (
            json!({"firstName": "A", "phone": "+919876543210"}),
            "UOS_USRCRT0019",
            "Please provide valid phone.",
        ),
        (
            json!({"firstName": "A", "phone": "9876543210", "countryCode": "+abc"}),
            "UOS_USRCRT0019",
            "Please provide valid country code.",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "password": "password"}),
            "UOS_USRCRT0024",
            "Password must contain a minimum of 8 characters including numerals, lower and upper case alphabets and special characters",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "password": "Sh0rt!"}),
            "UOS_USRCRT0024",
            "Password must contain a minimum of 8 characters including numerals, lower and upper case alphabets and special characters",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "dob": "90"}),
            "UOS_USRCRT0009",
            "Invalid format for given dob.",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "rootOrgId": "x"}),
            "UOS_USRCRT0021",
            "Invalid parameter rootOrgId in request.",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "roles": "PUBLIC"}),
            "UOS_USRCRT0003",
            "Data type of roles should be List.",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "roles": ["NOT_A_ROLE"]}),
            "UOS_USRCRT0019",
            "Please provide valid role.",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "channel": "nowhere"}),
            "UOS_USRCRT0017",
            "Invalid value nowhere for parameter channel. Please provide a valid value.",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "organisationId": "nope"}),
            "UOS_USRCRT0019",
            "Please provide valid organisation.",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "externalIds": [{"id": "1", "provider": "p"}]}),
            "UOS_USRCRT0030",
            "Mandatory parameter externalIds.idType is missing.",
        ),
        (
            json!({"firstName": "A", "email": unique_email(), "externalIds": [{"id": "1", "idType": "t", "provider": "p", "operation": "remove"}]}),
            "UOS_USRCRT0018",
            "Invalid externalIds.operation: remove. Valid values are: add.",
        ),
    ];
    for (request, err, errmsg) in cases {
        let reply = app.post("/v1/user/create", request.clone(), admin).await;
        assert_eq!(reply.status, 400, "{request} -> {}", reply.body);
        reply.assert_error(400, err, errmsg);
    }
    app.stop().await;
}

#[tokio::test]
async fn duplicate_identifiers_are_refused() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let email = unique_email();
    let phone = unique_phone();
    app.create_user(json!({
        "firstName": "First", "email": email, "phone": phone, "userName": "taken_name",
        "externalIds": [{"id": "EXT-1", "idType": "state", "provider": "state"}]
    }))
    .await;
    app.post(
        "/v1/user/create",
        json!({"firstName": "B", "email": email.to_uppercase()}),
        admin,
    )
    .await
    .assert_error(400, "UOS_USRCRT0002", "email already exists");
    app.post(
        "/v1/user/create",
        json!({"firstName": "B", "phone": phone}),
        admin,
    )
    .await
    .assert_error(400, "UOS_USRCRT0002", "phone already exists");
    // Sunbird checks the phone before the email.
    app.post(
        "/v1/user/create",
        json!({"firstName": "B", "email": email, "phone": phone}),
        admin,
    )
    .await
    .assert_error(400, "UOS_USRCRT0002", "phone already exists");
    app.post(
        "/v1/user/create",
        json!({"firstName": "B", "email": unique_email(), "userName": "Taken_Name"}),
        admin,
    )
    .await
    .assert_error(400, "UOS_USRCRT0002", "userName already exists");
    app.post(
        "/v1/user/create",
        json!({"firstName": "B", "email": unique_email(), "externalIds": [{"id": "ext-1", "idType": "State", "provider": "state"}]}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_USRCRT0002",
        "externalId (id: ext-1, idType: State, provider: state) already exists",
    );
    // Nothing of a refused create is kept: its other identifiers stay free.
    let other = unique_email();
    app.post(
        "/v1/user/create",
        json!({"firstName": "B", "email": other, "phone": phone}),
        admin,
    )
    .await
    .assert_error(400, "UOS_USRCRT0002", "phone already exists");
    app.create_user(json!({"firstName": "C", "email": other}))
        .await;
    app.stop().await;
}

#[tokio::test]
async fn concurrent_creates_with_one_email_have_exactly_one_winner() {
    let app = Arc::new(TestApp::spawn().await);
    let email = unique_email();
    let mut tasks = Vec::new();
    for n in 0..64 {
        let app = Arc::clone(&app);
        let email = email.clone();
        tasks.push(tokio::spawn(async move {
            app.post(
                "/v1/user/create",
                json!({"firstName": format!("Racer{n}"), "email": email}),
                Some(&app.admin_token),
            )
            .await
        }));
    }
    let mut winners = HashSet::new();
    let mut duplicates = 0;
    for task in tasks {
        let reply = task.await.expect("task");
        assert!(reply.status.as_u16() < 500, "no 5xx: {}", reply.body);
        if reply.status == 200 {
            winners.insert(
                reply.body["result"]["userId"]
                    .as_str()
                    .expect("id")
                    .to_string(),
            );
        } else {
            reply.assert_error(400, "UOS_USRCRT0002", "email already exists");
            duplicates += 1;
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    assert_eq!(duplicates, 63);
    let found = app
        .search_indexed(json!({"filters": {"email": email}}))
        .await;
    assert_eq!(
        found.body["result"]["response"]["count"], 1,
        "{}",
        found.body
    );
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}

#[tokio::test]
async fn generated_usernames_are_slugs_with_a_suffix() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "Zoë", "lastName": "Ñúñez", "email": unique_email()}))
        .await;
    let read = app
        .get(&format!("/v1/user/read/{id}"), Some(&app.admin_token))
        .await;
    let username = read.assert_ok()["response"]["userName"]
        .as_str()
        .expect("userName")
        .to_string();
    let pattern = regex::Regex::new(r"^zoenunez_[a-z0-9]{4}$").expect("re");
    assert!(pattern.is_match(&username), "{username}");
    app.stop().await;
}

#[tokio::test]
async fn passwords_are_hashed_and_never_returned() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "Pw", "email": unique_email(), "password": "S3cret!pass"}))
        .await;
    let read = app
        .get(&format!("/v1/user/read/{id}"), Some(&app.admin_token))
        .await;
    let text = read.body.to_string();
    assert!(!text.contains("S3cret!pass"));
    assert!(!text.contains("argon2"));
    assert!(!text.contains("passwordHash"));
    assert_eq!(read.body["result"]["response"]["password"], Value::Null);
    let private = app
        .get_internal(&format!("/private/user/v1/read/{id}"))
        .await;
    assert!(!private.body.to_string().contains("argon2"));
    app.stop().await;
}

#[tokio::test]
async fn admins_place_users_in_organisations_with_roles() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "Role", "email": unique_email(), "roles": ["CONTENT_CREATOR"], "channel": "sunbird"}))
        .await;
    let read = app
        .get(&format!("/v5/user/read/{id}"), Some(&app.admin_token))
        .await;
    let user = read.assert_ok()["response"].clone();
    let root = user["rootOrgId"].as_str().expect("root").to_string();
    assert_eq!(user["roles"][0]["role"], "CONTENT_CREATOR");
    assert_eq!(user["roles"][0]["scope"], json!([{"organisationId": root}]));
    let v1 = app
        .get(&format!("/v1/user/read/{id}"), Some(&app.admin_token))
        .await;
    let user = v1.assert_ok()["response"].clone();
    assert!(user.get("roles").is_none(), "v1 has no top-level roles");
    assert_eq!(
        user["organisations"][0]["roles"],
        json!(["CONTENT_CREATOR"])
    );
    app.stop().await;
}
