//! Bulk user uploads: the checks of the file before anything is written, a thousand rows run
//! through the single-create rules (the failures carry the single create's messages), the
//! status with progress and results, formula escaping, the welcome messages, and two uploads
//! racing for one email.

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use userorg::actors::dispatcher;
use userorg::storage::Table;

use crate::helpers::{Reply, TestApp, unique_email, unique_phone};

const HEADER: &str = "NAME,EMAIL,MOBILE PHONE,USER_TYPE,ROLES,USER ID,SCHOOL ID";

async fn upload(app: &TestApp, csv: &str, token: Option<&str>) -> Reply {
    let form = Form::new().part(
        "file",
        Part::bytes(csv.as_bytes().to_vec())
            .file_name("users.csv")
            .mime_str("text/csv")
            .expect("mime"),
    );
    app.post_multipart("/v1/user/upload", form, token).await
}

/// Uploads `csv` as the admin and answers the process id.
async fn uploaded(app: &TestApp, csv: &str) -> String {
    upload(app, csv, Some(&app.admin_token)).await.assert_ok()["processId"]
        .as_str()
        .expect("processId")
        .to_string()
}

async fn status(app: &TestApp, id: &str) -> Value {
    let reply = app
        .get(&format!("/v1/upload/status/{id}"), Some(&app.admin_token))
        .await;
    reply.assert_ok()["response"][0].clone()
}

async fn stored_processes(app: &TestApp) -> usize {
    app.stored()
        .scan(Table::BulkProcess, "", None, 100)
        .await
        .expect("scan")
        .len()
}

fn line(name: &str, email: &str, phone: &str, roles: &str, user_id: &str, org: &str) -> String {
    format!("{name},{email},{phone},teacher,\"{roles}\",{user_id},{org}")
}

#[tokio::test]
async fn a_thousand_rows_with_ten_bad_ones_create_the_rest_and_report_each_failure() {
    let app = TestApp::spawn().await;
    let taken_email = unique_email();
    let taken_phone = unique_phone();
    app.create_user(json!({"firstName": "Taken", "email": taken_email, "phone": taken_phone}))
        .await;
    let batch = format!("bulk{}", uuid::Uuid::new_v4().simple());
    let repeated = unique_email();
    let unknown_user = uuid::Uuid::new_v4().to_string();
    // The bad rows, at scattered places: (line, the body a single create or update gets).
    let bad: Vec<(String, Value)> = vec![
        (
            line(&batch, "not-an-email", "", "PUBLIC", "", ""),
            json!({"firstName": batch, "email": "not-an-email", "userType": "teacher"}),
        ),
        (
            line(&batch, "", "12ab", "PUBLIC", "", ""),
            json!({"firstName": batch, "phone": "12ab", "userType": "teacher"}),
        ),
        (
            line(&batch, &taken_email, "", "PUBLIC", "", ""),
            json!({"firstName": batch, "email": taken_email, "userType": "teacher"}),
        ),
        (
            line(&batch, "", &taken_phone, "PUBLIC", "", ""),
            json!({"firstName": batch, "phone": taken_phone, "userType": "teacher"}),
        ),
        (
            line(&batch, &unique_email(), "", "PUBLIC, NO_SUCH_ROLE", "", ""),
            json!({"firstName": batch, "email": unique_email(), "userType": "teacher",
                "roles": ["NO_SUCH_ROLE"]}),
        ),
        (line("", &unique_email(), "", "PUBLIC", "", ""), Value::Null),
        (
            line(&batch, "", "", "PUBLIC", &unknown_user, ""),
            json!({"userId": unknown_user, "firstName": batch, "userType": "teacher"}),
        ),
        // The second row with this email loses to the first (a good row below).
        (
            line(&batch, &repeated, "", "PUBLIC", "", ""),
            json!({"firstName": batch, "email": repeated, "userType": "teacher"}),
        ),
        (
            line(&batch, &unique_email(), "", "PUBLIC", "", "no-such-org"),
            Value::Null,
        ),
        (
            line(&batch, "also@bad", "", "PUBLIC", "", ""),
            json!({"firstName": batch, "email": "also@bad", "userType": "teacher"}),
        ),
    ];
    let mut lines = vec![HEADER.to_string()];
    lines.push(line(&batch, &repeated, "", "PUBLIC", "", ""));
    let mut good = 1;
    let mut bad_rows = bad.iter();
    while lines.len() <= 1000 {
        if lines.len() % 97 == 0
            && let Some((row, _)) = bad_rows.next()
        {
            lines.push(row.clone());
            continue;
        }
        lines.push(line(&batch, &unique_email(), "", "PUBLIC", "", ""));
        good += 1;
    }
    assert_eq!(lines.len(), 1001);
    assert_eq!(good, 990, "990 good rows and the ten bad ones");
    let mut csv = lines.join("\n");

    // One row too many: refused before anything is written.
    let too_many = format!(
        "{csv}\n{}",
        line(&batch, &unique_email(), "", "PUBLIC", "", "")
    );
    upload(&app, &too_many, Some(&app.admin_token))
        .await
        .assert_error(
            400,
            "UOS_USRUPLD0007",
            "Maximum upload data size should be 1000",
        );
    assert_eq!(stored_processes(&app).await, 0);

    csv.push('\n');
    let id = uploaded(&app, &csv).await;
    app.run_uploads().await;
    let report = status(&app, &id).await;
    assert_eq!(report["status"], "COMPLETED", "{report}");
    assert_eq!(report["message"], "Operation is completed.");
    assert_eq!(report["objectType"], "user");
    assert_eq!(report["taskCount"], 1000);
    assert_eq!(report["successCount"], 990, "{}", report["failureResult"]);
    assert_eq!(report["failureCount"], 10);
    let failures = report["failureResult"].as_array().expect("failures");
    assert_eq!(failures.len(), 10);
    assert_eq!(report["successResult"].as_array().map(Vec::len), Some(990));

    // Each failure carries the message the single request gives for the same row.
    for (index, (_, single)) in bad.iter().enumerate() {
        let expected = match single {
            Value::Null if index == 5 => "Mandatory parameter firstName is missing.".to_string(),
            Value::Null => "Please provide valid organisationid.".to_string(),
            body if body.get("userId").is_some() => {
                let reply = app
                    .patch("/v1/user/update", body.clone(), Some(&app.admin_token))
                    .await;
                reply.body["params"]["errmsg"]
                    .as_str()
                    .expect("errmsg")
                    .to_string()
            }
            body => {
                let reply = app
                    .post("/v1/user/create", body.clone(), Some(&app.admin_token))
                    .await;
                assert_eq!(reply.status.as_u16(), 400, "{body}: {:?}", reply.body);
                reply.body["params"]["errmsg"]
                    .as_str()
                    .expect("errmsg")
                    .to_string()
            }
        };
        let failure = &failures[index];
        assert_eq!(
            failure["err_msg"],
            expected.as_str(),
            "row {index}: {failure}"
        );
        let operation = if index == 6 { "update" } else { "create" };
        assert_eq!(failure["operation"], operation, "{failure}");
    }

    // The created users read and search like any others.
    let created = &report["successResult"][5];
    assert_eq!(created["operation"], "create");
    let user = created["id"].as_str().expect("id");
    let read = app
        .get(&format!("/v5/user/read/{user}"), Some(&app.admin_token))
        .await;
    assert_eq!(read.assert_ok()["response"]["firstName"], batch.as_str());
    let found = app
        .search_indexed(json!({"filters": {"firstName": batch}, "limit": 1}))
        .await;
    assert_eq!(found.assert_ok()["response"]["count"], 990);

    // Each created user was sent one set-password link, in the create's commit.
    let welcomes = dispatcher::list(&app.stored(), None)
        .await
        .expect("list")
        .into_iter()
        .filter(|message| message.source == "welcome" && message.template == "welcome")
        .count();
    assert_eq!(welcomes, 990);
    let mails = app.mails_to(&repeated).await;
    assert_eq!(
        mails.len(),
        1,
        "the row that won the email was welcomed once"
    );
    // HTML-escaped in the body, as every link of the HTML templates.
    let body = mails[0].body.replace("&#x2f;", "/");
    assert!(
        body.contains("Set your password here") && body.contains("/password/reset/"),
        "{body}"
    );
}

#[tokio::test]
async fn a_bad_file_is_refused_before_anything_is_written() {
    let app = TestApp::spawn_with(&[("USERORG__BULK__MAX_BYTES", "1000000")]).await;
    let admin = Some(app.admin_token.as_str());
    for (csv, code, message) in [
        (
            "NAME,COLOUR\nAsha,blue\n".to_string(),
            "UOS_USRUPLD0020",
            "Invalid column: COLOUR. Valid columns are: NAME, firstName, MOBILE PHONE, phone, EMAIL, email, SCHOOL ID, orgId, USER_TYPE, userType, ROLES, roles, USER ID, userId, SCHOOL EXTERNAL ID, orgExternalId.",
        ),
        (
            "NAME,USER_TYPE\nAsha,teacher\n".to_string(),
            "UOS_USRUPLD0030",
            "Mandatory parameter roles is missing.",
        ),
        (
            "NAME,USER_TYPE,ROLES\n\n".to_string(),
            "UOS_USRUPLD0010",
            "CSV file is Empty.",
        ),
        (
            format!("NAME,USER_TYPE,ROLES\n{}\n", "a,b,c\n".repeat(200_000)),
            "UOS_USRUPLD0014",
            "Max allowed size is 1MB",
        ),
    ] {
        upload(&app, &csv, admin)
            .await
            .assert_error(400, code, message);
    }
    // No file part at all.
    let reply = app
        .client
        .post(format!("{}/v1/user/upload", app.public))
        .header("x-authenticated-user-token", &app.admin_token)
        .multipart(Form::new().text("note", "no file"))
        .send()
        .await
        .expect("sent");
    assert_eq!(reply.status().as_u16(), 400);
    let body: Value = reply.json().await.expect("json");
    assert_eq!(body["params"]["err"], "UOS_USRUPLD0035");
    assert_eq!(body["params"]["errmsg"], "Missing file attachment.");
    // A plain user may not upload; an unknown process is 404.
    let plain = app
        .create_user(json!({"firstName": "Plain", "email": unique_email()}))
        .await;
    let plain_token = app.token_for(&plain);
    upload(
        &app,
        "NAME,USER_TYPE,ROLES\nA,b,PUBLIC\n",
        Some(&plain_token),
    )
    .await
    .assert_error(
        403,
        "UOS_USRUPLD0071",
        "You are forbidden from accessing specified resource.",
    );
    assert_eq!(stored_processes(&app).await, 0);
    app.get("/v1/upload/status/0000", Some(&app.admin_token))
        .await
        .assert_error(404, "UOS_BLKSTSRED0013", "Requested  resource not found");

    // The JSON form of an upload: the CSV as `request.data`; the uploader's status is theirs.
    let reply = app
        .post(
            "/v1/user/upload",
            json!({"data": format!("NAME,EMAIL,USER_TYPE,ROLES\nJson Row,{},teacher,PUBLIC\n", unique_email())}),
            admin,
        )
        .await;
    let id = reply.assert_ok()["processId"]
        .as_str()
        .expect("id")
        .to_string();
    app.run_uploads().await;
    let report = status(&app, &id).await;
    assert_eq!(report["successCount"], 1, "{report}");
    app.get(&format!("/v1/upload/status/{id}"), Some(&plain_token))
        .await
        .assert_error(
            403,
            "UOS_BLKSTSRED0071",
            "You are forbidden from accessing specified resource.",
        );
}

#[tokio::test]
async fn result_values_that_a_spreadsheet_would_run_are_escaped() {
    let app = TestApp::spawn().await;
    let csv = format!(
        "{HEADER}\n{}\n{}\n",
        line(
            "\"=HYPERLINK(\"\"http://evil.test\"\")\"",
            &unique_email(),
            "",
            "PUBLIC",
            "",
            ""
        ),
        line("@SUM(1+1)", "bad-email", "", "PUBLIC", "", ""),
    );
    let id = uploaded(&app, &csv).await;
    app.run_uploads().await;
    let report = status(&app, &id).await;
    assert_eq!(
        report["successResult"][0]["firstName"],
        "'=HYPERLINK(\"http://evil.test\")"
    );
    assert_eq!(report["failureResult"][0]["firstName"], "'@SUM(1+1)");
    // The email of a result is masked as Sunbird masks it.
    let email = report["successResult"][0]["email"].as_str().expect("email");
    assert!(email.contains('*'), "{email}");
}

#[tokio::test]
async fn two_uploads_claiming_one_email_admit_exactly_one_row() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let csv = format!(
        "{HEADER}\n{}\n",
        line("Racer", &email, "", "PUBLIC", "", "")
    );
    let (first, second) = tokio::join!(uploaded(&app, &csv), uploaded(&app, &csv));
    app.run_uploads().await;
    let (first, second) = (status(&app, &first).await, status(&app, &second).await);
    let successes =
        first["successCount"].as_u64().unwrap() + second["successCount"].as_u64().unwrap();
    let failures =
        first["failureCount"].as_u64().unwrap() + second["failureCount"].as_u64().unwrap();
    assert_eq!((successes, failures), (1, 1), "{first} {second}");
    let failure = if first["failureCount"] == 1 {
        &first
    } else {
        &second
    };
    // The message a single create of the same email gets now.
    let single = app
        .post(
            "/v1/user/create",
            json!({"firstName": "Racer", "email": email, "userType": "teacher"}),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(single.status.as_u16(), 400);
    assert_eq!(
        failure["failureResult"][0]["err_msg"],
        single.body["params"]["errmsg"]
    );
}

/// The first report of `id` that `done` accepts, polling the binary's status route (bounded).
async fn report_when(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = std::time::Instant::now();
    loop {
        let reply: Value = client
            .get(format!("{base}/v1/upload/status/{id}"))
            .header("x-authenticated-user-token", token)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let report = reply["result"]["response"][0].clone();
        if done(&report) {
            return report;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the upload did not get there: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kill_9_in_the_middle_of_an_upload_resumes_and_applies_every_row_once() {
    if crate::helpers::skip_with_an_in_process_store("it kills the binary") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let server = crate::durability::Server::start_with(&data_dir, None, &[]).await;
    let token = crate::durability::admin_token(&data_dir);
    let client = reqwest::Client::new();
    let batch = format!("kill{}", uuid::Uuid::new_v4().simple());
    let mut csv = HEADER.to_string();
    for _ in 0..1000 {
        csv.push('\n');
        csv.push_str(&line(&batch, &unique_email(), "", "PUBLIC", "", ""));
    }
    let form = Form::new().part("file", Part::bytes(csv.into_bytes()).file_name("users.csv"));
    let reply: Value = client
        .post(format!("{}/v1/user/upload", server.base))
        .header("x-authenticated-user-token", &token)
        .multipart(form)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let id = reply["result"]["processId"]
        .as_str()
        .expect("processId")
        .to_string();
    let at_kill = report_when(&client, &server.base, &token, &id, |report| {
        report["successCount"].as_u64().unwrap_or(0) >= 100
    })
    .await;
    server.kill_hard();
    let done_at_kill = at_kill["successCount"].as_u64().unwrap_or(0);
    assert!(
        done_at_kill < 1000,
        "killed in the middle ({done_at_kill} done)"
    );

    let server = crate::durability::Server::start_with(&data_dir, None, &[]).await;
    let report = report_when(&client, &server.base, &token, &id, |report| {
        report["status"] == "COMPLETED"
    })
    .await;
    server.kill_hard();
    assert_eq!(report["successCount"], 1000, "{}", report["failureResult"]);
    assert_eq!(report["failureCount"], 0, "{}", report["failureResult"]);
    let ids: std::collections::HashSet<&str> = report["successResult"]
        .as_array()
        .expect("results")
        .iter()
        .map(|row| row["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 1000, "one user per row");
    // One welcome per created user, however the kill fell.
    let messages = crate::notifications::notifications_cli(&data_dir, &["list"]);
    let welcomes = messages
        .lines()
        .filter(|line| line.split('\t').nth(4) == Some("welcome"))
        .count();
    assert_eq!(
        welcomes,
        1000,
        "{}",
        messages.lines().take(3).collect::<Vec<_>>().join("\n")
    );
    println!("kill -9 after {done_at_kill} of 1000 rows; completed after the restart");
}

#[tokio::test]
async fn an_organisation_upload_creates_and_updates_schools_of_the_uploaders_channel() {
    let app = TestApp::spawn().await;
    let admin = Some(app.admin_token.as_str());
    let code = format!("BLK-{}", uuid::Uuid::new_v4().simple());
    app.post(
        "/v1/location/create",
        json!({"name": "Block State", "code": code, "type": "state"}),
        admin,
    )
    .await
    .assert_ok();
    let existing = app.custodian_school().await;
    let header = "SCHOOL NAME,BLOCK CODE,STATUS,ORGANISATION TYPE,SCHOOL ID,EXTERNAL ID";
    let external = format!("ext-{}", uuid::Uuid::new_v4().simple());
    let csv = format!(
        "{header}\n\
         Bulk School,{code},active,school,,{external}\n\
         Closed School,{code},inactive,school,,\n\
         Odd School,{code},sleeping,school,,\n\
         Renamed School,{code},active,school,{existing},\n\
         Twin School,{code},active,school,,{external}\n"
    );
    let form = Form::new().part("file", Part::bytes(csv.into_bytes()).file_name("orgs.csv"));
    let reply = app.post_multipart("/v1/org/upload", form, admin).await;
    let id = reply.assert_ok()["processId"]
        .as_str()
        .expect("processId")
        .to_string();
    app.run_uploads().await;
    let report = status(&app, &id).await;
    assert_eq!(report["objectType"], "organisation");
    assert_eq!(report["successCount"], 3, "{report}");
    let failures = report["failureResult"].as_array().expect("failures");
    let messages: Vec<&str> = failures
        .iter()
        .map(|f| f["err_msg"].as_str().expect("err_msg"))
        .collect();
    assert_eq!(
        messages,
        [
            "Please provide valid organisationstatus.",
            &format!("Value {external} for externalId is already in use.")
        ]
    );
    let read = |id: String| {
        let app = &app;
        async move {
            app.post("/v1/org/read", json!({"organisationId": id}), admin)
                .await
                .assert_ok()["response"]
                .clone()
        }
    };
    let created = &report["successResult"][0];
    assert_eq!(created["operation"], "create");
    let school = read(created["organisationId"].as_str().expect("id").to_string()).await;
    assert_eq!(school["orgName"], "Bulk School");
    assert_eq!(school["isTenant"], false);
    assert_eq!(school["status"], 1);
    let closed = read(
        report["successResult"][1]["organisationId"]
            .as_str()
            .expect("id")
            .to_string(),
    )
    .await;
    assert_eq!(closed["status"], 0, "the inactive row is inactive");
    assert_eq!(report["successResult"][2]["operation"], "update");
    assert_eq!(read(existing).await["orgName"], "Renamed School");
}

#[tokio::test]
async fn a_row_that_cannot_be_opened_fails_alone_and_the_rest_runs() {
    use userorg::domain::bulk::{ObjectType, ProcessRecord, STATUS_NEW, TaskRecord, task_key};
    use userorg::storage::{Expect, Topic, Transaction};
    let app = TestApp::spawn().await;
    let id = format!("broken{}", uuid::Uuid::new_v4().simple());
    let mut transaction = Transaction::default();
    let task = |sequence: u64, data: &str| TaskRecord {
        process_id: id.clone(),
        sequence_id: sequence,
        status: STATUS_NEW,
        data: data.to_string(),
        result: String::new(),
        created_on: "2026-12-07 10:00:00:000+0000".into(),
        last_updated_on: None,
    };
    transaction
        .put_record(
            Table::BulkTask,
            task_key(&id, 1),
            &task(1, "not a sealed value"),
            Expect::Absent,
        )
        .expect("task");
    transaction
        .put_record(
            Table::BulkProcess,
            &id,
            &ProcessRecord {
                id: id.clone(),
                object_type: ObjectType::User,
                status: STATUS_NEW,
                uploaded_by: app.admin_id.clone(),
                organisation_id: app.setting("custodianOrgId").await,
                channel: app.setting("custodianOrgChannel").await,
                task_count: 1,
                success_count: 0,
                failure_count: 0,
                created_on: "2026-12-07 10:00:00:000+0000".into(),
                process_start_time: None,
                process_end_time: None,
            },
            Expect::Absent,
        )
        .expect("process");
    transaction.event(Topic::Bulk, &id, 1);
    app.stored().commit(transaction).await.expect("written");
    // An upload after the broken one still runs.
    let later = uploaded(
        &app,
        &format!(
            "{HEADER}\n{}\n",
            line("After", &unique_email(), "", "PUBLIC", "", "")
        ),
    )
    .await;
    app.run_uploads().await;
    let broken = status(&app, &id).await;
    assert_eq!(broken["status"], "COMPLETED", "{broken}");
    assert_eq!(
        broken["failureResult"][0]["err_msg"],
        "Process failed,please try again later."
    );
    assert_eq!(status(&app, &later).await["successCount"], 1);
}
