use serde_json::json;

use crate::helpers::{TestApp, unique_email};

#[tokio::test]
async fn private_lookup_finds_users_by_key() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Look", "email": email, "phone": "9988776655", "userName": "look_up"}))
        .await;
    for (key, value) in [
        ("email", email.to_uppercase()),
        ("phone", "9988776655".into()),
        ("username", "LOOK_UP".into()),
        ("id", id.clone()),
    ] {
        let reply = app
            .post_internal(
                "/private/user/v1/lookup",
                json!({"key": key, "value": value}),
            )
            .await;
        let result = reply.assert_ok().clone();
        assert_eq!(reply.body["id"], ".private.user.v1.lookup");
        assert_eq!(result["response"][0]["id"], id.as_str(), "{key}");
        assert_eq!(result["response"][0]["phone"], "******6655");
    }
    let only = app
        .post_internal(
            "/private/user/v1/lookup",
            json!({"key": "email", "value": email, "fields": ["firstName"]}),
        )
        .await;
    assert_eq!(only.assert_ok()["response"], json!([{"firstName": "Look"}]));
    let none = app
        .post_internal(
            "/private/user/v1/lookup",
            json!({"key": "email", "value": unique_email()}),
        )
        .await;
    assert_eq!(none.assert_ok()["response"], json!([]));
    app.post_internal("/private/user/v1/lookup", json!({"key": "email"}))
        .await
        .assert_error(
            400,
            "UOS_USRLKP0030",
            "Mandatory parameter value is missing.",
        );
    app.post_internal("/private/user/v1/lookup", json!({"value": "x"}))
        .await
        .assert_error(400, "UOS_USRLKP0030", "Mandatory parameter key is missing.");
    app.post_internal(
        "/private/user/v1/lookup",
        json!({"key": "nick", "value": "x"}),
    )
    .await
    .assert_error(
        400,
        "UOS_USRLKP0018",
        "Invalid key: nick. Valid values are: [username, email, phone, id].",
    );
    app.post_internal("/private/user/v1/lookup", json!({}))
        .await
        .assert_error(
            400,
            "UOS_USRLKP0028",
            "Requested data for this operation is not valid.",
        );
    app.stop().await;
}

#[tokio::test]
async fn existence_checks_answer_v1_and_v2_shapes() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let id = app
        .create_user(
            json!({"firstName": "Ex", "lastName": "Ists", "email": email, "userName": "ex_ists"}),
        )
        .await;
    let reply = app
        .get(&format!("/v1/user/exists/email/{email}"), None)
        .await;
    assert_eq!(reply.assert_ok(), &json!({"exists": true}));
    assert_eq!(reply.body["id"], format!("api.user.exists.email.{email}"));
    let reply = app
        .get(&format!("/v1/user/exists/email/{}", unique_email()), None)
        .await;
    assert_eq!(reply.assert_ok(), &json!({"exists": false}));
    let reply = app
        .get("/v2/user/exists/userName/ex_ists", Some(&app.admin_token))
        .await;
    assert_eq!(
        reply.assert_ok(),
        &json!({"exists": true, "id": id, "name": "Ex Ists"})
    );
    app.get("/v1/user/exists/userName/ex_ists", None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    app.get("/v1/user/exists/nick/x", None).await.assert_error(
        400,
        "UOS_UEXIST0018",
        "Invalid key: nick. Valid values are: email, phone, loginId, userName.",
    );
    app.get("/v1/user/exists/email/not-an-email", None)
        .await
        .assert_error(400, "UOS_UEXIST0009", "Invalid format for given {0}.");
    app.get("/v2/user/exists/email/x@y.co", None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    app.stop().await;
}

#[tokio::test]
async fn get_by_key_and_getuser_return_the_v5_profile() {
    // Sunbird's anonymous lookups, kept behind `users.anonymous_lookup = "sunbird"`.
    let app = TestApp::spawn_with(&[("USERORG__USERS__ANONYMOUS_LOOKUP", "sunbird")]).await;
    let email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Key", "email": email, "userName": "key_user"}))
        .await;
    let reply = app.get(&format!("/v1/user/get/email/{email}"), None).await;
    let user = reply.assert_ok()["response"].clone();
    assert_eq!(user["id"], id.as_str());
    assert!(user.get("roles").is_some(), "v5 shape has roles");
    let reply = app
        .get("/v2/user/get/userName/key_user", Some(&app.admin_token))
        .await;
    assert_eq!(reply.assert_ok()["response"]["id"], id.as_str());
    let missing = unique_email();
    app.get(&format!("/v1/user/get/email/{missing}"), None)
        .await
        .assert_error(
            404,
            "UOS_USRRED0013",
            &format!("Requested {missing} resource not found"),
        );
    let reply = app
        .post("/v1/user/getuser", json!({"loginId": "KEY_USER"}), None)
        .await;
    assert_eq!(reply.assert_ok()["response"]["id"], id.as_str());
    assert!(reply.body["result"]["response"].get("topics").is_none());
    // `fields` comes in the query string, as Sunbird reads it.
    let reply = app
        .post(
            "/v1/user/getuser?fields=topic",
            json!({"loginId": "key_user"}),
            None,
        )
        .await;
    let profile = &reply.assert_ok()["response"];
    assert_eq!(profile["topics"], json!([]));
    assert_eq!(profile["lastLoginTime"], 0);
    app.post("/v1/user/getuser", json!({"loginId": ""}), None)
        .await
        .assert_error(400, "UOS_USRRED0019", "Please provide valid loginId.");
    app.post("/v1/user/getuser", json!({"loginId": "nobody_here"}), None)
        .await
        .assert_error(
            404,
            "UOS_USRRED0013",
            "Requested nobody_here resource not found",
        );
    app.stop().await;
}

/// By default an anonymous caller learns only whether an identifier exists; the profile takes a
/// token, and then shows what the caller's relation to the user allows.
#[tokio::test]
async fn by_default_lookups_disclose_no_profile_to_strangers() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let id = app
        .create_user(
            json!({"firstName": "Quiet", "lastName": "Person", "email": email,
                            "userName": "quiet_person", "dob": "1990-01-01"}),
        )
        .await;
    app.get(&format!("/v1/user/get/email/{email}"), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    app.post("/v1/user/getuser", json!({"loginId": "quiet_person"}), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    let exists = app
        .get(&format!("/v1/user/exists/email/{email}"), None)
        .await;
    assert_eq!(exists.assert_ok().clone(), json!({"exists": true}));

    // Another ordinary user gets a name card, not the profile.
    let stranger = app
        .create_user(json!({"firstName": "Other", "email": unique_email()}))
        .await;
    let stranger = app.token_for(&stranger);
    let card = app
        .get(&format!("/v2/user/get/email/{email}"), Some(&stranger))
        .await;
    let card = card.assert_ok()["response"].clone();
    let mut fields: Vec<&str> = card
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "channel",
            "firstName",
            "id",
            "identifier",
            "lastName",
            "rootOrgId",
            "userId"
        ]
    );
    assert_eq!(card["id"], id.as_str());
    // The user themself sees their whole profile.
    let own = app
        .get(
            &format!("/v2/user/get/email/{email}"),
            Some(&app.token_for(&id)),
        )
        .await;
    let own = own.assert_ok()["response"].clone();
    assert_eq!(own["dob"], "1990-01-01");
    assert_eq!(own["userName"], "quiet_person");
    app.stop().await;
}

/// A stand-in for Google's siteverify: `success` only for the answer "human" sent with the
/// expected secret.
async fn fake_siteverify() -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/recaptcha/api/siteverify",
        post(
            |axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| async move {
                let web = form.get("secret").map(String::as_str) == Some("web-secret");
                let mobile = form.get("secret").map(String::as_str) == Some("mobile-secret");
                let human = form.get("response").map(String::as_str) == Some("human");
                // The mobile secret only passes the mobile answer, to show which secret was sent.
                let answer = form.get("response").map(String::as_str) == Some("mobile-human");
                axum::Json(json!({"success": (web && human) || (mobile && answer)}))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}/recaptcha/api/siteverify")
}

#[tokio::test]
async fn v2_exists_checks_the_captcha_first_when_it_is_on() {
    let verify = fake_siteverify().await;
    let app = TestApp::spawn_with(&[
        ("USERORG__CAPTCHA__ENABLED", "true"),
        ("USERORG__CAPTCHA__VERIFY_URL", verify.as_str()),
        ("USERORG__CAPTCHA__PRIVATE_KEY", "web-secret"),
        ("USERORG__CAPTCHA__MOBILE_PRIVATE_KEY", "mobile-secret"),
    ])
    .await;
    let token = Some(app.admin_token.as_str());
    let email = unique_email();
    for query in [
        "",
        "?captchaResponse=robot",
        "?captchaResponse=mobile-human",
    ] {
        app.get(&format!("/v2/user/exists/email/{email}{query}"), token)
            .await
            .assert_error(418, "UOS_UEXIST0025", "Captcha is invalid");
    }
    // Before the key is even looked at.
    app.get("/v2/user/exists/nokey/x?captchaResponse=robot", token)
        .await
        .assert_error(418, "UOS_UEXIST0025", "Captcha is invalid");
    let web = app
        .get(
            &format!("/v2/user/exists/email/{email}?captchaResponse=human"),
            token,
        )
        .await;
    assert_eq!(web.assert_ok()["exists"], false);
    let mobile = app
        .get(
            &format!("/v2/user/exists/email/{email}?captchaResponse=mobile-human&app=android"),
            token,
        )
        .await;
    assert_eq!(mobile.assert_ok()["exists"], false);
    // v1 has no captcha.
    app.get(&format!("/v1/user/exists/email/{email}"), None)
        .await
        .assert_ok();
    app.stop().await;
}
