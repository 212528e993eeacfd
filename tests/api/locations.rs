//! Locations: create, update, delete and search, with Sunbird's messages, the type hierarchy,
//! unique codes, and deletes that cannot orphan a child created at the same moment.

use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, unique_email};

const FORBIDDEN: &str = "You are forbidden from accessing specified resource.";
const UNAUTHORIZED: &str = "You are not authorized.";
const BAD_PARENT: &str = "Please provide valid parentId or parentCode.";

/// A fresh code: tests share no data dir, but codes stay readable in failures.
fn code(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

async fn create(app: &TestApp, request: Value) -> Reply {
    app.post("/v1/location/create", request, Some(&app.admin_token))
        .await
}

/// Creates a location as the admin and returns its id.
async fn create_ok(app: &TestApp, request: Value) -> String {
    let reply = create(app, request).await;
    let result = reply.assert_ok().clone();
    let id = result["id"].as_str().expect("id").to_string();
    assert_eq!(result, json!({"response": "SUCCESS", "id": id}));
    uuid::Uuid::parse_str(&id).expect("a uuid");
    id
}

async fn delete(app: &TestApp, id: &str, token: Option<&str>) -> Reply {
    app.send(
        reqwest::Method::DELETE,
        format!("{}/v1/location/delete/{id}", app.public),
        None,
        token,
    )
    .await
}

/// Searches once the index caught up with the store, and checks `check` on the result.
async fn search_until(app: &TestApp, request: Value, check: impl Fn(&Value) -> bool) -> Value {
    app.wait_for_index().await;
    let reply = app.post("/v1/location/search", request, None).await;
    let result = reply.assert_ok().clone();
    assert!(check(&result), "unexpected search result {result}");
    result
}

async fn plain_user_token(app: &TestApp) -> String {
    let id = app
        .create_user(json!({"firstName": "Plain", "email": unique_email()}))
        .await;
    app.token_for(&id)
}

#[tokio::test]
async fn a_location_tree_is_created_and_searched_with_exact_shapes() {
    let app = TestApp::spawn().await;
    let state_code = code("ST");
    let state = create_ok(
        &app,
        json!({"name": "Karnataka", "code": state_code, "type": "State"}),
    )
    .await;
    let district_code = code("DI");
    let district = create_ok(
        &app,
        json!({"name": "Mysuru", "code": district_code, "type": "district", "parentId": state}),
    )
    .await;
    // A second district, named to sort first, found through its parent's code.
    let other_code = code("DI");
    let other = create_ok(
        &app,
        json!({"name": "Bengaluru", "code": other_code, "type": "district", "parentCode": state_code.to_lowercase()}),
    )
    .await;
    let block = create_ok(
        &app,
        json!({"name": "Hunsur", "code": code("BL"), "type": "block", "parentCode": district_code}),
    )
    .await;
    // A school may skip the cluster level.
    create_ok(
        &app,
        json!({"name": "GHS Hunsur", "code": code("SC"), "type": "school", "parentId": block}),
    )
    .await;

    let reply = app
        .post(
            "/v1/location/create",
            json!({"name": "Cluster", "code": code("CL"), "type": "cluster", "parentId": block}),
            Some(&app.admin_token),
        )
        .await;
    reply.assert_ok();
    assert_eq!(reply.body["id"], "api.location.create");
    assert_eq!(reply.body["ver"], "v1");

    let result = search_until(
        &app,
        json!({"filters": {"type": "district", "parentId": state}}),
        |r| r["count"] == 2,
    )
    .await;
    // Sorted by name when the filters name a type and no sort is given.
    assert_eq!(
        result,
        json!({"count": 2, "response": [
            {"id": other, "code": other_code, "name": "Bengaluru", "type": "district", "parentId": state, "identifier": other},
            {"id": district, "code": district_code, "name": "Mysuru", "type": "district", "parentId": state, "identifier": district},
        ]})
    );
    let top = app
        .post(
            "/v1/location/search",
            json!({"filters": {"id": state}}),
            None,
        )
        .await;
    assert_eq!(top.body["id"], "api.location.search");
    assert_eq!(
        top.assert_ok().clone(),
        json!({"count": 1, "response": [
            {"id": state, "code": state_code, "name": "Karnataka", "type": "state", "identifier": state}
        ]})
    );
    // An explicit sort wins over the name order.
    let sorted = app
        .post(
            "/v1/location/search",
            json!({"filters": {"type": "district", "parentId": state}, "sort_by": {"name": "desc"}}),
            None,
        )
        .await;
    assert_eq!(sorted.assert_ok()["response"][0]["id"], district.as_str());
    // No filters: every location, paged.
    let all = search_until(&app, json!({"limit": 2}), |r| r["count"] == 6).await;
    assert_eq!(all["count"], 6);
    assert_eq!(all["response"].as_array().map(Vec::len), Some(2));
    app.stop().await;
}

#[tokio::test]
async fn create_answers_every_mistake_with_sunbirds_message() {
    let app = TestApp::spawn().await;
    let state_code = code("ST");
    let state = create_ok(
        &app,
        json!({"name": "S", "code": state_code, "type": "state"}),
    )
    .await;
    let district = create_ok(
        &app,
        json!({"name": "D", "code": code("DI"), "type": "district", "parentId": state}),
    )
    .await;
    let block = create_ok(
        &app,
        json!({"name": "B", "code": code("BL"), "type": "block", "parentId": district}),
    )
    .await;

    let cases: Vec<(Value, &str, String)> = vec![
        (
            json!({}),
            "UOS_LOCCRT0028",
            "Requested data for this operation is not valid.".into(),
        ),
        (
            json!({"code": code("X"), "type": "state"}),
            "UOS_LOCCRT0030",
            "Mandatory parameter name is missing.".into(),
        ),
        (
            json!({"name": " ", "code": code("X"), "type": "state"}),
            "UOS_LOCCRT0030",
            "Mandatory parameter name is missing.".into(),
        ),
        (
            json!({"name": "X", "type": "state"}),
            "UOS_LOCCRT0030",
            "Mandatory parameter code is missing.".into(),
        ),
        (
            json!({"name": "X", "code": code("X")}),
            "UOS_LOCCRT0030",
            "Mandatory parameter type is missing.".into(),
        ),
        (
            json!({"name": 7, "code": code("X"), "type": "state"}),
            "UOS_LOCCRT0003",
            "Data type of name should be String.".into(),
        ),
        (
            json!({"name": "X", "code": code("X"), "type": "village"}),
            "0018",
            "Invalid type: village. Valid values are: [state, district, block, cluster, school]."
                .into(),
        ),
        (
            json!({"name": "X", "code": code("X"), "type": "district"}),
            "0030",
            "Mandatory parameter parentId or parentCode is missing.".into(),
        ),
        (
            json!({"name": "X", "code": code("X"), "type": "state", "parentCode": state_code}),
            "0034",
            "For top level location, parentId or parentCode is not allowed.".into(),
        ),
        (
            json!({"name": "X", "code": state_code.to_uppercase(), "type": "state"}),
            "0004",
            format!(
                "Value {} for code is already in use.",
                state_code.to_uppercase()
            ),
        ),
        (
            json!({"name": "X", "code": code("X"), "type": "district", "parentCode": "nowhere"}),
            "0019",
            "Please provide valid parentCode.".into(),
        ),
        (
            json!({"name": "X", "code": code("X"), "type": "district", "parentId": "nowhere"}),
            "0019",
            "Please provide valid parentId.".into(),
        ),
        // Too far above, at the same level, and below.
        (
            json!({"name": "X", "code": code("X"), "type": "block", "parentId": state}),
            "0019",
            BAD_PARENT.into(),
        ),
        (
            json!({"name": "X", "code": code("X"), "type": "school", "parentId": district}),
            "0019",
            BAD_PARENT.into(),
        ),
        (
            json!({"name": "X", "code": code("X"), "type": "district", "parentId": district}),
            "0019",
            BAD_PARENT.into(),
        ),
        (
            json!({"name": "X", "code": code("X"), "type": "district", "parentId": block}),
            "0019",
            BAD_PARENT.into(),
        ),
    ];
    for (request, err, message) in cases {
        create(&app, request.clone())
            .await
            .assert_error(400, err, &message);
    }

    let valid = json!({"name": "X", "code": code("X"), "type": "state"});
    app.post("/v1/location/create", valid.clone(), None)
        .await
        .assert_error(401, "UOS_0070", UNAUTHORIZED);
    let user = plain_user_token(&app).await;
    app.post("/v1/location/create", valid, Some(&user))
        .await
        .assert_error(403, "UOS_LOCCRT0071", FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_creates_of_one_code_have_one_winner() {
    let app = TestApp::spawn().await;
    let shared = code("RACE");
    let replies = futures::future::join_all((0..8).map(|n| {
        create(
            &app,
            json!({"name": format!("S{n}"), "code": shared, "type": "state"}),
        )
    }))
    .await;
    let winners = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(winners, 1);
    for reply in replies.iter().filter(|r| r.status != 200) {
        reply.assert_error(
            400,
            "0004",
            &format!("Value {shared} for code is already in use."),
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn update_renames_recodes_and_moves_a_location() {
    let app = TestApp::spawn().await;
    let first = create_ok(
        &app,
        json!({"name": "First", "code": code("ST"), "type": "state"}),
    )
    .await;
    let second_code = code("ST");
    let second = create_ok(
        &app,
        json!({"name": "Second", "code": second_code, "type": "state"}),
    )
    .await;
    let old_code = code("DI");
    let district = create_ok(
        &app,
        json!({"name": "Old", "code": old_code, "type": "district", "parentId": first}),
    )
    .await;

    let new_code = code("DI");
    let reply = app
        .patch(
            "/v1/location/update",
            json!({"id": district, "name": "New", "code": new_code, "parentCode": second_code}),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(reply.assert_ok().clone(), json!({"response": "SUCCESS"}));
    assert_eq!(reply.body["id"], "api.location.update");

    let result = search_until(&app, json!({"filters": {"id": district}}), |r| {
        r["response"][0]["name"] == "New"
    })
    .await;
    assert_eq!(
        result,
        json!({"count": 1, "response": [
            {"id": district, "code": new_code, "name": "New", "type": "district", "parentId": second,
             "identifier": district}
        ]})
    );
    // The old code is free again, the old parent has no child left, the new one has one.
    create_ok(
        &app,
        json!({"name": "Reuse", "code": old_code, "type": "state"}),
    )
    .await;
    delete(&app, &first, Some(&app.admin_token))
        .await
        .assert_ok();
    delete(&app, &second, Some(&app.admin_token))
        .await
        .assert_error(
            400,
            "0029",
            "One or more locations have a parent reference to given location and hence cannot be deleted.",
        );
    // Its own code, in another case, is not a conflict.
    app.patch(
        "/v1/location/update",
        json!({"id": district, "code": new_code.to_uppercase()}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn update_answers_every_mistake_with_sunbirds_message() {
    let app = TestApp::spawn().await;
    let state_code = code("ST");
    let state = create_ok(
        &app,
        json!({"name": "S", "code": state_code, "type": "state"}),
    )
    .await;
    let other_state = create_ok(
        &app,
        json!({"name": "S2", "code": code("ST"), "type": "state"}),
    )
    .await;
    let district = create_ok(
        &app,
        json!({"name": "D", "code": code("DI"), "type": "district", "parentId": state}),
    )
    .await;
    let block = create_ok(
        &app,
        json!({"name": "B", "code": code("BL"), "type": "block", "parentId": district}),
    )
    .await;

    let cases: Vec<(Value, &str, String)> = vec![
        (
            json!({"name": "X"}),
            "UOS_LOCUPD0030",
            "Mandatory parameter id is missing.".into(),
        ),
        (
            json!({"id": district, "type": "block"}),
            "UOS_LOCUPD0033",
            "Update of type is not allowed.".into(),
        ),
        (
            json!({"id": "nowhere", "name": "X"}),
            "0019",
            "Please provide valid locationId.".into(),
        ),
        (
            json!({"id": district, "code": state_code}),
            "0004",
            format!("Value {state_code} for code is already in use."),
        ),
        (
            json!({"id": other_state, "parentId": state}),
            "0034",
            "For top level location, parentId or parentCode is not allowed.".into(),
        ),
        (
            json!({"id": block, "parentId": state}),
            "0019",
            BAD_PARENT.into(),
        ),
        (
            json!({"id": district, "parentId": block}),
            "0019",
            BAD_PARENT.into(),
        ),
        (
            json!({"id": district, "parentId": "nowhere"}),
            "0019",
            "Please provide valid parentId.".into(),
        ),
    ];
    for (request, err, message) in cases {
        app.patch("/v1/location/update", request, Some(&app.admin_token))
            .await
            .assert_error(400, err, &message);
    }
    let rename = json!({"id": district, "name": "X"});
    app.patch("/v1/location/update", rename.clone(), None)
        .await
        .assert_error(401, "UOS_0070", UNAUTHORIZED);
    let user = plain_user_token(&app).await;
    app.patch("/v1/location/update", rename, Some(&user))
        .await
        .assert_error(403, "UOS_LOCUPD0071", FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn delete_refuses_parents_and_frees_the_code() {
    let app = TestApp::spawn().await;
    let state_code = code("ST");
    let state = create_ok(
        &app,
        json!({"name": "S", "code": state_code, "type": "state"}),
    )
    .await;
    let district = create_ok(
        &app,
        json!({"name": "D", "code": code("DI"), "type": "district", "parentId": state}),
    )
    .await;
    search_until(&app, json!({"filters": {"id": [state, district]}}), |r| {
        r["count"] == 2
    })
    .await;

    let refused = delete(&app, &state, Some(&app.admin_token)).await;
    refused.assert_error(
        400,
        "0029",
        "One or more locations have a parent reference to given location and hence cannot be deleted.",
    );
    assert_eq!(refused.body["id"], format!("api.location.delete.{state}"));
    delete(&app, &state, None)
        .await
        .assert_error(401, "UOS_0070", UNAUTHORIZED);
    let user = plain_user_token(&app).await;
    delete(&app, &district, Some(&user))
        .await
        .assert_error(403, "UOS_LOCDEL0071", FORBIDDEN);

    let reply = delete(&app, &district, Some(&app.admin_token)).await;
    assert_eq!(reply.assert_ok().clone(), json!({"response": "SUCCESS"}));
    delete(&app, &state, Some(&app.admin_token))
        .await
        .assert_ok();
    delete(&app, &state, Some(&app.admin_token))
        .await
        .assert_error(400, "0019", "Please provide valid locationId.");

    let gone = search_until(&app, json!({"filters": {"id": [state, district]}}), |r| {
        r["count"] == 0
    })
    .await;
    assert_eq!(gone, json!({"count": 0, "response": []}));
    // The code can be used again.
    create_ok(
        &app,
        json!({"name": "S again", "code": state_code, "type": "state"}),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_delete_racing_child_creates_never_orphans_a_child() {
    let app = TestApp::spawn().await;
    for round in 0..6 {
        let state = create_ok(
            &app,
            json!({"name": format!("S{round}"), "code": code("ST"), "type": "state"}),
        )
        .await;
        let children = (0..4).map(|n| {
            create(
                &app,
                json!({"name": format!("D{n}"), "code": code("DI"), "type": "district", "parentId": state}),
            )
        });
        let (deleted, created) = tokio::join!(
            delete(&app, &state, Some(&app.admin_token)),
            futures::future::join_all(children)
        );
        let created_count = created.iter().filter(|r| r.status == 200).count();
        if deleted.status == 200 {
            assert_eq!(
                created_count, 0,
                "round {round}: a child outlived its parent"
            );
            for reply in &created {
                reply.assert_error(400, "0019", "Please provide valid parentId.");
            }
        } else {
            deleted.assert_error(
                400,
                "0029",
                "One or more locations have a parent reference to given location and hence cannot be deleted.",
            );
            assert_eq!(
                created_count, 4,
                "round {round}: children refused while the parent stayed"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn search_refuses_malformed_requests() {
    let app = TestApp::spawn().await;
    for request in [
        json!({}),
        json!({"filters": "state"}),
        json!({"filters": []}),
    ] {
        app.post("/v1/location/search", request, None)
            .await
            .assert_error(
                400,
                "UOS_LOCSER0028",
                "Requested data for this operation is not valid.",
            );
    }
    app.post(
        "/v1/location/search",
        json!({"filters": {}, "limit": "ten"}),
        None,
    )
    .await
    .assert_error(
        400,
        "UOS_LOCSER0003",
        "Data type of limit should be Integer.",
    );
    app.stop().await;
}

#[tokio::test]
async fn the_gateway_path_creates_a_location() {
    let app = TestApp::spawn().await;
    let reply = app
        .post(
            "/api/data/v1/location/create",
            json!({"name": "Gateway", "code": code("GW"), "type": "state"}),
            Some(&app.admin_token),
        )
        .await;
    let id = reply.assert_ok()["id"].as_str().expect("id").to_string();
    assert_eq!(reply.body["id"], "api.location.create");
    let found = search_until(&app, json!({"filters": {"id": id}}), |r| r["count"] == 1).await;
    assert_eq!(found["response"][0]["name"], "Gateway");
    app.stop().await;
}

/// The robustness probe's 5xx: 32 creates under one parent at once gave 503 to most of them.
#[tokio::test]
async fn thirty_two_concurrent_children_of_one_parent_are_all_created() {
    let app = TestApp::spawn().await;
    let state = create_ok(
        &app,
        json!({"name": "Rush", "code": format!("RS{}", uuid::Uuid::new_v4().simple()), "type": "state"}),
    )
    .await;
    let district = create_ok(
        &app,
        json!({"name": "Rush D", "code": format!("RD{}", uuid::Uuid::new_v4().simple()), "type": "district", "parentId": state}),
    )
    .await;
    let creates = (0..32).map(|n| {
        let app = &app;
        let district = district.clone();
        async move {
            create(
                app,
                json!({"name": format!("RK{n}"), "code": format!("RK{n}-{}", uuid::Uuid::new_v4().simple()), "type": "block", "parentId": district}),
            )
            .await
        }
    });
    let replies = futures::future::join_all(creates).await;
    let failed: Vec<String> = replies
        .iter()
        .filter(|reply| reply.status != 200)
        .map(|reply| reply.body.to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 32 failed: {failed:?}",
        failed.len()
    );
    // Every child is listed under its parent, so the parent cannot be deleted now.
    delete(&app, &district, Some(&app.admin_token))
        .await
        .assert_error(
            400,
            "0029",
            "One or more locations have a parent reference to given location and hence cannot be deleted.",
        );
}
