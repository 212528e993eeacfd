//! `userorg import users`: a load straight into the store with the server stopped, the
//! create route's checks on every row, rejected rows with their reasons, the index rebuilt,
//! and a run aborted after a batch resumed without a row written twice.

use std::process::Command;

use serde_json::json;

use crate::helpers::TestApp;

/// Runs `userorg import users <file>` on `data_dir`; its standard output.
fn import(
    data_dir: &std::path::Path,
    file: &std::path::Path,
    env: &[(&str, &str)],
) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_userorg"))
        .args(["import", "users"])
        .arg(file)
        .args(["--batch", "10"])
        .env("USERORG__DATA_DIR", data_dir)
        .envs(crate::helpers::engine_env(data_dir))
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("the CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn an_import_checks_every_row_and_resumes_after_an_abort_without_duplicates() {
    if crate::helpers::skip_with_an_in_process_store("it runs `userorg import`") {
        return;
    }
    let app = TestApp::spawn().await;
    let taken = crate::helpers::unique_email();
    app.create_user(json!({"firstName": "Taken", "email": taken}))
        .await;
    let dir = app.stop_keeping_data().await;
    let data_dir = dir.path().join("data");
    let batch = format!("imp{}", uuid::Uuid::new_v4().simple());
    let mut lines: Vec<String> = (0..95)
        .map(|i| {
            json!({"firstName": batch, "lastName": format!("N{i}"),
                "email": format!("{batch}{i}@import.test")})
            .to_string()
        })
        .collect();
    lines.insert(10, json!({"firstName": batch, "email": taken}).to_string());
    lines.insert(
        20,
        json!({"firstName": batch, "email": "not-an-email"}).to_string(),
    );
    lines.insert(
        30,
        json!({"email": format!("{batch}x@import.test")}).to_string(),
    );
    lines.insert(
        40,
        json!({"firstName": batch, "email": format!("{batch}3@import.test")}).to_string(),
    );
    lines.insert(
        50,
        json!({"firstName": batch, "password": "Secret@123"}).to_string(),
    );
    let file = dir.path().join("users.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("input");

    // Aborted after its third batch commit, as a kill would stop it.
    let (ok, _) = import(&data_dir, &file, &[("USERORG_FAILPOINT", "import:3")]);
    assert!(!ok, "the failure point aborts the import");
    let (ok, out) = import(&data_dir, &file, &[]);
    assert!(ok, "{out}");
    // 95 good rows and 5 bad ones over both runs; the second went on after the 32 lines the
    // first committed (three batches of ten good rows, with two bad rows among them).
    assert!(
        out.contains("imported 95 users, rejected 5, skipped 32 done before"),
        "{out}"
    );
    // Once done, a run again writes nothing.
    let (ok, again) = import(&data_dir, &file, &[]);
    assert!(ok && again.contains("skipped 100 done before"), "{again}");

    let rejected = std::fs::read_to_string(dir.path().join("users.jsonl.rejected.jsonl"))
        .expect("rejected rows");
    let reasons: Vec<serde_json::Value> = rejected
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    let reason_of = |line: u64| {
        reasons
            .iter()
            .find(|r| r["line"] == line)
            .map(|r| r["reason"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(reason_of(11).as_deref(), Some("email already exists"));
    assert_eq!(
        reason_of(21).as_deref(),
        Some("Invalid format for given email.")
    );
    assert_eq!(
        reason_of(31).as_deref(),
        Some("Mandatory parameter firstName is missing.")
    );
    assert_eq!(reason_of(41).as_deref(), Some("email already exists"));
    assert_eq!(
        reason_of(51).as_deref(),
        Some("passwords are not imported; the user sets one with a reset link")
    );

    // The server answers for the imported users at once, by id and by search.
    let app = TestApp::start_again(dir, &[]).await;
    let found = app
        .search_indexed(json!({"filters": {"firstName": batch}, "limit": 100}))
        .await;
    let result = found.assert_ok();
    assert_eq!(result["response"]["count"], 95, "each good row once");
    let user = result["response"]["content"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let read = app
        .get(&format!("/v5/user/read/{user}"), Some(&app.admin_token))
        .await;
    assert_eq!(read.assert_ok()["response"]["firstName"], batch.as_str());
    // PII sealed like any other user's: no imported address in clear in the data dir.
    assert!(
        crate::durability::files_containing(&app.data_dir(), &format!("{batch}7@import.test"))
            .is_empty()
    );
}
