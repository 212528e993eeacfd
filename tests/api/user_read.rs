use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email, unique_phone};

#[tokio::test]
async fn create_then_read_at_once_returns_the_user_masked() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let phone = "9876543210".to_string();
    let id = app
        .create_user(json!({"firstName": "Asha", "lastName": "Rao", "email": email, "phone": phone, "dob": "1990", "gender": "female"}))
        .await;
    let reply = app
        .get(&format!("/v1/user/read/{id}"), Some(&app.admin_token))
        .await;
    let user = reply.assert_ok()["response"].clone();
    assert_eq!(reply.body["id"], format!("api.user.read.{id}"));
    assert_eq!(user["id"], id.as_str());
    assert_eq!(user["userId"], id.as_str());
    assert_eq!(user["identifier"], id.as_str());
    assert_eq!(user["firstName"], "Asha");
    assert_eq!(user["lastName"], "Rao");
    assert_eq!(user["gender"], "female");
    let local = email.split('@').next().expect("local");
    let masked = format!(
        "{}{}@example.test",
        &local[..2],
        "*".repeat(local.len() - 2)
    );
    assert_eq!(user["email"], masked.as_str());
    assert_eq!(user["maskedEmail"], masked.as_str());
    assert_eq!(user["phone"], "******3210");
    assert_eq!(user["maskedPhone"], "******3210");
    assert_eq!(user["countryCode"], "+91");
    assert_eq!(user["dob"], "1990-12-31");
    assert_eq!(user["isMinor"], false);
    assert_eq!(user["status"], 1);
    assert_eq!(user["isDeleted"], false);
    assert_eq!(user["channel"], "sunbird");
    assert_eq!(user["rootOrg"]["channel"], "sunbird");
    assert_eq!(user["rootOrg"]["hashTagId"], user["rootOrgId"]);
    assert_eq!(
        user["organisations"][0]["organisationId"],
        user["rootOrgId"]
    );
    assert_eq!(user["organisations"][0]["isSSO"], true);
    assert_eq!(user["tncLatestVersion"], "v1");
    assert_eq!(user["promptTnC"], true);
    assert_eq!(user["stateValidated"], false);
    // v1-v3 shape: Sunbird's default keys and the user type fields.
    for key in [
        "avatar",
        "lastLoginTime",
        "profileSummary",
        "userType",
        "userSubType",
    ] {
        assert!(user.get(key).is_some(), "{key} present");
    }
    assert_eq!(user["locationIds"], json!([]));
    for hidden in ["passwordHash", "_index", "encEmail", "encPhone", "loginId"] {
        assert!(
            user.get(hidden).is_none() || user[hidden].is_null(),
            "{hidden} hidden"
        );
    }
    assert!(!reply.body.to_string().contains(&email));
    assert!(!reply.body.to_string().contains("9876543210"));
    app.stop().await;
}

#[tokio::test]
async fn every_read_version_is_served() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({"firstName": "V", "email": unique_email()}))
        .await;
    for version in ["v1", "v2", "v3", "v4", "v5"] {
        let reply = app
            .get(
                &format!("/{version}/user/read/{id}"),
                Some(&app.admin_token),
            )
            .await;
        let user = reply.assert_ok()["response"].clone();
        assert_eq!(reply.body["ver"], version);
        assert_eq!(user["id"], id.as_str());
        match version {
            "v4" | "v5" => {
                assert!(user.get("userType").is_none(), "{version}");
                assert!(user.get("locationIds").is_none(), "{version}");
            }
            _ => assert!(user.get("userType").is_some(), "{version}"),
        }
        assert_eq!(user.get("roles").is_some(), version == "v5", "{version}");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_deleted_users_are_reported() {
    let app = TestApp::spawn().await;
    let reply = app
        .get(
            "/v1/user/read/00000000-0000-0000-0000-000000000000",
            Some(&app.admin_token),
        )
        .await;
    reply.assert_error(404, "UOS_USRRED0013", "Requested user resource not found");
    assert_eq!(reply.body["responseCode"], "RESOURCE_NOT_FOUND");

    let id = app
        .create_user(json!({"firstName": "Gone", "email": unique_email()}))
        .await;
    let token = app.token_for(&id);
    app.post("/v1/user/delete", json!({"userId": id}), Some(&token))
        .await
        .assert_ok();
    app.get(&format!("/v1/user/read/{id}"), Some(&app.admin_token))
        .await
        .assert_error(400, "UOS_USRRED0006", "User account has been blocked .");
    app.stop().await;
}

#[tokio::test]
async fn self_reads_show_external_ids_and_private_reads_show_ciphertext() {
    let app = TestApp::spawn().await;
    let id = app
        .create_user(json!({
            "firstName": "Ext", "email": unique_email(), "phone": unique_phone(),
            "externalIds": [{"id": "T-42", "idType": "state", "provider": "state"}]
        }))
        .await;
    let own = app
        .get(&format!("/v1/user/read/{id}"), Some(&app.token_for(&id)))
        .await;
    assert_eq!(
        own.assert_ok()["response"]["externalIds"],
        json!([{"id": "T-42", "idType": "state", "provider": "state"}])
    );
    let by_admin = app
        .get(&format!("/v1/user/read/{id}"), Some(&app.admin_token))
        .await;
    assert!(
        by_admin.assert_ok()["response"]
            .get("externalIds")
            .is_none()
    );
    let with_fields = app
        .get(
            &format!("/v1/user/read/{id}?fields=organisations,topics"),
            Some(&app.token_for(&id)),
        )
        .await;
    let user = with_fields.assert_ok()["response"].clone();
    assert!(user.get("externalIds").is_none());
    assert_eq!(user["lastLoginTime"], 0);
    let private = app
        .get_internal(&format!("/private/user/v1/read/{id}"))
        .await;
    let user = private.assert_ok()["response"].clone();
    for field in ["encEmail", "encPhone"] {
        let sealed = user[field].as_str().expect(field);
        assert!(sealed.starts_with("v2."), "{field} is ciphertext");
    }
    assert_ne!(user["email"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn a_user_is_read_by_an_external_id_of_a_provider() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let external = format!("EXT-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let id = app
        .create_user(json!({"firstName": "Ext", "email": unique_email(),
            "externalIds": [{"id": external, "idType": "National", "provider": "sunbird"}]}))
        .await;
    let path = |query: &str| format!("/v5/user/read/{external}?{query}");
    // Case does not matter, as for the uniqueness of external ids.
    let found = app
        .get(&path("provider=SUNBIRD&idType=national"), admin)
        .await;
    assert_eq!(found.assert_ok()["response"]["id"], id.as_str());
    // The user themself.
    let own = app
        .get(
            &path("provider=sunbird&idType=National"),
            Some(&app.token_for(&id)),
        )
        .await;
    assert_eq!(own.assert_ok()["response"]["id"], id.as_str());
    // Their external ids: on their own profile, also when fields ask for them, never to others.
    let own_token = app.token_for(&id);
    for query in ["", "?fields=externalIds,topic"] {
        let reply = app
            .get(&format!("/v5/user/read/{id}{query}"), Some(&own_token))
            .await;
        assert_eq!(
            reply.assert_ok()["response"]["externalIds"][0]["id"],
            external.as_str(),
            "{query}"
        );
    }
    let topic_only = app
        .get(
            &format!("/v5/user/read/{id}?fields=topic"),
            Some(&own_token),
        )
        .await;
    assert!(
        topic_only.assert_ok()["response"]
            .get("externalIds")
            .is_none()
    );
    let by_admin = app
        .get(&format!("/v5/user/read/{id}?fields=externalIds"), admin)
        .await;
    assert!(
        by_admin.assert_ok()["response"]
            .get("externalIds")
            .is_none()
    );
    app.get(&path("provider=sunbird"), admin)
        .await
        .assert_error(
            400,
            "UOS_USRRED0030",
            "Mandatory parameter idType is missing.",
        );
    app.get("/v5/user/read/nope?provider=sunbird&idType=National", admin)
        .await
        .assert_error(
            404,
            "UOS_USRRED0013",
            "External ID (id: nope, idType: National, provider: sunbird) not found for given user.",
        );
    // A stranger gets 403 whether the external id exists or not.
    let stranger = app
        .create_user(json!({"firstName": "Other", "email": unique_email()}))
        .await;
    let stranger = app.token_for(&stranger);
    for target in [external.as_str(), "nope"] {
        app.get(
            &format!("/v5/user/read/{target}?provider=sunbird&idType=National"),
            Some(&stranger),
        )
        .await
        .assert_error(
            403,
            "UOS_USRRED0071",
            "You are forbidden from accessing specified resource.",
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn fields_organisations_and_locations_detail_the_profile() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let code = format!("ST{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let state = app
        .post(
            "/v1/location/create",
            json!({"name": "Karnataka", "code": code, "type": "state"}),
            admin,
        )
        .await
        .assert_ok()["id"]
        .as_str()
        .expect("id")
        .to_string();
    let id = app
        .create_user(json!({"firstName": "Placed", "email": unique_email(),
                            "profileLocation": [{"id": state, "type": "state"}]}))
        .await;
    let plain = app.get(&format!("/v5/user/read/{id}"), admin).await;
    let plain = plain.assert_ok()["response"].clone();
    assert!(plain.get("userLocations").is_none());
    assert!(plain["organisations"][0].get("orgName").is_none());
    let detailed = app
        .get(
            &format!("/v5/user/read/{id}?fields=organisations,locations"),
            admin,
        )
        .await;
    let profile = &detailed.assert_ok()["response"];
    assert_eq!(
        profile["userLocations"],
        json!([{"code": code, "name": "Karnataka", "type": "state", "id": state}])
    );
    assert!(profile.get("profileLocation").is_none(), "{profile}");
    let membership = &profile["organisations"][0];
    assert_eq!(membership["orgName"], "Sunbird Custodian Organisation");
    assert_eq!(membership["channel"], "sunbird");
    assert_eq!(membership["hashTagId"], membership["organisationId"]);
    assert_eq!(membership["isSchool"], false);
    assert_eq!(membership["locations"], json!([]));
    // fields=roles: the role catalogue as {id, name}.
    let roles = app
        .get(&format!("/v5/user/read/{id}?fields=roles"), admin)
        .await;
    let list = roles.assert_ok()["response"]["roleList"]
        .as_array()
        .expect("roleList")
        .clone();
    assert!(
        list.iter()
            .any(|role| role["id"] == "ORG_ADMIN" && role["name"].is_string()),
        "{list:?}"
    );
    assert!(
        list.iter()
            .all(|role| role.as_object().map(|r| r.len()) == Some(2))
    );
    app.stop().await;
}
