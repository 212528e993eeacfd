//! Ownership transfer: Sunbird's request checks and messages, who may ask, the audit entry,
//! and one `user.ownership.transfer` domain event per object on the event stream.

use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, unique_email};

struct Parties {
    custodian: String,
    admin: String,
    admin_token: String,
    from: String,
    to: String,
}

async fn parties(app: &TestApp) -> Parties {
    let custodian = app.setting("custodianOrgId").await;
    let admin = app
        .create_user(json!({"firstName": "Admin", "email": unique_email(), "roles": ["ORG_ADMIN"]}))
        .await;
    let from = app
        .create_user(json!({"firstName": "Leaving", "email": unique_email()}))
        .await;
    let to = app
        .create_user(json!({"firstName": "Taking", "lastName": "Over", "email": unique_email()}))
        .await;
    Parties {
        custodian,
        admin_token: app.token_for(&admin),
        admin,
        from,
        to,
    }
}

fn request(p: &Parties) -> Value {
    json!({
        "organisationId": p.custodian,
        "context": {"reason": "leaving"},
        "actionBy": {"userId": p.admin},
        "fromUser": {"userId": p.from, "roles": [
            {"role": "CONTENT_CREATOR", "scope": [{"organisationId": p.custodian}]},
            {"role": "BOOK_CREATOR", "scope": [{"organisationId": "elsewhere"}]}]},
        "toUser": {"userId": p.to, "roles": ["CONTENT_CREATOR"]},
        "objects": [{"objectType": "Content", "objectId": "do_1"},
                    {"objectType": "Course", "objectId": "do_2"}],
    })
}

async fn transfer(app: &TestApp, token: &str, request: Value) -> Reply {
    app.post("/v1/user/ownership/transfer", request, Some(token))
        .await
}

#[tokio::test]
async fn a_transfer_is_audited_and_emitted_once_per_object() {
    let Some(url) = userorg::test_tiers::redis() else {
        return;
    };
    let stream = format!("userorg-test:events:{}", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(&[
        ("USERORG__EVENTS__REDIS_STREAM", &stream),
        ("USERORG__EVENTS__REDIS_URL", &url),
    ])
    .await;
    let p = parties(&app).await;
    let reply = transfer(&app, &p.admin_token, request(&p)).await;
    assert_eq!(
        reply.assert_ok()["status"],
        "Ownership transfer process is submitted successfully!"
    );
    let events = crate::events::entries_matching(&url, &stream, 2, |entry| {
        crate::events::field(entry, "event") == "user.ownership.transfer"
    })
    .await;
    assert_eq!(events.len(), 2);
    let data: Vec<Value> = events
        .iter()
        .map(|entry| serde_json::from_str(crate::events::field(entry, "data")).expect("json"))
        .collect();
    let mut assets: Vec<&str> = data
        .iter()
        .map(|d| {
            d["assetInformation"]["objectId"]
                .as_str()
                .expect("objectId")
        })
        .collect();
    assets.sort();
    assert_eq!(assets, ["do_1", "do_2"]);
    let first = &data[0];
    assert_eq!(first["action"], "ownership-transfer");
    assert_eq!(first["organisationId"], p.custodian.as_str());
    assert_eq!(first["context"], json!({"reason": "leaving"}));
    assert_eq!(first["actionBy"]["userId"], p.admin.as_str());
    assert_eq!(
        first["fromUserProfile"],
        json!({"userId": p.from, "roles": ["CONTENT_CREATOR"]}),
        "only the roles scoped to the organisation"
    );
    assert_eq!(first["toUserProfile"]["firstName"], "Taking");
    assert_eq!(first["toUserProfile"]["lastName"], "Over");
    assert_eq!(crate::events::field(&events[0], "id"), p.from);

    // The audit trail names the transfer.
    let rows = app
        .stored()
        .scan(userorg::storage::Table::Audit, "", None, 1_000)
        .await
        .expect("audit");
    assert!(
        rows.iter()
            .any(|row| row.doc.to_string().contains("user.ownership.transfer")),
        "no audit entry"
    );
}

#[tokio::test]
async fn transfer_requests_follow_sunbirds_rules() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let bad = |mutate: &dyn Fn(&mut Value)| {
        let mut body = request(&p);
        mutate(&mut body);
        body
    };
    let expect_400 = |reply: Reply, message: &str| {
        reply.assert_error(400, "UOS_UOWNTRANS0028", message);
    };
    expect_400(
        transfer(
            &app,
            &p.admin_token,
            bad(&|b| {
                b.as_object_mut().expect("o").remove("organisationId");
            }),
        )
        .await,
        "Organization ID is mandatory in the request.",
    );
    expect_400(
        transfer(
            &app,
            &p.admin_token,
            bad(&|b| b["organisationId"] = json!("nope")),
        )
        .await,
        "Organization with ID nope does not exist.",
    );
    for key in ["actionBy", "fromUser", "toUser"] {
        expect_400(
            transfer(
                &app,
                &p.admin_token,
                bad(&|b| {
                    b.as_object_mut().expect("o").remove(key);
                }),
            )
            .await,
            &format!("{key} key is not present in the data."),
        );
        expect_400(
            transfer(
                &app,
                &p.admin_token,
                bad(&|b| b[key]["userId"] = json!("ghost")),
            )
            .await,
            &format!("given user id under {key} is not present or blank"),
        );
    }
    expect_400(
        transfer(
            &app,
            &p.admin_token,
            bad(&|b| {
                b["toUser"].as_object_mut().expect("o").remove("roles");
            }),
        )
        .await,
        "Roles key is not present for toUser",
    );
    expect_400(
        transfer(
            &app,
            &p.admin_token,
            bad(&|b| b["fromUser"]["roles"] = json!([])),
        )
        .await,
        "Roles are empty in fromUser details.",
    );
    transfer(
        &app,
        &p.admin_token,
        bad(&|b| b["fromUser"]["roles"] = json!("CREATOR")),
    )
    .await
    .assert_error(
        400,
        "UOS_UOWNTRANS0003",
        "Data type of roles should be List.",
    );
    // actionBy must hold ORG_ADMIN; the caller must administer the tenant.
    transfer(
        &app,
        &p.admin_token,
        bad(&|b| b["actionBy"]["userId"] = json!(p.to)),
    )
    .await
    .assert_error(
        400,
        "UOS_UOWNTRANS0084",
        "User is restricted from transfering the ownership based on roles!",
    );
    transfer(&app, &app.token_for(&p.from), request(&p))
        .await
        .assert_error(
            403,
            "UOS_UOWNTRANS0071",
            "You are forbidden from accessing specified resource.",
        );
    app.post("/v1/user/ownership/transfer", request(&p), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
}
