//! Account merge (R25, R26): Sunbird's two-token rule and checks, the saga's effects on both
//! accounts, two racing merges of one mergee, and `kill -9` after every step of the saga.

use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, unique_email};
use crate::signin::{PASSWORD, password_grant, refresh};

pub(crate) async fn merge(
    app: &TestApp,
    merger_token: Option<&str>,
    source_token: Option<&str>,
    request: Value,
) -> Reply {
    let mut call = app
        .client
        .patch(format!("{}/private/user/v1/account/merge", app.internal))
        .bearer_auth(&app.service_credential)
        .json(&json!({ "request": request }));
    if let Some(token) = merger_token {
        call = call.header("x-authenticated-user-token", token);
    }
    if let Some(token) = source_token {
        call = call.header("x-source-user-token", token);
    }
    let response = call.send().await.expect("sent");
    let status = response.status();
    let body = response.json().await.expect("json");
    Reply { status, body }
}

/// A merger in a tenant and a signed-in mergee of the custodian organisation:
/// (merger id, merger email, mergee id, mergee email, the mergee's refresh token).
async fn accounts(app: &TestApp) -> (String, String, String, String, String) {
    let channel = format!("merge{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    crate::orgs::create_tenant(app, &channel).await;
    let merger_email = unique_email();
    let merger = app
        .create_user(json!({"firstName": "Merger", "email": merger_email, "channel": channel}))
        .await;
    let mergee_email = unique_email();
    let mergee = app
        .create_user(json!({"firstName": "Mergee", "email": mergee_email, "password": PASSWORD}))
        .await;
    let answer = password_grant(app, &mergee_email, PASSWORD).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let tokens: Value = serde_json::from_str(&answer.text).expect("json");
    let refresh_token = tokens["refresh_token"].as_str().expect("rt").to_string();
    (merger, merger_email, mergee, mergee_email, refresh_token)
}

#[tokio::test]
async fn a_merge_frees_the_mergees_identifiers_ends_it_and_tells_the_merger() {
    let app = TestApp::spawn().await;
    let (merger, merger_email, mergee, mergee_email, refresh_token) = accounts(&app).await;
    let (merger_token, mergee_token) = (app.token_for(&merger), app.token_for(&mergee));
    let request = json!({"fromAccountId": mergee, "toAccountId": merger});
    let reply = merge(
        &app,
        Some(&merger_token),
        Some(&mergee_token),
        request.clone(),
    )
    .await;
    assert_eq!(reply.assert_ok(), &json!({"response": "SUCCESS"}));

    // Sunbird answers a read of the merged account as of a blocked one.
    app.get(&format!("/v1/user/read/{mergee}"), Some(&app.admin_token))
        .await
        .assert_error(400, "UOS_USRRED0006", "User account has been blocked .");
    let stored = app
        .stored()
        .get(userorg::storage::Table::User, &mergee)
        .await
        .expect("read")
        .expect("the row stays")
        .doc;
    assert_eq!(stored["status"], 0, "{stored}");
    assert_eq!(stored["isDeleted"], true, "{stored}");
    assert_eq!(stored["email"], Value::Null, "{stored}");
    assert_eq!(stored["userName"], Value::Null, "{stored}");
    assert!(
        stored["prevUsedEmail"]
            .as_str()
            .is_some_and(|sealed| !sealed.contains('@')),
        "{stored}"
    );
    assert_eq!(stored["mergedTo"], merger.as_str(), "{stored}");
    // The mergee's email is free again, its tokens and session are refused.
    app.create_user(json!({"firstName": "Again", "email": mergee_email}))
        .await;
    app.get(&format!("/v1/user/read/{mergee}"), Some(&mergee_token))
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    assert_eq!(refresh(&app, &refresh_token).await.status, 400);
    assert_eq!(
        password_grant(&app, &mergee_email, PASSWORD).await.status,
        401
    );
    // The audit trail has the merge once, by the merger, of the mergee.
    let entries = app
        .stored()
        .scan(userorg::storage::Table::Audit, "", None, 10_000)
        .await
        .expect("scan");
    let merges: Vec<&Value> = entries
        .iter()
        .map(|row| &row.doc)
        .filter(|doc| doc["action"] == "user.merge")
        .collect();
    assert_eq!(merges.len(), 1, "{merges:?}");
    assert_eq!(merges[0]["actor"], merger.as_str());
    assert_eq!(merges[0]["target"], mergee.as_str());
    // The merger is told once.
    let notices = app.mails_to(&merger_email).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].subject, "Sunbird: your accounts were merged");
    // A replay: the mergee's token no longer counts.
    merge(&app, Some(&merger_token), Some(&mergee_token), request)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    app.stop().await;
}

#[tokio::test]
async fn the_two_tokens_and_the_organisations_are_checked_as_sunbird_does() {
    let app = TestApp::spawn().await;
    let (merger, _, mergee, _, _) = accounts(&app).await;
    let (merger_token, mergee_token) = (app.token_for(&merger), app.token_for(&mergee));
    let request = json!({"fromAccountId": mergee, "toAccountId": merger});
    let unauthorized =
        |reply: Reply| reply.assert_error(401, "UOS_0070", "You are not authorized.");
    unauthorized(merge(&app, Some(&merger_token), None, request.clone()).await);
    unauthorized(merge(&app, None, Some(&mergee_token), request.clone()).await);
    unauthorized(
        merge(
            &app,
            Some(&merger_token),
            Some(&merger_token),
            request.clone(),
        )
        .await,
    );
    unauthorized(
        merge(
            &app,
            Some(&mergee_token),
            Some(&mergee_token),
            request.clone(),
        )
        .await,
    );
    // The mergee must be of the custodian organisation, the merger must not.
    let (other_merger, _, _, _, _) = accounts(&app).await;
    let swapped = json!({"fromAccountId": merger, "toAccountId": other_merger});
    merge(
        &app,
        Some(&app.token_for(&other_merger)),
        Some(&merger_token),
        swapped,
    )
    .await
    .assert_error(
        400,
        "UOS_USRMRG0045",
        "Mismatch of given parameters: merger and mergee rootOrgId.",
    );
    merge(
        &app,
        Some(&merger_token),
        Some(&mergee_token),
        json!({"toAccountId": merger}),
    )
    .await
    .assert_error(
        400,
        "UOS_USRMRG0030",
        "Mandatory parameter fromAccountId is missing.",
    );
    // Nothing changed.
    let read = app
        .get(&format!("/v1/user/read/{mergee}"), Some(&app.admin_token))
        .await;
    assert_eq!(read.assert_ok()["response"]["status"], 1);
    app.stop().await;
}

#[tokio::test]
async fn of_two_concurrent_merges_of_one_mergee_one_wins() {
    let app = TestApp::spawn().await;
    let (first, first_email, mergee, _, _) = accounts(&app).await;
    let (second, second_email, _, _, _) = accounts(&app).await;
    let mergee_token = app.token_for(&mergee);
    let (first_token, second_token) = (app.token_for(&first), app.token_for(&second));
    let (a, b) = tokio::join!(
        merge(
            &app,
            Some(&first_token),
            Some(&mergee_token),
            json!({"fromAccountId": mergee, "toAccountId": first}),
        ),
        merge(
            &app,
            Some(&second_token),
            Some(&mergee_token),
            json!({"fromAccountId": mergee, "toAccountId": second}),
        ),
    );
    let replies = [&a, &b];
    let won: Vec<&&Reply> = replies
        .iter()
        .filter(|r| r.status.as_u16() == 200)
        .collect();
    assert_eq!(won.len(), 1, "{} / {}", a.body, b.body);
    let lost = replies
        .iter()
        .find(|r| r.status.as_u16() != 200)
        .expect("a loser");
    // The loser met the winner's lock (or, later, an inactive mergee's token).
    match lost.status.as_u16() {
        400 => assert_eq!(lost.err(), "UOS_USRMRG0023", "{}", lost.body),
        401 => assert_eq!(lost.err(), "UOS_0070", "{}", lost.body),
        other => panic!("unexpected {other}: {}", lost.body),
    }
    let notices = app.mails_to(&first_email).await.len() + app.mails_to(&second_email).await.len();
    assert_eq!(notices, 1, "one merge happened");
    app.stop().await;
}

fn token_for(data_dir: &std::path::Path, user_id: &str) -> String {
    let signer =
        userorg::auth::LocalSigner::ensure(data_dir, Some(&data_dir.join("keys").join("public")))
            .expect("signer");
    signer
        .mint(userorg::auth::MintClaims::new(
            user_id,
            "http://localhost:9000/auth/realms/sunbird",
            3600,
        ))
        .expect("token")
}

#[tokio::test]
async fn a_merge_killed_after_any_step_completes_exactly_once_after_restart() {
    if crate::helpers::skip_with_an_in_process_store("it kills the binary") {
        return;
    }
    use userorg::domain::merge::MergeStep;
    let client = reqwest::Client::new();
    for step in MergeStep::ALL.into_iter().skip(1) {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let point = format!("merge:{}", step.name());
        let server = crate::durability::Server::start_with(
            &data_dir,
            None,
            &[("USERORG_FAILPOINT", &point)],
        )
        .await;
        let admin = crate::durability::admin_token(&data_dir);
        let service = std::fs::read_to_string(data_dir.join("keys/service-credential"))
            .expect("service credential");
        let post = |base: String, path: &'static str, request: Value| {
            let call = client
                .post(format!("{base}{path}"))
                .header("x-authenticated-user-token", &admin)
                .json(&json!({ "request": request }));
            async move {
                call.send()
                    .await
                    .expect("sent")
                    .json::<Value>()
                    .await
                    .expect("json")
            }
        };
        let channel = format!("kill{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let created = post(
            server.base.clone(),
            "/v1/org/create",
            json!({"orgName": "Kill", "isTenant": true,
                "channel": channel, "organisationType": "board"}),
        )
        .await;
        assert_eq!(created["params"]["status"], "SUCCESS", "{created}");
        let (merger_email, mergee_email) = (unique_email(), unique_email());
        let mut ids = Vec::new();
        for request in [
            json!({"firstName": "Merger", "email": merger_email, "channel": channel}),
            json!({"firstName": "Mergee", "email": mergee_email}),
        ] {
            let reply = post(server.base.clone(), "/v1/user/create", request).await;
            ids.push(reply["result"]["userId"].as_str().expect("id").to_string());
        }
        let (merger, mergee) = (ids[0].clone(), ids[1].clone());
        let outcome = client
            .patch(format!("{}/private/user/v1/account/merge", server.internal))
            .bearer_auth(service.trim())
            .header("x-authenticated-user-token", token_for(&data_dir, &merger))
            .header("x-source-user-token", token_for(&data_dir, &mergee))
            .json(&json!({"request": {"fromAccountId": mergee, "toAccountId": merger}}))
            .send()
            .await;
        assert!(outcome.is_err(), "the process died after {}", step.name());
        server.kill_hard();

        let server = crate::durability::Server::start_with(&data_dir, None, &[]).await;
        let started = std::time::Instant::now();
        loop {
            let read: Value = client
                .get(format!("{}/v1/user/read/{mergee}", server.base))
                .header("x-authenticated-user-token", &admin)
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            let saga_done = std::fs::read_dir(data_dir.join("mail"))
                .map(|entries| entries.count())
                .unwrap_or(0)
                >= 1;
            // A merged account reads as a blocked one.
            if read["params"]["err"] == "UOS_USRRED0006" && saga_done {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the merge killed after {} did not complete: {read}",
                step.name()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The email is free again, exactly one notice went out, and the locks are gone (the
        // merger can take part in another merge).
        let again = post(
            server.base.clone(),
            "/v1/user/create",
            json!({"firstName": "New", "email": mergee_email}),
        )
        .await;
        assert_eq!(
            again["params"]["status"],
            "SUCCESS",
            "after {}: {again}",
            step.name()
        );
        let mails = crate::mail::read_dir(&data_dir.join("mail"));
        let notices: Vec<_> = mails
            .iter()
            .filter(|mail| mail.to == merger_email)
            .collect();
        assert_eq!(notices.len(), 1, "after {}", step.name());
        server.kill_hard();
        let store_dir = data_dir.clone();
        let locks = {
            let store =
                userorg::storage::redb_store::RedbStore::open(&store_dir.join("store.redb"));
            match store {
                Ok(store) => {
                    use userorg::storage::Store;
                    store
                        .scan(
                            userorg::storage::Table::Merge,
                            &userorg::storage::key_prefix("lock"),
                            None,
                            10,
                        )
                        .await
                        .expect("scan")
                        .len()
                }
                // Another store engine: the lock check is left to the in-process tests.
                Err(_) => 0,
            }
        };
        assert_eq!(locks, 0, "after {}: the locks are released", step.name());
    }
}

#[tokio::test]
async fn the_merge_is_published_as_a_user_merged_event() {
    let Some(url) = userorg::test_tiers::redis() else {
        return;
    };
    let stream = format!("userorg-test:events:{}", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(&[
        ("USERORG__EVENTS__REDIS_STREAM", &stream),
        ("USERORG__EVENTS__REDIS_URL", &url),
    ])
    .await;
    let (merger, _, mergee, _, _) = accounts(&app).await;
    merge(
        &app,
        Some(&app.token_for(&merger)),
        Some(&app.token_for(&mergee)),
        json!({"fromAccountId": mergee, "toAccountId": merger}),
    )
    .await
    .assert_ok();
    let merged = crate::events::entries_matching(&url, &stream, 1, |entry| {
        crate::events::field(entry, "event") == "user.merged"
    })
    .await;
    assert_eq!(merged.len(), 1);
    assert_eq!(crate::events::field(&merged[0], "id"), mergee);
    let data: Value =
        serde_json::from_str(crate::events::field(&merged[0], "data")).expect("json data");
    assert_eq!(
        data,
        json!({"event": "user.merged", "action": "merge-user-courses-and-cert",
               "fromAccountId": mergee, "toAccountId": merger, "iteration": 1})
    );
    app.stop().await;
}
