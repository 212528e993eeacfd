//! The robustness probe's flagged inputs (`reviews/2026-12-01-robustness.md`, items 7–11, 13 and
//! 14) as a table through the real router: each is refused with Sunbird's code and message, and
//! ordinary values at the edges are stored exactly.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email};

fn nested(depth: usize) -> Value {
    (1..depth).fold(json!({"leaf": 1}), |inner, _| json!({ "a": inner }))
}

struct Case {
    method: Method,
    path: &'static str,
    request: Value,
    err: &'static str,
    errmsg: String,
}

fn case(
    method: Method,
    path: &'static str,
    request: Value,
    err: &'static str,
    errmsg: impl Into<String>,
) -> Case {
    Case {
        method,
        path,
        request,
        err,
        errmsg: errmsg.into(),
    }
}

#[tokio::test]
async fn the_probes_flagged_inputs_are_refused_with_sunbirds_codes() {
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();
    let user = app
        .create_user(json!({"firstName": "Probe", "email": unique_email()}))
        .await;
    let custodian = app
        .get("/v1/system/settings/get/custodianOrgId", None)
        .await
        .assert_ok()["response"]["value"]
        .as_str()
        .expect("custodian")
        .to_string();
    let long = "x".repeat(300);
    let signup = |extra: Value| {
        let mut request =
            json!({"firstName": "S1", "email": unique_email(), "password": "S3cret!pass1"});
        for (key, value) in extra.as_object().expect("object") {
            request[key] = value.clone();
        }
        request
    };
    let org = |extra: Value| {
        let mut request = json!({"orgName": "O1", "isTenant": true, "channel": format!("pch{}", uuid::Uuid::new_v4().simple()), "organisationType": "board"});
        for (key, value) in extra.as_object().expect("object") {
            request[key] = value.clone();
        }
        request
    };
    let cases = vec![
        // Item 7: a wrong-typed profileUserTypes was dropped silently.
        case(
            Method::PATCH,
            "/v1/user/update",
            json!({"userId": user, "firstName": "Upd", "profileUserTypes": 12345}),
            "UOS_USRUPD0003",
            "Data type of profileUserTypes should be List.",
        ),
        case(
            Method::PATCH,
            "/v1/user/update",
            json!({"userId": user, "profileUserTypes": {"type": "student"}}),
            "UOS_USRUPD0003",
            "Data type of profileUserTypes should be List.",
        ),
        // Item 8: countryCode was type-checked only next to a phone.
        case(
            Method::PATCH,
            "/v1/user/update",
            json!({"userId": user, "countryCode": {"a": 1}}),
            "UOS_USRUPD0003",
            "Data type of countryCode should be String.",
        ),
        // Item 9: sign-up ignored wrong-typed fields the create routes refuse.
        case(
            Method::POST,
            "/v1/user/signup",
            signup(json!({"roles": 12345})),
            "UOS_USRCRT0003",
            "Data type of roles should be List.",
        ),
        case(
            Method::POST,
            "/v2/user/signup",
            signup(json!({"externalIds": "x"})),
            "UOS_USRCRT0003",
            "Data type of externalIds should be List.",
        ),
        case(
            Method::POST,
            "/v1/user/signup",
            signup(json!({"channel": 5})),
            "UOS_USRCRT0003",
            "Data type of channel should be String.",
        ),
        case(
            Method::POST,
            "/v1/user/signup",
            signup(json!({"organisationId": ["a"]})),
            "UOS_USRCRT0003",
            "Data type of organisationId should be String.",
        ),
        // Item 10: org create ignored wrong-typed license and rootOrgId.
        case(
            Method::POST,
            "/v1/org/create",
            org(json!({"rootOrgId": {"a": 1}})),
            "UOS_ORGCRT0003",
            "Data type of rootOrgId should be String.",
        ),
        case(
            Method::POST,
            "/v1/org/create",
            org(json!({"license": [1, 2]})),
            "UOS_ORGCRT0003",
            "Data type of license should be String.",
        ),
        // Item 11: role assignment ignored wrong-typed provider and externalId.
        case(
            Method::POST,
            "/v1/user/assign/role",
            json!({"userId": user, "organisationId": custodian, "roles": ["PUBLIC"], "provider": ["a", "b"]}),
            "UOS_ROLUPD0003",
            "Data type of provider should be String.",
        ),
        case(
            Method::POST,
            "/v1/user/assign/role",
            json!({"userId": user, "organisationId": custodian, "roles": ["PUBLIC"], "externalId": 7}),
            "UOS_ROLUPD0003",
            "Data type of externalId should be String.",
        ),
        // Item 13: lengths and characters.
        case(
            Method::POST,
            "/v1/user/create",
            json!({"firstName": long, "email": unique_email()}),
            "UOS_USRCRT0058",
            "Parameter firstName is of invalid size (expected: 256, actual: 300).",
        ),
        case(
            Method::POST,
            "/v1/user/create",
            json!({"firstName": "N", "userName": "ab\u{0}cd", "email": unique_email()}),
            "UOS_USRCRT0019",
            "Please provide valid userName.",
        ),
        case(
            Method::POST,
            "/v1/user/create",
            json!({"firstName": "a\u{1}\u{1f}\u{7f}", "email": unique_email()}),
            "UOS_USRCRT0019",
            "Please provide valid firstName.",
        ),
        case(
            Method::POST,
            "/v1/org/create",
            org(json!({"orgName": "Org\u{0}"})),
            "UOS_ORGCRT0019",
            "Please provide valid orgName.",
        ),
        case(
            Method::POST,
            "/v1/location/create",
            json!({"name": "Name\u{2028}", "code": "C1", "type": "state"}),
            "UOS_LOCCRT0019",
            "Please provide valid name.",
        ),
        case(
            Method::POST,
            "/v1/system/settings/set",
            json!({"id": "probeSetting", "field": "probeSetting", "value": "v\u{0}"}),
            "UOS_SYSCRT0019",
            "Please provide valid value.",
        ),
        case(
            Method::POST,
            "/v1/system/settings/set",
            json!({"id": "probeSetting", "field": "probeSetting", "value": "v".repeat(20_000)}),
            "UOS_SYSCRT0058",
            "Parameter value is of invalid size (expected: 16384, actual: 20000).",
        ),
        // Item 14: long lists and deep objects.
        case(
            Method::PATCH,
            "/v1/user/update",
            json!({"userId": user, "webPages": vec![json!({"type": "x", "url": "u"}); 1_000]}),
            "UOS_USRUPD0058",
            "Parameter webPages is of invalid size (expected: 32, actual: 1000).",
        ),
        case(
            Method::PATCH,
            "/v1/user/update",
            json!({"userId": user, "framework": nested(120)}),
            "UOS_USRUPD0058",
            "Parameter framework is of invalid size (expected: 3, actual: 4).",
        ),
        case(
            Method::PATCH,
            "/v1/org/assign/key",
            json!({"id": custodian, "signKeys": vec!["k"; 1_000], "encKeys": ["k"]}),
            "UOS_ASSGNK0058",
            "Parameter signKeys is of invalid size (expected: 16, actual: 1000).",
        ),
        case(
            Method::POST,
            "/v2/org/preferences/create",
            json!({"orgId": custodian, "key": "deep", "data": nested(120)}),
            "UOS_TPREFCRT0058",
            "Parameter data is of invalid size (expected: 12, actual: 13).",
        ),
        case(
            Method::POST,
            "/v1/data/sync",
            json!({"objectType": "user", "operationType": "sync", "objectIds": vec!["u"; 10_000]}),
            "UOS_ESSYNC0058",
            "Parameter objectIds is of invalid size (expected: 1000, actual: 10000).",
        ),
    ];
    let mut wrong = Vec::new();
    for case in &cases {
        let request = json!({ "request": case.request });
        let reply = app
            .send(
                case.method.clone(),
                format!("{}{}", app.public, case.path),
                Some(request),
                Some(&token),
            )
            .await;
        if reply.status.as_u16() != 400 || reply.err() != case.err || reply.errmsg() != case.errmsg
        {
            wrong.push(format!(
                "{} {}: {} {} {}",
                case.method,
                case.path,
                reply.status,
                reply.err(),
                reply.errmsg()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {}:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    // Nothing of a refused update was stored.
    let read = app
        .get(&format!("/v5/user/read/{user}"), Some(&token))
        .await;
    let profile = &read.assert_ok()["response"];
    assert_eq!(profile["firstName"], "Probe", "{profile}");
    assert!(
        profile
            .get("framework")
            .is_none_or(|f| f.is_null() || f == &json!({})),
        "{profile}"
    );
}

#[tokio::test]
async fn ordinary_values_at_the_edges_are_stored_exactly() {
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();
    let name = "Zoë 李 O'Brien-Ñúñez".to_string() + &"é".repeat(231);
    assert_eq!(name.chars().count(), 250);
    let summary = "first line\nsecond line\twith a tab\r\nthird \u{2028} — «quoted»";
    let framework =
        json!({"board": ["CBSE"], "medium": ["English", "हिन्दी"], "gradeLevel": ["Class 1"]});
    let user = app
        .create_user(json!({
            "firstName": name,
            "email": unique_email(),
            "profileSummary": summary,
            "framework": framework,
            "webPages": vec![json!({"type": "blog", "url": "https://example.test/"}); 32],
        }))
        .await;
    let read = app
        .get(&format!("/v5/user/read/{user}"), Some(&token))
        .await;
    let profile = &read.assert_ok()["response"];
    assert_eq!(profile["firstName"], name.as_str());
    assert_eq!(profile["profileSummary"], summary);
    assert_eq!(profile["framework"], framework);
    assert_eq!(profile["webPages"].as_array().map(Vec::len), Some(32));
}

#[tokio::test]
async fn settings_other_rules_rely_on_keep_their_invariants() {
    let app = TestApp::spawn().await;
    let token = app.admin_token.clone();
    let set = |id: &'static str, value: String| {
        let app = &app;
        let token = token.clone();
        async move {
            app.post(
                "/v1/system/settings/set",
                json!({"id": id, "field": id, "value": value}),
                Some(&token),
            )
            .await
        }
    };
    let get = |id: &'static str| {
        let app = &app;
        async move {
            app.get(&format!("/v1/system/settings/get/{id}"), None)
                .await
                .assert_ok()["response"]["value"]
                .clone()
        }
    };
    let custodian = get("custodianOrgId").await;
    let channel = get("custodianOrgChannel").await;

    set("custodianOrgId", "nonexistent-org".into())
        .await
        .assert_error(
            400,
            "UOS_SYSCRT0018",
            "Invalid custodianOrgId: nonexistent-org. Valid values are: the id of an active tenant organisation.",
        );
    set("custodianOrgChannel", "elsewhere".into())
        .await
        .assert_error(
            400,
            "UOS_SYSCRT0018",
            "Invalid custodianOrgChannel: elsewhere. Valid values are: the channel of the custodian organisation (set custodianOrgId to move it).",
        );
    set("orgTypeConfig", "not json {".into())
        .await
        .assert_error(
            400,
            "UOS_SYSCRT0018",
            "Invalid orgTypeConfig: not json {. Valid values are: a JSON object whose fields list has entries with a name and an integer value.",
        );
    set("orgTypeConfig", r#"{"fields": [{"name": "School"}]}"#.into())
        .await
        .assert_error(
            400,
            "UOS_SYSCRT0018",
            r#"Invalid orgTypeConfig: {"fields": [{"name": "School"}]}. Valid values are: a JSON object whose fields list has entries with a name and an integer value."#,
        );
    set("userProfileConfig", "{{{".into()).await.assert_error(
        400,
        "UOS_SYSCRT0018",
        "Invalid userProfileConfig: {{{. Valid values are: a JSON object.",
    );
    set("tncConfig", r#"{"latestVersion": "v9"}"#.into())
        .await
        .assert_error(
            400,
            "UOS_SYSCRT0018",
            r#"Invalid tncConfig: {"latestVersion": "v9"}. Valid values are: a JSON object with latestVersion and a url for that version."#,
        );
    // Nothing refused was stored, and users are still created under the real custodian.
    assert_eq!(get("custodianOrgId").await, custodian);
    assert_eq!(get("custodianOrgChannel").await, channel);
    let user = app
        .create_user(json!({"firstName": "Still", "email": unique_email()}))
        .await;
    let read = app
        .get(&format!("/v1/user/read/{user}"), Some(&token))
        .await;
    assert_eq!(read.assert_ok()["response"]["rootOrgId"], custodian);

    // Moving the custodian to a real tenant moves its channel with it.
    let new_channel = format!("moved{}", uuid::Uuid::new_v4().simple());
    let tenant = app
        .post(
            "/v1/org/create",
            json!({"orgName": "New custodian", "isTenant": true, "channel": new_channel, "organisationType": "board"}),
            Some(&token),
        )
        .await
        .assert_ok()["organisationId"]
        .as_str()
        .expect("org id")
        .to_string();
    set("custodianOrgId", tenant.clone()).await.assert_ok();
    assert_eq!(get("custodianOrgId").await, tenant.as_str());
    assert_eq!(get("custodianOrgChannel").await, new_channel.as_str());
    set("custodianOrgChannel", new_channel.to_uppercase())
        .await
        .assert_ok();
}
