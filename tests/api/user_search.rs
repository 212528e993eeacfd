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
        !text.contains("piiTokens") && !text.contains("\"v1.") && !text.contains("\"v2."),
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

    // Fixtures where exists, not_exists and status change the count: one user gets an avatar,
    // one is blocked.
    let ids: Vec<String> = result_ids(&search(json!({"filters": {"lastName": tag}})).await);
    app.patch(
        "/v1/user/update",
        json!({"userId": ids[0], "avatar": "https://example.test/a.png"}),
        admin,
    )
    .await
    .assert_ok();
    app.post("/v1/user/block", json!({"userId": ids[1]}), admin)
        .await
        .assert_ok();
    app.wait_for_index().await;
    let exists =
        search(json!({"filters": {"lastName": tag}, "exists": ["dob"], "not_exists": ["avatar"]}))
            .await;
    assert_eq!(exists.assert_ok()["response"]["count"], 2);
    let with_avatar = search(json!({"filters": {"lastName": tag}, "exists": ["avatar"]})).await;
    assert_eq!(result_ids(&with_avatar), vec![ids[0].clone()]);

    let status = search(json!({"filters": {"lastName": tag, "status": 1}})).await;
    assert_eq!(status.assert_ok()["response"]["count"], 2);
    let blocked = search(json!({"filters": {"lastName": tag, "status": 0}})).await;
    assert_eq!(result_ids(&blocked), vec![ids[1].clone()]);
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
    // A filter the service cannot translate is refused, never dropped (which would list all).
    app.post(
        "/v3/user/search",
        json!({"filters": {"firstName": {"$regex": ".*"}}}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_USRSER0017",
        "Invalid value $regex for parameter firstName. Please provide a valid value.",
    );
    let facets: Vec<serde_json::Value> = (0..21).map(|i| json!({format!("f{i}"): null})).collect();
    app.post(
        "/v3/user/search",
        json!({"filters": {}, "facets": facets}),
        admin,
    )
    .await
    .assert_error(
        400,
        "UOS_USRSER0058",
        "Parameter facets is of invalid size (expected: 20, actual: 21).",
    );
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_limit_is_capped_not_refused() {
    let app = TestApp::spawn_with(&[
        ("USERORG__SEARCH__DEFAULT_LIMIT", "2"),
        ("USERORG__SEARCH__MAX_LIMIT", "2"),
    ])
    .await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    for _ in 0..3 {
        app.create_user(json!({"firstName": "Many", "lastName": tag, "email": unique_email()}))
            .await;
    }
    let capped = app
        .search_indexed(json!({"filters": {"lastName": tag}, "limit": 1_000_000}))
        .await;
    let result = capped.assert_ok()["response"].clone();
    assert_eq!(result["count"], 3);
    assert_eq!(
        result["content"].as_array().expect("content").len(),
        2,
        "the page holds at most max_limit hits"
    );
    app.stop().await;
}

fn result_ids(reply: &crate::helpers::Reply) -> Vec<String> {
    let mut ids: Vec<String> = reply.assert_ok()["response"]["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|user| user["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
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

/// Search is scoped to the caller's tenants (ADMIN aside) and shows each hit as the caller's
/// relation to that user allows, as read does.
#[tokio::test]
async fn search_is_scoped_to_the_callers_tenant_and_shows_fields_by_relation() {
    let app = TestApp::spawn().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let channel = format!("sc{}", &tag[..10]);
    crate::orgs::create_tenant(&app, &channel).await;
    let elsewhere = app
        .create_user(
            json!({"firstName": "Far", "lastName": tag, "email": unique_email(),
                            "channel": channel}),
        )
        .await;
    let neighbour = app
        .create_user(json!({"firstName": "Near", "lastName": tag, "email": unique_email(),
                            "dob": "1991-02-03", "profileDetails": {"bio": "x"},
                            "externalIds": [{"id": "N1", "idType": "staff", "provider": "sunbird"}]}))
        .await;
    let me = app
        .create_user(
            json!({"firstName": "Me", "lastName": tag, "email": unique_email(),
                            "dob": "1992-03-04"}),
        )
        .await;
    let tenant_admin = app
        .create_user(json!({"firstName": "Boss", "email": unique_email(), "roles": ["ORG_ADMIN"]}))
        .await;
    app.wait_for_index().await;
    let search = |token: String| {
        let app = &app;
        let tag = tag.clone();
        async move {
            let reply = app
                .post(
                    "/v3/user/search",
                    json!({"filters": {"lastName": tag}}),
                    Some(&token),
                )
                .await;
            let content = reply.assert_ok()["response"]["content"].clone();
            let mut hits: Vec<serde_json::Value> = content.as_array().expect("content").clone();
            hits.sort_by_key(|hit| hit["firstName"].as_str().unwrap_or_default().to_string());
            hits
        }
    };
    // A member of the custodian tenant: only custodian users, the others as name cards.
    let hits = search(app.token_for(&me)).await;
    let names: Vec<&str> = hits
        .iter()
        .filter_map(|h| h["firstName"].as_str())
        .collect();
    assert_eq!(names, vec!["Me", "Near"], "no user of another tenant");
    let near = &hits[1];
    assert_eq!(near["id"], neighbour.as_str());
    for hidden in [
        "dob",
        "profileDetails",
        "externalIds",
        "email",
        "phone",
        "organisations",
    ] {
        assert!(
            near.get(hidden).is_none(),
            "{hidden} shown to a stranger: {near}"
        );
    }
    assert_eq!(hits[0]["dob"], "1992-03-04", "one's own hit is whole");
    // The tenant's administrator sees its users' profiles, but not their external ids.
    let hits = search(app.token_for(&tenant_admin)).await;
    let near = hits
        .iter()
        .find(|h| h["firstName"] == "Near")
        .expect("near");
    assert_eq!(near["dob"], "1991-02-03");
    assert!(near.get("externalIds").is_none());
    // An ADMIN finds everyone.
    let hits = search(app.admin_token.clone()).await;
    assert!(hits.iter().any(|h| h["id"] == elsewhere.as_str()));
    assert_eq!(hits.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn fields_org_name_names_each_hits_organisations() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Named", "email": email}))
        .await;
    app.wait_for_index().await;
    let request = json!({"filters": {"email": email}});
    let plain = app
        .post("/v3/user/search", request.clone(), Some(&app.admin_token))
        .await;
    let hit = &plain.assert_ok()["response"]["content"][0];
    assert_eq!(hit["id"], id.as_str());
    assert!(
        hit["organisations"][0].get("orgName").is_none(),
        "only when asked for: {hit}"
    );
    let named = app
        .post(
            "/v3/user/search?fields=orgName",
            request,
            Some(&app.admin_token),
        )
        .await;
    let hit = &named.assert_ok()["response"]["content"][0];
    assert_eq!(hit["rootOrgName"], "Sunbird Custodian Organisation");
    let organisations = hit["organisations"].as_array().expect("organisations");
    assert!(!organisations.is_empty());
    for membership in organisations {
        assert_eq!(membership["orgName"], "Sunbird Custodian Organisation");
    }
    app.stop().await;
}

#[tokio::test]
async fn fuzzy_matches_a_misspelt_name_as_elasticsearch_auto_fuzziness_does() {
    let app = TestApp::spawn().await;
    let last = format!("Q{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let id = app
        .create_user(json!({"firstName": "Lakshmi", "lastName": last, "email": unique_email()}))
        .await;
    app.wait_for_index().await;
    let search = |request: serde_json::Value| {
        let app = &app;
        async move {
            app.post("/v3/user/search", request, Some(&app.admin_token))
                .await
                .assert_ok()["response"]
                .clone()
        }
    };
    let found =
        search(json!({"filters": {"lastName": last}, "fuzzy": {"firstName": "Laksmhi"}})).await;
    assert_eq!(found["count"], 1, "{found}");
    assert_eq!(found["content"][0]["id"], id.as_str());
    let missed =
        search(json!({"filters": {"lastName": last}, "fuzzy": {"firstName": "Lkxsmhi"}})).await;
    assert_eq!(missed["count"], 0, "three edits: {missed}");
    app.post(
        "/v3/user/search",
        json!({"filters": {}, "fuzzy": {"firstName": 7}}),
        Some(&app.admin_token),
    )
    .await
    .assert_error(
        400,
        "UOS_USRSER0003",
        "Data type of fuzzy.firstName should be String.",
    );
    app.stop().await;
}
