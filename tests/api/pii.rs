//! PII at rest in the search index, read through the index's own reader (not a byte grep, which
//! compressed stores would hide from), after a create, an update that moves contacts, and
//! recovery contacts; external ids (national ids in some deployments) sealed in the store, the
//! claims and the index, yet shown to their owner, unique and searchable by exact value; facets
//! on sealed or tokenised fields never list ciphertexts or tokens.

use serde_json::{Value, json};

use userorg::search::IndexName;
use userorg::storage::{ClaimKind, Table};

use crate::helpers::{TestApp, unique_email, unique_phone};

#[tokio::test]
async fn the_index_holds_no_plaintext_pii_after_create_update_and_recovery_contacts() {
    let app = TestApp::spawn().await;
    let (first_email, first_phone) = (unique_email(), unique_phone());
    let id = app
        .create_user(json!({
            "firstName": "Sealed", "email": first_email, "phone": first_phone,
            "recoveryEmail": unique_email(),
        }))
        .await;
    let (email, phone, recovery_email, recovery_phone) = (
        unique_email(),
        unique_phone(),
        unique_email(),
        unique_phone(),
    );
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "email": email, "phone": phone,
               "recoveryEmail": recovery_email, "recoveryPhone": recovery_phone}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    app.wait_for_index().await;

    let document = app
        .index
        .get(IndexName::User, &id)
        .await
        .expect("index answers")
        .expect("the user is indexed");
    let stored = Value::Object(document.source.clone()).to_string();
    for plain in [
        &first_email,
        &first_phone,
        &email,
        &phone,
        &recovery_email,
        &recovery_phone,
    ] {
        assert!(
            !stored.contains(plain.as_str()),
            "{plain} in clear in the index: {stored}"
        );
    }
    let tokens = &document.source["piiTokens"];
    for field in [
        "email",
        "phone",
        "recoveryEmail",
        "recoveryPhone",
        "userName",
    ] {
        assert!(tokens[field].is_string(), "token of {field}: {tokens}");
    }

    let found = app
        .search_indexed(json!({"filters": {"email": email}}))
        .await;
    assert_eq!(
        found.assert_ok()["response"]["count"],
        1,
        "the new email finds the user"
    );
    let old = app
        .search_indexed(json!({"filters": {"email": first_email}}))
        .await;
    assert_eq!(
        old.assert_ok()["response"]["count"],
        0,
        "the old email no longer does"
    );
    let local_part = email.split('@').next().expect("local part");
    let text = app
        .search_indexed(json!({"filters": {"id": id}, "query": local_part}))
        .await;
    assert_eq!(
        text.assert_ok()["response"]["count"],
        0,
        "free text never matches sealed values"
    );
    app.stop().await;
}

#[tokio::test]
async fn facets_on_sealed_or_tokenised_fields_list_nothing() {
    let app = TestApp::spawn().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    for _ in 0..2 {
        app.create_user(json!({"firstName": "Facet", "lastName": tag, "email": unique_email()}))
            .await;
    }
    let reply = app
        .search_indexed(json!({
            "filters": {"lastName": tag},
            "facets": [{"email": null}, {"piiTokens.email": null}, {"channel": null},
                       {"phone": null}, {"userName": null}],
        }))
        .await;
    let facets = reply.assert_ok()["response"]["facets"].clone();
    assert_eq!(
        facets,
        json!([
            {"name": "email", "values": []},
            {"name": "piiTokens.email", "values": []},
            {"name": "channel", "values": [{"name": "sunbird", "count": 2}]},
            {"name": "phone", "values": []},
            {"name": "userName", "values": []},
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn one_national_number_under_two_country_codes_is_two_phones() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let national = "2025550143";
    let indian = app
        .create_user(json!({"firstName": "Pune", "phone": national}))
        .await;
    // Before the blind index carried the country code this was "phone already exists".
    let american = app
        .create_user(json!({"firstName": "Washington", "phone": national, "countryCode": "+1"}))
        .await;
    assert_ne!(indian, american);
    // A second American with that number is refused.
    app.post(
        "/v1/user/create",
        json!({"firstName": "Again", "phone": national, "countryCode": "+1"}),
        admin,
    )
    .await
    .assert_error(400, "UOS_USRCRT0002", "phone already exists");
    // A national lookup means the default country code.
    let found = app
        .get(&format!("/v2/user/exists/phone/{national}"), admin)
        .await;
    found.assert_ok();
    assert_eq!(
        found.body["result"]["exists"],
        json!(true),
        "{}",
        found.body
    );
    app.wait_for_index().await;
    let ids_for = |phone: &'static str| {
        let app = &app;
        async move {
            let reply = app
                .post(
                    "/v3/user/search",
                    json!({"filters": {"phone": phone}, "fields": ["id"]}),
                    admin,
                )
                .await;
            reply.assert_ok();
            reply.body["result"]["response"]["content"]
                .as_array()
                .expect("content")
                .iter()
                .map(|hit| hit["id"].as_str().expect("id").to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids_for("2025550143").await, vec![indian.clone()]);
    assert_eq!(ids_for("+12025550143").await, vec![american.clone()]);
    assert_eq!(ids_for("+91 20 2555 0143").await, vec![indian]);
    app.stop().await;
}

#[tokio::test]
async fn external_ids_are_sealed_at_rest_yet_shown_to_their_owner_unique_and_searchable() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let national = json!({"id": "AADHAAR-9999-0001", "idType": "national", "provider": "sunbird"});
    let id = app
        .create_user(
            json!({"firstName": "Ext", "email": unique_email(), "externalIds": [national]}),
        )
        .await;
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "externalIds": [{"id": "STAFF-42", "idType": "staff", "provider": "sunbird", "operation": "add"}]}),
        admin,
    )
    .await
    .assert_ok();
    app.wait_for_index().await;

    // Nothing at rest holds an id in clear: not the row, not the claims, not the index.
    let row = app
        .stored()
        .get(Table::User, &id)
        .await
        .expect("store answers")
        .expect("the row");
    let document = app
        .index
        .get(IndexName::User, &id)
        .await
        .expect("index answers")
        .expect("the user is indexed");
    let indexed = Value::Object(document.source.clone()).to_string();
    for at_rest in [row.doc.to_string(), indexed] {
        for plain in [
            "AADHAAR-9999-0001",
            "aadhaar-9999-0001",
            "STAFF-42",
            "staff-42",
        ] {
            assert!(!at_rest.contains(plain), "{plain} in clear: {at_rest}");
        }
    }
    for clear_claim in [
        "aadhaar-9999-0001@national@sunbird",
        "staff-42@staff@sunbird",
    ] {
        assert_eq!(
            app.stored()
                .claim_owner(ClaimKind::ExternalId, clear_claim)
                .await
                .expect("claims answer"),
            None,
            "a claim in clear: {clear_claim}"
        );
    }

    // The owner sees them in clear, as given.
    let own = app
        .get(&format!("/v1/user/read/{id}"), Some(&app.token_for(&id)))
        .await;
    assert_eq!(
        own.assert_ok()["response"]["externalIds"],
        json!([national, {"id": "STAFF-42", "idType": "staff", "provider": "sunbird"}])
    );

    // Exact filters find the user by value, in any case; facets list nothing.
    for filter in [json!("aadhaar-9999-0001"), json!([" STAFF-42 ", "nobody"])] {
        let found = app
            .search_indexed(json!({"filters": {"id": id, "externalIds.id": filter}}))
            .await;
        assert_eq!(found.assert_ok()["response"]["count"], 1, "{filter}");
    }
    let missing = app
        .search_indexed(json!({"filters": {"id": id, "externalIds.id": "AADHAAR-9999-0002"}}))
        .await;
    assert_eq!(missing.assert_ok()["response"]["count"], 0);
    let facets = app
        .search_indexed(json!({"filters": {"id": id}, "facets": [{"externalIds.id": null}, {"externalIds.idToken": null}]}))
        .await;
    assert_eq!(
        facets.assert_ok()["response"]["facets"],
        json!([{"name": "externalIds.id", "values": []}, {"name": "externalIds.idToken", "values": []}]),
        "{}",
        facets.body
    );

    // Still unique: another user cannot take it, until its owner removes it.
    let squatter = json!({"firstName": "Other", "email": unique_email(), "externalIds": [{"id": "aadhaar-9999-0001", "idType": "National", "provider": "sunbird"}]});
    app.post("/v1/user/create", squatter.clone(), admin)
        .await
        .assert_error(
            400,
            "UOS_USRCRT0002",
            "externalId (id: aadhaar-9999-0001, idType: National, provider: sunbird) already exists",
        );
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "externalIds": [{"id": "AADHAAR-9999-0001", "idType": "national", "provider": "sunbird", "operation": "remove"}]}),
        admin,
    )
    .await
    .assert_ok();
    app.post("/v1/user/create", squatter, admin)
        .await
        .assert_ok();
    app.stop().await;
}
