use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, unique_email};

pub fn unique_channel() -> String {
    format!("ch{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub async fn create_tenant(app: &TestApp, channel: &str) -> String {
    let reply = app
        .post(
            "/v1/org/create",
            json!({"orgName": format!("Tenant {channel}"), "isTenant": true, "channel": channel, "organisationType": "board"}),
            Some(&app.admin_token),
        )
        .await;
    reply.assert_ok()["organisationId"]
        .as_str()
        .expect("id")
        .to_string()
}

/// Searches organisations once the index caught up, and checks `check` on the reply body.
async fn org_search_until(app: &TestApp, request: Value, check: impl Fn(&Value) -> bool) -> Reply {
    app.wait_for_index().await;
    let reply = app.post("/v2/org/search", request, None).await;
    assert!(check(&reply.body), "unexpected search reply {}", reply.body);
    reply
}

#[tokio::test]
async fn tenants_and_sub_organisations_are_created_and_read() {
    let app = TestApp::spawn().await;
    let channel = unique_channel();
    let reply = app
        .post(
            "/v1/org/create",
            json!({
                "orgName": "State Board", "isTenant": true, "channel": channel,
                "organisationType": "board", "description": "A tenant", "email": "Board@Example.org",
                "externalId": "EXT-1", "license": "CC BY 4.0"
            }),
            Some(&app.admin_token),
        )
        .await;
    let result = reply.assert_ok().clone();
    assert_eq!(reply.body["id"], "api.org.create");
    assert_eq!(result["response"], "SUCCESS");
    let tenant = result["organisationId"].as_str().expect("id").to_string();
    assert!(
        tenant.starts_with('0') && tenant.chars().all(|c| c.is_ascii_digit()),
        "{tenant}"
    );

    let read = app
        .post("/v1/org/read", json!({"organisationId": tenant}), None)
        .await;
    let org = read.assert_ok()["response"].clone();
    assert_eq!(read.body["id"], "api.org.read");
    assert_eq!(org["id"], tenant.as_str());
    assert_eq!(org["rootOrgId"], tenant.as_str());
    assert_eq!(org["hashTagId"], tenant.as_str());
    assert_eq!(org["orgName"], "State Board");
    assert_eq!(org["channel"], channel.as_str());
    assert_eq!(org["slug"], channel.as_str());
    assert_eq!(org["isTenant"], true);
    assert_eq!(org["status"], 1);
    assert_eq!(org["organisationType"], 5);
    assert_eq!(org["isSchool"], false);
    assert_eq!(org["email"], "board@example.org");
    assert_eq!(org["externalId"], "ext-1");
    assert_eq!(org["provider"], channel.as_str());
    assert_eq!(org["orgLocation"], json!([]));
    assert_eq!(org["theme"], Value::Null);
    assert!(org.get("contactDetail").is_none());

    let school = app
        .post(
            "/v1/org/create",
            json!({"orgName": "Govt School", "isTenant": false, "channel": channel, "organisationType": "School", "externalId": "S-1"}),
            Some(&app.admin_token),
        )
        .await;
    let school_id = school.assert_ok()["organisationId"]
        .as_str()
        .expect("id")
        .to_string();
    let org = app
        .post("/v1/org/read", json!({"organisationId": school_id}), None)
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(org["isTenant"], false);
    assert_eq!(
        org["rootOrgId"],
        school_id.as_str(),
        "rootOrgId is the org's own id"
    );
    assert_eq!(org["isSchool"], true);
    assert_eq!(org["organisationType"], 2);
    app.stop().await;
}

#[tokio::test]
async fn org_create_errors_match_sunbird() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let channel = unique_channel();
    create_tenant(&app, &channel).await;
    let inactive = unique_channel();
    let inactive_id = create_tenant(&app, &inactive).await;
    app.patch(
        "/v1/org/status/update",
        json!({"organisationId": inactive_id, "status": 0}),
        admin,
    )
    .await
    .assert_ok();
    let inactive_message =
        format!("Organisation corresponding to given channel ({inactive}) is inactive.");
    let duplicate_message = format!("Value {channel} for channel is already in use.");
    let upper_message = format!(
        "Value {} for channel is already in use.",
        channel.to_uppercase()
    );
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"orgName": "x", "isTenant": true, "channel": "c"}),
            "UOS_ORGCRT0030",
            "Mandatory parameter organisationType is missing.",
        ),
        (
            json!({"organisationType": "board", "isTenant": true, "channel": "c"}),
            "UOS_ORGCRT0030",
            "Mandatory parameter orgName is missing.",
        ),
        (
            json!({"organisationType": "board", "orgName": "x", "channel": "c"}),
            "UOS_ORGCRT0030",
            "Mandatory parameter isTenant is missing.",
        ),
        (
            json!({"organisationType": "board", "orgName": "x", "isTenant": true}),
            "UOS_ORGCRT0041",
            "Missing parameter channel which is dependent on isTenant.",
        ),
        (
            json!({"organisationType": "board", "orgName": "x", "isTenant": true, "channel": "c", "license": ""}),
            "UOS_ORGCRT0017",
            "Invalid value  for parameter license. Please provide a valid value.",
        ),
        (
            json!({"organisationType": "board", "orgName": "x", "isTenant": true, "channel": "c", "locationIds": "x"}),
            "UOS_ORGCRT0003",
            "Data type of locationIds should be List.",
        ),
        (
            json!({"organisationType": "board", "orgName": "x", "isTenant": true, "channel": "c", "locationIds": [], "locationCode": []}),
            "UOS_ORGCRT0005",
            "Either pass attribute locationCode or locationIds but not both.",
        ),
        (
            json!({"organisationType": "board", "orgName": "x", "isTenant": true, "channel": "c", "email": "bad"}),
            "UOS_ORGCRT0009",
            "Invalid format for given email.",
        ),
        (
            json!({"organisationType": "college", "orgName": "x", "isTenant": true, "channel": "c"}),
            "UOS_ORGCRT0018",
            "Invalid organisationType: college. Valid values are: [school, board].",
        ),
        (
            json!({"organisationType": "school", "orgName": "x", "isTenant": false}),
            "UOS_ORGCRT0030",
            "Mandatory parameter channel is missing.",
        ),
        (
            json!({"organisationType": "school", "orgName": "x", "isTenant": false, "channel": "nowhere"}),
            "UOS_ORGCRT0019",
            "Please provide valid channel.",
        ),
        (
            json!({"organisationType": "school", "orgName": "x", "isTenant": false, "channel": inactive}),
            "UOS_ORGCRT0053",
            &inactive_message,
        ),
        (
            json!({"organisationType": "board", "orgName": "x", "isTenant": true, "channel": channel}),
            "UOS_ORGCRT0004",
            &duplicate_message,
        ),
        (
            json!({"organisationType": "board", "orgName": "x", "isTenant": true, "channel": channel.to_uppercase()}),
            "UOS_ORGCRT0004",
            &upper_message,
        ),
        (
            json!({"organisationType": "school", "orgName": "x", "isTenant": false, "channel": channel, "locationCode": ["NOPE"]}),
            "UOS_ORGCRT0017",
            "Invalid value [NOPE] for parameter locationCode. Please provide a valid value.",
        ),
    ];
    for (request, err, errmsg) in cases {
        let reply = app.post("/v1/org/create", request.clone(), admin).await;
        assert_eq!(reply.status, 400, "{request} -> {}", reply.body);
        reply.assert_error(400, err, errmsg);
    }
    // External ids are unique within a channel, across case.
    app.post("/v1/org/create", json!({"organisationType": "school", "orgName": "a", "isTenant": false, "channel": channel, "externalId": "X1"}), admin)
        .await
        .assert_ok();
    app.post("/v1/org/create", json!({"organisationType": "school", "orgName": "b", "isTenant": false, "channel": channel, "externalId": "x1"}), admin)
        .await
        .assert_error(400, "UOS_ORGCRT0004", "Value x1 for externalId is already in use.");
    // Tenants are created by administrators only.
    app.post("/v1/org/create", json!({"organisationType": "board", "orgName": "x", "isTenant": true, "channel": unique_channel()}), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    let user = app
        .create_user(json!({"firstName": "U", "email": unique_email()}))
        .await;
    app.post("/v1/org/create", json!({"organisationType": "board", "orgName": "x", "isTenant": true, "channel": unique_channel()}), Some(&app.token_for(&user)))
        .await
        .assert_error(403, "UOS_ORGCRT0071", "You are forbidden from accessing specified resource.");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_tenant_creates_with_one_channel_have_exactly_one_winner() {
    let app = Arc::new(TestApp::spawn().await);
    let channel = unique_channel();
    let mut tasks = Vec::new();
    for n in 0..64 {
        let app = Arc::clone(&app);
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            app.post(
                "/v1/org/create",
                json!({"orgName": format!("Racer {n}"), "isTenant": true, "channel": channel, "organisationType": "board"}),
                Some(&app.admin_token),
            )
            .await
        }));
    }
    let mut winners = HashSet::new();
    for task in tasks {
        let reply = task.await.expect("task");
        assert!(reply.status.as_u16() < 500, "no 5xx: {}", reply.body);
        if reply.status == 200 {
            winners.insert(
                reply.body["result"]["organisationId"]
                    .as_str()
                    .expect("id")
                    .to_string(),
            );
        } else {
            reply.assert_error(
                400,
                "UOS_ORGCRT0004",
                &format!("Value {channel} for channel is already in use."),
            );
        }
    }
    assert_eq!(winners.len(), 1);
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}

#[tokio::test]
async fn org_update_changes_fields_channels_and_external_ids() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let channel = unique_channel();
    let tenant = create_tenant(&app, &channel).await;
    let reply = app
        .patch(
            "/v1/org/update",
            json!({"organisationId": tenant, "orgName": "Renamed", "description": "new", "externalId": "E9", "organisationType": "school"}),
            admin,
        )
        .await;
    assert_eq!(
        reply.assert_ok(),
        &json!({"response": "SUCCESS", "organisationId": tenant})
    );
    assert_eq!(reply.body["id"], "api.org.update");
    let org = app
        .post("/v1/org/read", json!({"organisationId": tenant}), None)
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(org["orgName"], "Renamed");
    assert_eq!(org["externalId"], "e9");
    assert_eq!(org["isSchool"], true);
    assert_ne!(org["updatedDate"], Value::Null);

    // Moving a tenant to a new channel frees the old one.
    let new_channel = unique_channel();
    app.patch(
        "/v1/org/update",
        json!({"organisationId": tenant, "channel": new_channel}),
        admin,
    )
    .await
    .assert_ok();
    let org = app
        .post("/v1/org/read", json!({"organisationId": tenant}), None)
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(org["channel"], new_channel.as_str());
    assert_eq!(org["slug"], new_channel.as_str());
    create_tenant(&app, &channel).await;
    app.post("/v1/org/create", json!({"orgName": "x", "isTenant": true, "channel": new_channel, "organisationType": "board"}), admin)
        .await
        .assert_error(400, "UOS_ORGCRT0004", &format!("Value {new_channel} for channel is already in use."));

    let duplicate_message = format!("Value {channel} for channel is already in use.");
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"orgName": "x"}),
            400,
            "UOS_ORGUPD0030",
            "Mandatory parameter organisationId is missing.",
        ),
        (
            json!({"organisationId": tenant, "rootOrgId": ""}),
            400,
            "UOS_ORGUPD0017",
            "Invalid value {0} for parameter {1}. Please provide a valid value.",
        ),
        (
            json!({"organisationId": tenant, "status": 0}),
            400,
            "UOS_ORGUPD0021",
            "Invalid parameter status in request.",
        ),
        (
            json!({"organisationId": tenant, "isTenant": true}),
            400,
            "UOS_ORGUPD0041",
            "Missing parameter channel which is dependent on isTenant.",
        ),
        (
            json!({"organisationId": "missing"}),
            400,
            // What Sunbird's actor tells itself carries the bare key (no UOS_, no operation).
            "0028",
            "Requested data for this operation is not valid.",
        ),
        (
            json!({"organisationId": tenant, "email": "nope"}),
            400,
            "0009",
            "Invalid format for given email.",
        ),
        (
            json!({"organisationId": tenant, "channel": channel}),
            400,
            "0004",
            &duplicate_message,
        ),
    ];
    for (request, status, err, errmsg) in cases {
        let reply = app.patch("/v1/org/update", request.clone(), admin).await;
        assert_eq!(reply.status.as_u16(), status, "{request} -> {}", reply.body);
        reply.assert_error(status, err, errmsg);
    }
    app.patch(
        "/v1/org/update",
        json!({"organisationId": tenant, "orgName": "x"}),
        None,
    )
    .await
    .assert_error(401, "UOS_0070", "You are not authorized.");
    app.stop().await;
}

#[tokio::test]
async fn the_status_transition_matrix_is_enforced_exhaustively() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let allowed = |from: i64, to: i64| match from {
        1 => true,
        0 => to == 0 || to == 1,
        2 => to >= 1,
        3 => to == 3,
        _ => false,
    };
    // Reaching a starting status: 1 is where every organisation starts; 0, 2 and 3 are one step away.
    for from in 0..=3i64 {
        for to in 0..=3i64 {
            let org = create_tenant(&app, &unique_channel()).await;
            if from != 1 {
                app.patch(
                    "/v1/org/status/update",
                    json!({"organisationId": org, "status": from}),
                    admin,
                )
                .await
                .assert_ok();
            }
            let reply = app
                .patch(
                    "/v1/org/status/update",
                    json!({"organisationId": org, "status": to}),
                    admin,
                )
                .await;
            if allowed(from, to) {
                assert_eq!(
                    reply.assert_ok(),
                    &json!({"response": "SUCCESS", "organisationId": org}),
                    "{from}->{to}"
                );
                let read = app
                    .post("/v1/org/read", json!({"organisationId": org}), None)
                    .await;
                assert_eq!(read.assert_ok()["response"]["status"], to, "{from}->{to}");
            } else {
                reply.assert_error(
                    400,
                    "0028",
                    "Requested data for this operation is not valid.",
                );
                let read = app
                    .post("/v1/org/read", json!({"organisationId": org}), None)
                    .await;
                assert_eq!(
                    read.assert_ok()["response"]["status"],
                    from,
                    "{from}->{to} left unchanged"
                );
            }
        }
    }
    let org = create_tenant(&app, &unique_channel()).await;
    for (request, err, errmsg) in [
        (
            json!({"status": 1}),
            "UOS_OSTSUPD0030",
            "Mandatory parameter organisationId is missing.",
        ),
        (
            json!({"organisationId": org}),
            "UOS_OSTSUPD0028",
            "Requested data for this operation is not valid.",
        ),
        (
            json!({"organisationId": org, "status": "1"}),
            "UOS_OSTSUPD0028",
            "Requested data for this operation is not valid.",
        ),
        (
            json!({"organisationId": org, "status": 9}),
            "0028",
            "Requested data for this operation is not valid.",
        ),
        (
            json!({"organisationId": "none", "status": 1}),
            "0028",
            "Requested data for this operation is not valid.",
        ),
    ] {
        app.patch("/v1/org/status/update", request, admin)
            .await
            .assert_error(400, err, errmsg);
    }
    app.stop().await;
}

#[tokio::test]
async fn org_read_errors() {
    let app = TestApp::spawn().await;
    app.post("/v1/org/read", json!({}), None)
        .await
        .assert_error(
            400,
            "UOS_ORGRED0030",
            "Mandatory parameter organisationId is missing.",
        );
    let reply = app
        .post("/v1/org/read", json!({"organisationId": "nope"}), None)
        .await;
    reply.assert_error(
        404,
        "UOS_ORGRED0013",
        "Requested organisation resource not found",
    );
    assert_eq!(reply.body["responseCode"], "RESOURCE_NOT_FOUND");
    app.stop().await;
}

#[tokio::test]
async fn org_search_filters_sorts_pages_and_facets() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let channel = unique_channel();
    let tenant = create_tenant(&app, &channel).await;
    for (name, kind) in [
        ("Alpha School", "school"),
        ("Beta School", "school"),
        ("Gamma Board", "board"),
    ] {
        app.post("/v1/org/create", json!({"orgName": name, "isTenant": false, "channel": channel, "organisationType": kind}), admin)
            .await
            .assert_ok();
    }
    let wait = org_search_until(&app, json!({"filters": {"channel": channel}}), |b| {
        b["result"]["response"]["count"] == 4
    })
    .await;
    assert_eq!(wait.body["result"]["response"]["count"], 4);

    let schools = app
        .post(
            "/v2/org/search",
            json!({"filters": {"channel": channel, "isSchool": true}}),
            None,
        )
        .await;
    let result = schools.assert_ok()["response"].clone();
    assert_eq!(result["count"], 2);
    assert!(
        result["content"]
            .as_array()
            .expect("content")
            .iter()
            .all(|o| o["isSchool"] == true)
    );

    let page = app
        .post(
            "/v2/org/search",
            json!({"filters": {"channel": channel, "isTenant": false}, "sort_by": {"orgName": "desc"}, "limit": 2, "offset": 1, "fields": ["orgName", "id"]}),
            None,
        )
        .await;
    let result = page.assert_ok()["response"].clone();
    assert_eq!(result["count"], 3);
    let names: Vec<_> = result["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|o| o["orgName"].clone())
        .collect();
    assert_eq!(names, vec![json!("Beta School"), json!("Alpha School")]);
    assert!(
        result["content"][0].get("channel").is_none(),
        "fields limit the source"
    );

    let facets = app
        .post(
            "/v2/org/search",
            json!({"filters": {"channel": channel}, "facets": [{"organisationType": null}]}),
            None,
        )
        .await;
    let result = facets.assert_ok()["response"].clone();
    assert_eq!(
        result["facets"],
        json!([{"name": "organisationType", "values": [{"name": "2", "count": 2}, {"name": "5", "count": 2}]}])
    );

    let v1 = app
        .post(
            "/v1/org/search",
            json!({"filters": {"channel": channel, "isRootOrg": true}}),
            None,
        )
        .await;
    let result = v1.assert_ok()["response"].clone();
    assert_eq!(result["count"], 1);
    assert_eq!(result["content"][0]["id"], tenant.as_str());
    assert_eq!(result["content"][0]["isRootOrg"], true);
    assert_eq!(result["content"][0]["hashTagId"], tenant.as_str());
    assert!(
        result["content"][0].get("theme").is_some(),
        "v1 adds the default keys"
    );
    let v2 = app
        .post("/v2/org/search", json!({"filters": {"id": tenant}}), None)
        .await;
    assert!(
        v2.assert_ok()["response"]["content"][0]
            .get("theme")
            .is_none()
    );
    let private = app
        .post_internal("/private/v2/org/search", json!({"filters": {"id": tenant}}))
        .await;
    assert_eq!(private.assert_ok()["response"]["count"], 1);

    app.post("/v2/org/search", json!({}), None)
        .await
        .assert_error(
            400,
            "UOS_ORGSER0030",
            "Mandatory parameter filters is missing.",
        );
    app.post("/v1/org/search", json!({"filters": "x"}), None)
        .await
        .assert_error(400, "UOS_ORGSER0003", "Data type of filters should be Map.");
    app.stop().await;
}

#[tokio::test]
async fn keys_are_assigned_and_encryption_keys_uploaded() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let tenant = create_tenant(&app, &unique_channel()).await;
    let reply = app
        .patch(
            "/v1/org/assign/key",
            json!({"id": tenant, "signKeys": ["s1"], "encKeys": ["e1", "e2"]}),
            admin,
        )
        .await;
    assert_eq!(reply.assert_ok(), &json!({"response": "SUCCESS"}));
    let org = app
        .post("/v1/org/read", json!({"organisationId": tenant}), None)
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(
        org["keys"],
        json!({"signKeys": ["s1"], "encKeys": ["e1", "e2"]})
    );
    for (request, err, errmsg) in [
        (
            json!({"signKeys": ["a"], "encKeys": ["b"]}),
            "UOS_ASSGNK0030",
            "Mandatory parameter id is missing.",
        ),
        (
            json!({"id": tenant, "encKeys": ["b"]}),
            "UOS_ASSGNK0030",
            "Mandatory parameter signKeys is missing.",
        ),
        (
            json!({"id": tenant, "signKeys": "a", "encKeys": ["b"]}),
            "UOS_ASSGNK0003",
            "Data type of signKeys should be List.",
        ),
        (
            json!({"id": tenant, "signKeys": [], "encKeys": ["b"]}),
            "UOS_ASSGNK0031",
            "Mandatory parameter signKeys is empty.",
        ),
        (
            json!({"id": tenant, "signKeys": ["a"], "encKeys": []}),
            "UOS_ASSGNK0031",
            "Mandatory parameter encKeys is empty.",
        ),
        (
            json!({"id": "none", "signKeys": ["a"], "encKeys": ["b"]}),
            "UOS_ASSGNK0040",
            "No root organisation found which is associated with given none.",
        ),
    ] {
        app.patch("/v1/org/assign/key", request, admin)
            .await
            .assert_error(400, err, errmsg);
    }
    let school = app
        .post("/v1/org/create", json!({"orgName": "S", "isTenant": false, "channel": "sunbird", "organisationType": "school"}), admin)
        .await
        .assert_ok()["organisationId"]
        .as_str()
        .expect("id")
        .to_string();
    app.patch(
        "/v1/org/assign/key",
        json!({"id": school, "signKeys": ["a"], "encKeys": ["b"]}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_ASSGNK0028",
        "Please provide valid organisationid.",
    );

    // The multipart PEM upload.
    let pem = app.signer.public_key_pem().to_string();
    let upload = |file_name: &'static str, content: String, org: String| {
        let form = reqwest::multipart::Form::new()
            .text("organisationId", org)
            .part(
                "file",
                reqwest::multipart::Part::bytes(content.into_bytes()).file_name(file_name),
            );
        app.client
            .patch(format!("{}/v1/org/update/encryptionkey", app.public))
            .header("x-authenticated-user-token", &app.admin_token)
            .multipart(form)
            .send()
    };
    let ok: Value = upload("public.pem", pem.clone(), tenant.clone())
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(ok["result"], json!({"response": "SUCCESS"}), "{ok}");
    let org = app
        .post("/v1/org/read", json!({"organisationId": tenant}), None)
        .await
        .assert_ok()["response"]
        .clone();
    assert_eq!(
        org["keys"]["exhaustEncryptionKey"],
        json!([format!("organisation/{tenant}/public.pem")])
    );
    let bad_extension: Value = upload("key.txt", pem.clone(), tenant.clone())
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(bad_extension["params"]["err"], "UOS_ADENCKEY0077");
    assert_eq!(
        bad_extension["params"]["errmsg"],
        "Please provide a valid file. File expected of format: pem"
    );
    let bad_key: Value = upload("key.pem", "not a key".into(), tenant.clone())
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(bad_key["params"]["err"], "UOS_ADENCKEY0028");
    let no_org: Value = upload("key.pem", pem, "none".into())
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        no_org["params"]["errmsg"],
        "No root organisation found which is associated with given none."
    );
    app.stop().await;
}
