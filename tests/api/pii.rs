//! PII at rest in the search index, read through the index's own reader (not a byte grep, which
//! compressed stores would hide from), after a create, an update that moves contacts, and
//! recovery contacts; facets on sealed or tokenised fields never list ciphertexts or tokens.

use serde_json::{Value, json};

use userorg::search::IndexName;

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
