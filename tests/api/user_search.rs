use serde_json::json;

use crate::helpers::{TestApp, unique_email};

/// How fast the index follows is measured by `bench/load.sh`, not asserted here: a wall-clock
/// bound in a test only makes it flaky on a loaded machine.
#[tokio::test]
async fn a_created_user_is_searchable_once_indexed_with_pii_masked() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Findme", "lastName": "Now", "email": email, "phone": "9876512345"}))
        .await;
    let reply = app
        .search_indexed(json!({"filters": {"email": email}}))
        .await;
    let result = reply.assert_ok()["response"].clone();
    assert_eq!(reply.body["id"], "api.user.search");
    assert_eq!(result["count"], 1);
    let user = &result["content"][0];
    assert_eq!(user["id"], id.as_str());
    assert_eq!(user["phone"], "******2345");
    assert!(user["email"].as_str().expect("email").contains("******"));
    let text = reply.body.to_string();
    assert!(!text.contains(&email), "no clear email");
    assert!(!text.contains("9876512345"), "no clear phone");
    assert!(
        !text.contains("piiTokens") && !text.contains("\"v1."),
        "no tokens or ciphertext"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_filter_dsl_works_end_to_end() {
    let app = TestApp::spawn().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    for (first, dob) in [("Anil", "1990"), ("Anita", "1985"), ("Bala", "2001")] {
        app.create_user(
            json!({"firstName": first, "lastName": tag, "email": unique_email(), "dob": dob}),
        )
        .await;
    }
    let base = json!({"lastName": tag});
    let wait = app.search_indexed(json!({"filters": base})).await;
    assert_eq!(wait.body["result"]["response"]["count"], 3);
    let admin = Some(app.admin_token.as_str());
    let search = |request: serde_json::Value| app.post("/v3/user/search", request, admin);

    let prefix =
        search(json!({"filters": {"lastName": tag, "firstName": {"startsWith": "ani"}}})).await;
    assert_eq!(prefix.assert_ok()["response"]["count"], 2);

    let range = search(json!({"filters": {"lastName": tag, "dob": {">=": "1986-01-01"}}})).await;
    assert_eq!(range.assert_ok()["response"]["count"], 2);

    let any = search(json!({"filters": {"lastName": tag, "firstName": ["Anil", "BALA"]}})).await;
    assert_eq!(any.assert_ok()["response"]["count"], 2);

    let or = search(
        json!({"filters": {"lastName": tag, "$or": {"firstName": "anil", "dob": "2001-12-31"}}}),
    )
    .await;
    assert_eq!(or.assert_ok()["response"]["count"], 2);

    let sorted = search(json!({
        "filters": {"lastName": tag}, "sort_by": {"firstName": "desc"},
        "fields": ["firstName", "dob"], "limit": 2, "offset": 1
    }))
    .await;
    let result = sorted.assert_ok()["response"].clone();
    assert_eq!(result["count"], 3, "count ignores paging");
    let names: Vec<_> = result["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|u| u["firstName"].clone())
        .collect();
    assert_eq!(names, vec![json!("Anita"), json!("Anil")]);
    assert!(
        result["content"][0].get("email").is_none(),
        "fields limits the source"
    );

    let query = search(json!({"filters": {"lastName": tag}, "query": "anita"})).await;
    assert_eq!(query.assert_ok()["response"]["count"], 1);

    let facets = search(json!({"filters": {"lastName": tag}, "facets": [{"channel": null}]})).await;
    let result = facets.assert_ok()["response"].clone();
    assert_eq!(
        result["facets"],
        json!([{"name": "channel", "values": [{"name": "sunbird", "count": 3}]}])
    );

    let exists =
        search(json!({"filters": {"lastName": tag}, "exists": ["dob"], "not_exists": ["avatar"]}))
            .await;
    assert_eq!(exists.assert_ok()["response"]["count"], 3);

    let status = search(json!({"filters": {"lastName": tag, "status": 1}})).await;
    assert_eq!(status.assert_ok()["response"]["count"], 3);
    for version in ["v1", "v2"] {
        let reply = app
            .post(
                &format!("/{version}/user/search"),
                json!({"filters": {"lastName": tag}}),
                admin,
            )
            .await;
        assert_eq!(reply.assert_ok()["response"]["count"], 3);
    }
    app.stop().await;
}

#[tokio::test]
async fn search_errors_match_sunbird() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    app.post("/v3/user/search", json!({}), admin)
        .await
        .assert_error(
            400,
            "UOS_USRSER0030",
            "Mandatory parameter filters is missing.",
        );
    app.post("/v3/user/search", json!({"filters": []}), admin)
        .await
        .assert_error(400, "UOS_USRSER0003", "Data type of filters should be Map.");
    app.post(
        "/v3/user/search",
        json!({"filters": {}, "fields": "x"}),
        admin,
    )
    .await
    .assert_error(400, "UOS_USRSER0003", "Data type of fields should be List.");
    app.post(
        "/v3/user/search",
        json!({"filters": {"email": null}}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_USRSER0017",
        "Invalid value null for parameter email. Please provide a valid value.",
    );
    app.post("/v3/user/search", json!({"filters": {}}), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    // An oversized limit is capped, not refused.
    let capped = app
        .post(
            "/v3/user/search",
            json!({"filters": {}, "limit": 1_000_000}),
            admin,
        )
        .await;
    capped.assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn the_private_search_is_served_on_the_internal_listener() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Priv", "email": email}))
        .await;
    app.wait_for_index().await;
    let reply = app
        .post_internal(
            "/private/user/v1/search",
            json!({"filters": {"email": email}}),
        )
        .await;
    let result = reply.assert_ok()["response"].clone();
    assert_eq!(reply.body["id"], ".private.user.v1.search");
    assert_eq!(result["content"][0]["id"], id.as_str());
    let public = app
        .post(
            "/private/user/v1/search",
            json!({"filters": {}}),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(public.status, 404);
    app.stop().await;
}
