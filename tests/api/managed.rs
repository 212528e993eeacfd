//! Managed (child) users: the three create routes with their rules, the per-parent limit under
//! concurrent creates, the list of a parent's children, managed tokens (`withTokens`,
//! `x-authenticated-for`), and graduation with its set-password message.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email, unique_phone};

/// A parent (a normal user with an email) and its token.
async fn parent(app: &TestApp) -> (String, String) {
    let id = app
        .create_user(json!({"firstName": "Parent", "email": unique_email()}))
        .await;
    let token = app.token_for(&id);
    (id, token)
}

async fn child(app: &TestApp, parent: &str, token: &str, name: &str) -> String {
    let reply = app
        .post(
            "/v1/manageduser/create",
            json!({"firstName": name, "managedBy": parent}),
            Some(token),
        )
        .await;
    reply.assert_ok()["userId"]
        .as_str()
        .expect("userId")
        .to_string()
}

fn managed_tokens(list: &Value) -> Vec<(String, String)> {
    list["response"]["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|child| {
            (
                child["id"].as_str().expect("id").to_string(),
                child["managedToken"]
                    .as_str()
                    .expect("managedToken")
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_parent_creates_children_on_each_route_and_lists_them_sorted() {
    let app = TestApp::spawn().await;
    let custodian = app.setting("custodianOrgId").await;
    let (parent, token) = parent(&app).await;
    let mut ids = Vec::new();
    for (path, name) in [
        ("/v1/manageduser/create", "Bala"),
        ("/v2/manageduser/create", "Asha"),
        ("/v4/user/create", "Chitra"),
    ] {
        let reply = app
            .post(
                path,
                json!({"firstName": name, "managedBy": parent, "password": "Ignored@123"}),
                Some(&token),
            )
            .await;
        let result = reply.assert_ok();
        assert_eq!(result["response"], "SUCCESS", "{path}");
        assert!(result.get("errors").is_none(), "{path}: {result}");
        ids.push(result["userId"].as_str().expect("userId").to_string());
    }
    let read = app
        .get(&format!("/v5/user/read/{}", ids[0]), Some(&token))
        .await;
    let profile = &read.assert_ok()["response"];
    assert_eq!(profile["managedBy"], parent.as_str());
    assert_eq!(profile["rootOrgId"], custodian.as_str());
    let username = profile["userName"].as_str().expect("userName").to_string();

    let list = app
        .get(
            &format!("/v1/user/managed/{parent}?sortBy=firstName&order=desc"),
            Some(&token),
        )
        .await;
    let result = &list.assert_ok()["response"];
    assert_eq!(result["count"], 3);
    let names: Vec<&str> = result["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|child| child["firstName"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Chitra", "Bala", "Asha"]);
    assert!(result["content"][0].get("managedToken").is_none());

    // A child has no password: the one given was checked against the policy and dropped.
    let grant = crate::signin::password_grant(&app, &username, "Ignored@123").await;
    assert_eq!(grant.status, 401);
}

#[tokio::test]
async fn managed_creates_follow_sunbirds_rules() {
    let app = TestApp::spawn().await;
    let (parent, token) = parent(&app).await;
    let (other, _) = self::parent(&app).await;
    let create = |request: Value, token: Option<String>| {
        let app = &app;
        async move {
            app.post("/v2/manageduser/create", request, token.as_deref())
                .await
        }
    };
    create(json!({"firstName": "Kid", "managedBy": parent}), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    create(
        json!({"firstName": "Kid", "managedBy": other}),
        Some(token.clone()),
    )
    .await
    .assert_error(401, "UOS_0070", "You are not authorized.");
    create(json!({"firstName": "Kid"}), Some(token.clone()))
        .await
        .assert_error(
            400,
            "UOS_USRCRT0030",
            "Mandatory parameter managedBy is missing.",
        );
    create(json!({"managedBy": parent}), Some(token.clone()))
        .await
        .assert_error(
            400,
            "UOS_USRCRT0030",
            "Mandatory parameter firstName is missing.",
        );
    create(
        json!({"firstName": "Kid", "managedBy": parent, "email": unique_email()}),
        Some(token.clone()),
    )
    .await
    .assert_error(
        400,
        "UOS_USRCRT0011",
        "Please provide only email or phone or managed by",
    );
    create(
        json!({"firstName": "Kid", "managedBy": parent, "password": "weak"}),
        Some(token.clone()),
    )
    .await
    .assert_error(
        400,
        "UOS_USRCRT0024",
        "Password must contain a minimum of 8 characters including numerals, lower and upper case alphabets and special characters",
    );
    // A child cannot manage children of its own, and an unknown parent is not found.
    let kid = child(&app, &parent, &token, "Kid").await;
    create(
        json!({"firstName": "Grandkid", "managedBy": kid}),
        Some(app.token_for(&kid)),
    )
    .await
    .assert_error(404, "UOS_USRCRT0013", "Requested user resource not found");
    create(
        json!({"firstName": "Kid", "managedBy": "no-such-user"}),
        Some(app.admin_token.clone()),
    )
    .await
    .assert_error(404, "UOS_USRCRT0013", "Requested user resource not found");
    // Anonymous sign-up cannot attach a child to somebody else's account.
    app.post(
        "/v1/user/signup",
        json!({"firstName": "Kid", "managedBy": parent}),
        None,
    )
    .await
    .assert_error(401, "UOS_0070", "You are not authorized.");
}

#[tokio::test]
async fn thirty_two_concurrent_creates_at_the_limit_minus_two_admit_exactly_two() {
    let app = TestApp::spawn_with(&[("USERORG__USERS__MANAGED_USER_LIMIT", "5")]).await;
    let (parent, token) = parent(&app).await;
    for n in 0..3 {
        child(&app, &parent, &token, &format!("Early{n}")).await;
    }
    let replies = futures::future::join_all((0..32).map(|n| {
        let (app, parent, token) = (&app, parent.clone(), token.clone());
        async move {
            app.post(
                "/v2/manageduser/create",
                json!({"firstName": format!("Racer{n}"), "managedBy": parent}),
                Some(&token),
            )
            .await
        }
    }))
    .await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(admitted, 2, "exactly the two free slots are taken");
    for refused in replies.iter().filter(|r| r.status != 200) {
        refused.assert_error(
            400,
            "UOS_USRCRT0066",
            "Managed user creation limit exceeded",
        );
    }
    // The v1 routes answer the limit with Sunbird's legacy name.
    for path in ["/v1/manageduser/create", "/v4/user/create"] {
        let legacy = app
            .post(
                path,
                json!({"firstName": "Late", "managedBy": parent}),
                Some(&token),
            )
            .await;
        assert_eq!(legacy.status.as_u16(), 400);
        assert_eq!(legacy.err(), "MANAGED_USER_LIMIT_EXCEEDED");
        assert_eq!(
            legacy.body["params"]["status"],
            "MANAGED_USER_LIMIT_EXCEEDED"
        );
        assert_eq!(legacy.body["responseCode"], "CLIENT_ERROR");
        assert_eq!(legacy.errmsg(), "Managed user creation limit exceeded");
    }
    let list = app
        .get(&format!("/v1/user/managed/{parent}"), Some(&token))
        .await;
    assert_eq!(list.assert_ok()["response"]["count"], 5);

    // A deleted child frees its slot.
    let first = list.body["result"]["response"]["content"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.post(
        "/v1/user/delete",
        json!({"userId": first}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    child(&app, &parent, &token, "Replacement").await;
    let list = app
        .get(&format!("/v1/user/managed/{parent}"), Some(&token))
        .await;
    let content = list.assert_ok()["response"]["content"].clone();
    assert_eq!(content.as_array().expect("content").len(), 5);
    assert!(
        content
            .as_array()
            .expect("content")
            .iter()
            .all(|c| c["id"] != first.as_str())
    );

    // A graduated child frees its slot too: the parent is at the limit, one child gets an
    // email, and another child can be created.
    app.post(
        "/v2/manageduser/create",
        json!({"firstName": "Over", "managedBy": parent}),
        Some(&token),
    )
    .await
    .assert_error(
        400,
        "UOS_USRCRT0066",
        "Managed user creation limit exceeded",
    );
    let graduate = content[0]["id"].as_str().expect("id").to_string();
    app.patch(
        "/v1/user/update",
        json!({"userId": graduate, "email": unique_email()}),
        Some(&token),
    )
    .await
    .assert_ok();
    child(&app, &parent, &token, "AfterGraduation").await;

    // The older create route takes a slot too.
    app.post(
        "/v1/user/create",
        json!({"firstName": "ViaV1", "managedBy": parent}),
        Some(&token),
    )
    .await
    .assert_error(
        400,
        "UOS_USRCRT0066",
        "Managed user creation limit exceeded",
    );
}

#[tokio::test]
async fn only_the_parent_lists_its_children_and_gets_their_tokens() {
    let app = TestApp::spawn().await;
    let (parent, token) = parent(&app).await;
    let (_, stranger_token) = self::parent(&app).await;
    child(&app, &parent, &token, "Kid").await;
    let path = format!("/v1/user/managed/{parent}");
    app.get(&path, None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    app.get(&path, Some(&stranger_token)).await.assert_error(
        403,
        "UOS_USRRED0071",
        "You are forbidden from accessing specified resource.",
    );
    app.get(&path, Some(&app.admin_token)).await.assert_ok();
    app.get(&format!("{path}?withTokens=true"), Some(&app.admin_token))
        .await
        .assert_error(
            403,
            "UOS_USRRED0071",
            "You are forbidden from accessing specified resource.",
        );
    app.get(
        &format!("{path}?sortBy=firstName&order=sideways"),
        Some(&token),
    )
    .await
    .assert_error(
        400,
        "UOS_USRRED0018",
        "Invalid order: sideways. Valid values are: asc, desc.",
    );
}

#[tokio::test]
async fn a_managed_token_lets_the_parent_act_for_that_child_only() {
    let app = TestApp::spawn().await;
    let (parent, token) = parent(&app).await;
    let (_, other_token) = self::parent(&app).await;
    let first = child(&app, &parent, &token, "First").await;
    let second = child(&app, &parent, &token, "Second").await;
    let list = app
        .get(
            &format!("/v1/user/managed/{parent}?withTokens=true&sortBy=firstName"),
            Some(&token),
        )
        .await;
    list.assert_ok();
    let tokens = managed_tokens(&list.body["result"]);
    assert_eq!(tokens.len(), 2);
    let (id, first_token) = &tokens[0];
    assert_eq!(id, &first);

    // The parent with the first child's token reads and updates that child.
    app.acting_for(
        Method::GET,
        &format!("/v5/user/read/{first}"),
        None,
        Some(&token),
        first_token,
    )
    .await
    .assert_ok();
    app.acting_for(
        Method::PATCH,
        "/v1/user/update",
        Some(json!({"userId": first, "lastName": "Updated"})),
        Some(&token),
        first_token,
    )
    .await
    .assert_ok();
    // ... but not the other child with it.
    app.acting_for(
        Method::PATCH,
        "/v1/user/update",
        Some(json!({"userId": second, "lastName": "Updated"})),
        Some(&token),
        first_token,
    )
    .await
    .assert_error(
        403,
        "UOS_USRUPD0071",
        "You are forbidden from accessing specified resource.",
    );
    // The child's token with another parent's token, or with no user token, is refused, and
    // a managed token is never a user token on its own.
    app.acting_for(
        Method::GET,
        &format!("/v5/user/read/{first}"),
        None,
        Some(&other_token),
        first_token,
    )
    .await
    .assert_error(401, "UOS_0070", "You are not authorized.");
    app.acting_for(
        Method::GET,
        "/v1/user/exists/email/nobody@example.com",
        None,
        None,
        first_token,
    )
    .await
    .assert_error(401, "UOS_0070", "You are not authorized.");
    app.get(&format!("/v5/user/read/{first}"), Some(first_token))
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    app.acting_for(
        Method::GET,
        &format!("/v5/user/read/{first}"),
        None,
        Some(&token),
        "not-a-token",
    )
    .await
    .assert_error(401, "UOS_0070", "You are not authorized.");

    // A read with withTokens gives the parent the child's token.
    let read = app
        .get(
            &format!("/v5/user/read/{second}?withTokens=true"),
            Some(&token),
        )
        .await;
    let second_token = read.assert_ok()["response"]["managedToken"]
        .as_str()
        .expect("managedToken")
        .to_string();
    app.acting_for(
        Method::GET,
        &format!("/v5/user/read/{second}"),
        None,
        Some(&token),
        &second_token,
    )
    .await
    .assert_ok();
    let own = app
        .get(
            &format!("/v5/user/read/{parent}?withTokens=true"),
            Some(&token),
        )
        .await;
    assert!(own.assert_ok()["response"].get("managedToken").is_none());
}

#[tokio::test]
async fn a_child_given_an_email_graduates_and_is_sent_a_set_password_link() {
    let app = TestApp::spawn().await;
    let (parent, token) = parent(&app).await;
    let kid = child(&app, &parent, &token, "Grown").await;
    let list = app
        .get(
            &format!("/v1/user/managed/{parent}?withTokens=true"),
            Some(&token),
        )
        .await;
    list.assert_ok();
    let kid_token = managed_tokens(&list.body["result"])[0].1.clone();
    // While acting for one child, the parent gets no tokens for the others.
    app.acting_for(
        Method::GET,
        &format!("/v1/user/managed/{parent}?withTokens=true"),
        None,
        Some(&token),
        &kid_token,
    )
    .await
    .assert_error(
        403,
        "UOS_USRRED0071",
        "You are forbidden from accessing specified resource.",
    );
    // An update that fails (the email is someone else's) graduates nobody and sends nothing.
    let taken = unique_email();
    app.create_user(json!({"firstName": "Holder", "email": taken}))
        .await;
    app.patch(
        "/v1/user/update",
        json!({"userId": kid, "email": taken}),
        Some(&token),
    )
    .await
    .assert_error(400, "UOS_USRUPD0002", "email already exists");
    assert!(app.mails_to(&taken).await.is_empty());
    let still = app
        .get(&format!("/v1/user/read/{kid}"), Some(&app.admin_token))
        .await;
    assert_eq!(still.assert_ok()["response"]["managedBy"], parent.as_str());
    let email = unique_email();
    app.patch(
        "/v1/user/update",
        json!({"userId": kid, "email": email}),
        Some(&token),
    )
    .await
    .assert_ok();

    let profile = app
        .get(&format!("/v1/user/read/{kid}"), Some(&app.admin_token))
        .await;
    assert_eq!(profile.assert_ok()["response"]["managedBy"], Value::Null);
    // The parent can no longer act for it, with or without the old managed token.
    app.get(&format!("/v5/user/read/{kid}"), Some(&token))
        .await
        .assert_error(
            403,
            "UOS_USRRED0071",
            "You are forbidden from accessing specified resource.",
        );
    app.acting_for(
        Method::GET,
        &format!("/v5/user/read/{kid}"),
        None,
        Some(&token),
        &kid_token,
    )
    .await
    .assert_error(401, "UOS_0070", "You are not authorized.");
    let list = app
        .get(&format!("/v1/user/managed/{parent}"), Some(&token))
        .await;
    assert_eq!(list.assert_ok()["response"]["count"], 0);

    // The set-password message went out with the update, and its link works.
    let mails = app.mails_to(&email).await;
    assert_eq!(mails.len(), 1, "one set-password message");
    // The HTML body escapes `/` as minijinja does.
    let body = mails[0].body.replace("&#x2f;", "/");
    let link = body
        .split_once("/password/reset/")
        .and_then(|(_, rest)| rest.split(['"', '<', ' ']).next())
        .map(|token| format!("/password/reset/{token}"))
        .unwrap_or_else(|| panic!("no set-password link in {body}"));
    let page = app
        .send(Method::GET, format!("{}{link}", app.public), None, None)
        .await;
    assert_eq!(page.status, 200, "the link opens the set-password page");

    // A phone works the same way, by SMS.
    let other = child(&app, &parent, &token, "Texter").await;
    let phone = unique_phone();
    app.patch(
        "/v1/user/update",
        json!({"userId": other, "phone": phone}),
        Some(&token),
    )
    .await
    .assert_ok();
    let sent = app.sms_sent().await;
    assert!(
        sent.iter().any(
            |sms| sms["to"].as_str().is_some_and(|to| to.ends_with(&phone))
                && sms["body"]
                    .as_str()
                    .is_some_and(|body| body.contains("/password/reset/") && !body.contains('<'))
        ),
        "{sent:?}"
    );

    // An ordinary update of a user who is not managed sends nothing.
    let (adult, adult_token) = self::parent(&app).await;
    let before = app.sms_sent().await.len();
    app.patch(
        "/v1/user/update",
        json!({"userId": adult, "phone": unique_phone()}),
        Some(&adult_token),
    )
    .await
    .assert_ok();
    assert_eq!(app.sms_sent().await.len(), before);
}
