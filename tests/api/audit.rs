//! The audit trail end to end: sensitive operations through the API land in the hash chain,
//! and `userorg audit verify` finds a changed and a removed entry.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use userorg::storage::{Expect, Table, Transaction};

use crate::helpers::{TestApp, unique_email};

fn verify(data_dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_userorg"))
        .args(["audit", "verify"])
        .env("USERORG__DATA_DIR", data_dir)
        .envs(crate::helpers::engine_env(data_dir))
        .env("RUST_LOG", "warn")
        .output()
        .expect("audit verify runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
    )
}

fn entry_key(sequence: u64) -> String {
    userorg::storage::compose_key(&["e", &format!("{sequence:020}")])
}

#[tokio::test]
async fn sensitive_operations_are_chained_and_tampering_is_found() {
    if crate::helpers::skip_with_an_in_process_store("it runs `userorg audit verify`") {
        return;
    }
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let id = app
        .create_user(
            json!({"firstName": "Audited", "email": unique_email(), "roles": ["ORG_ADMIN"]}),
        )
        .await;
    app.post("/v1/user/block", json!({"userId": id}), admin)
        .await
        .assert_ok();
    app.post("/v1/user/unblock", json!({"userId": id}), admin)
        .await
        .assert_ok();
    app.post(
        "/v1/system/settings/set",
        json!({"id": "auditProbe", "field": "auditProbe", "value": "1"}),
        admin,
    )
    .await
    .assert_ok();
    let app_admin = app.admin_id.clone();
    let dir = app.stop_keeping_data().await;
    let data_dir = dir.path().join("data");
    assert_eq!(
        verify(&data_dir),
        (true, "audit trail intact: 5 entries".to_string()),
        "bootstrap grant, grant, block, unblock, setting"
    );

    {
        let store = crate::helpers::open_stored(&data_dir).await;
        let first = store
            .get(Table::Audit, &entry_key(1))
            .await
            .expect("get")
            .expect("the bootstrap grant");
        assert_eq!(
            (
                &first.doc["actor"],
                &first.doc["action"],
                &first.doc["target"],
                &first.doc["details"]
            ),
            (
                &json!("bootstrap"),
                &json!("role.grant"),
                &json!(app_admin),
                &json!({"roles": ["ADMIN"]})
            ),
            "the first ADMIN's grant is the trail's first entry"
        );
        let second = store
            .get(Table::Audit, &entry_key(3))
            .await
            .expect("get")
            .expect("the block entry");
        assert_eq!(second.doc["action"], "user.block");
        assert_eq!(second.doc["target"], id.as_str());
        let mut doc = second.doc;
        doc["target"] = json!("someone-else");
        let mut transaction = Transaction::default();
        transaction.put(Table::Audit, entry_key(3), doc, Expect::Any);
        store.commit(transaction).await.expect("tampered");
    }
    let (ok, printed) = verify(&data_dir);
    assert!(!ok, "a changed entry fails verification");
    assert_eq!(
        printed,
        "audit trail broken at entry 3: the entry was changed"
    );

    {
        let store = crate::helpers::open_stored(&data_dir).await;
        let mut transaction = Transaction::default();
        transaction.delete(Table::Audit, entry_key(3), Expect::Any);
        store.commit(transaction).await.expect("removed");
    }
    let (ok, printed) = verify(&data_dir);
    assert!(!ok, "a removed entry fails verification");
    assert_eq!(
        printed,
        "audit trail broken at entry 3: an entry is missing before this one"
    );
}

/// A block and its audit entry commit together or not at all: while every commit that writes
/// the audit table is refused, the block fails (503) and the user stays active; once commits
/// go through, the block lands with its entry.
#[tokio::test]
async fn a_status_change_never_commits_without_its_audit_entry() {
    if crate::helpers::skip_with_an_in_process_store("it runs `userorg audit verify`") {
        return;
    }
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let id = app
        .create_user(json!({"firstName": "Entry", "email": unique_email()}))
        .await;
    app.faults.refuse_commits_writing(&[Table::Audit]);
    app.post("/v1/user/block", json!({"userId": id}), admin)
        .await
        .assert_error(503, "UOS_USRBLOK0064", "SERVICE UNAVAILABLE");
    let read = app.get(&format!("/v1/user/read/{id}"), admin).await;
    assert_eq!(
        read.assert_ok()["response"]["status"],
        1,
        "the block committed without its audit entry"
    );
    app.faults.refuse_commits_writing(&[]);
    app.post("/v1/user/block", json!({"userId": id}), admin)
        .await
        .assert_ok();
    let dir = app.stop_keeping_data().await;
    let data_dir = dir.path().join("data");
    assert_eq!(
        verify(&data_dir),
        (true, "audit trail intact: 2 entries".to_string()),
        "the bootstrap grant and exactly the block that committed are audited"
    );
}

/// The org status route is a PATCH; the other audited writes here are POSTs.
async fn send(app: &TestApp, path: &str, request: serde_json::Value) -> crate::helpers::Reply {
    let admin = Some(app.admin_token.as_str());
    if path == "/v1/org/status/update" {
        app.patch(path, request, admin).await
    } else {
        app.post(path, request, admin).await
    }
}

/// Every audited change an owner or the settings service makes commits with its entry or not at
/// all: with commits writing the audit table refused, each answers 503 and changes nothing;
/// afterwards the same requests succeed and the chain holds exactly their entries.
#[tokio::test]
async fn audited_changes_commit_with_their_entry_or_not_at_all() {
    if crate::helpers::skip_with_an_in_process_store("it runs `userorg audit verify`") {
        return;
    }
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let custodian = app
        .get("/v1/system/settings/get/custodianOrgId", None)
        .await
        .assert_ok()["response"]["value"]
        .as_str()
        .expect("custodian id")
        .to_string();
    let member = app
        .create_user(json!({"firstName": "Member", "email": unique_email()}))
        .await;
    let org = app
        .post(
            "/v1/org/create",
            json!({"orgName": "Audited School", "isTenant": false, "channel": "sunbird",
                   "organisationType": "school"}),
            admin,
        )
        .await
        .assert_ok()["organisationId"]
        .as_str()
        .expect("organisation id")
        .to_string();
    let granted_email = unique_email();
    let requests = [
        (
            "/v1/user/create",
            json!({"firstName": "Granted", "email": granted_email, "roles": ["ORG_ADMIN"]}),
        ),
        (
            "/v1/user/assign/role",
            json!({"userId": member, "organisationId": custodian, "roles": ["ORG_ADMIN"]}),
        ),
        (
            "/v1/system/settings/set",
            json!({"id": "auditProbe", "field": "auditProbe", "value": "1"}),
        ),
        (
            "/v1/org/status/update",
            json!({"organisationId": org, "status": 0}),
        ),
    ];
    app.faults.refuse_commits_writing(&[Table::Audit]);
    for (path, request) in &requests {
        let reply = send(&app, path, request.clone()).await;
        assert_eq!(reply.status.as_u16(), 503, "{path}: {}", reply.body);
    }
    app.faults.refuse_commits_writing(&[]);
    let read = app.get(&format!("/v5/user/read/{member}"), admin).await;
    let user = read.assert_ok()["response"].clone();
    assert!(
        user["roles"].as_array().expect("roles").is_empty(),
        "a role assignment committed without its entry: {user}"
    );
    app.get("/v1/system/settings/get/auditProbe", None)
        .await
        .assert_error(404, "UOS_SYSRED0013", "Requested {0} resource not found");
    for (path, request) in &requests {
        send(&app, path, request.clone()).await.assert_ok();
    }
    let dir = app.stop_keeping_data().await;
    assert_eq!(
        verify(&dir.path().join("data")),
        (true, "audit trail intact: 5 entries".to_string()),
        "exactly the four changes that committed are audited (a user created twice would be refused)"
    );
}

/// Audited changes of different users run on different owners at once; they all take the one
/// head of the trail, so most of them conflict and append again after the winner: all succeed
/// and the chain holds one entry each.
#[tokio::test]
async fn concurrent_audited_changes_all_land_in_one_chain() {
    if crate::helpers::skip_with_an_in_process_store("it runs `userorg audit verify`") {
        return;
    }
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(
            app.create_user(json!({"firstName": format!("Busy{n}"), "email": unique_email()}))
                .await,
        );
    }
    let blocks = ids.iter().map(|id| {
        let (client, url) = (app.client.clone(), format!("{}/v1/user/block", app.public));
        let (token, body) = (app.admin_token.clone(), json!({"request": {"userId": id}}));
        async move {
            client
                .post(url)
                .header("x-authenticated-user-token", token)
                .json(&body)
                .send()
                .await
                .expect("sent")
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(blocks).await;
    assert_eq!(statuses, vec![200; 8]);
    let dir = app.stop_keeping_data().await;
    assert_eq!(
        verify(&dir.path().join("data")),
        (true, "audit trail intact: 9 entries".to_string())
    );
}
